import Glibc
import SyncCore

/// Who owns a workspace, read from the file system alone: git itself refuses to look at a
/// repository that belongs to someone else ("detected dubious ownership"), so this cannot ask git.
///
/// The workspace is the nearest directory from the path upwards that holds a `.git` (a directory,
/// or a file naming the git directory, as in linked worktrees and submodules).
public struct WorkspaceOwner: Sendable, Equatable {
    /// The top of the working tree (absolute, symlinks resolved).
    public var workTree: [UInt8]
    /// The git directory (`.git`, or the one a `.git` file names).
    public var gitDir: [UInt8]
    /// The common git directory (objects and refs) when it differs from `gitDir` (linked worktrees).
    public var commonDir: [UInt8]
    /// The owner of the git directory: where syncd writes (objects, index, refs, its state).
    public var uid: uid_t
    public var gid: gid_t
    /// Owners of the working tree, the git directory and the common directory, each once.
    public var owners: [uid_t]

    public var workTreeDisplay: String { String(decoding: workTree, as: UTF8.self) }
    public var gitDirDisplay: String { String(decoding: gitDir, as: UTF8.self) }

    /// The user name of `uid`, or nil when the user database has none.
    public var userName: String? { Self.userName(uid) }
    /// The group name of `gid`, or nil when the group database has none.
    public var groupName: String? { Self.groupName(gid) }
    /// "alice (uid 1000)", or "uid 1000" for a user without a name.
    public var ownerDescription: String { Self.describe(uid) }

    /// True when every part of the workspace belongs to `uid`.
    public func isOwned(by uid: uid_t) -> Bool { owners.allSatisfy { $0 == uid } }

    /// The workspace containing `path`, or nil when no `.git` is found above it.
    public static func find(_ path: String) -> WorkspaceOwner? {
        guard let start = realPath(Array(path.utf8)) else { return nil }
        var directory = start
        while true {
            let dotGit = join(directory, ".git")
            if let info = try? Syscall.lstat(dotGit) {
                var gitDir = dotGit
                if (info.st_mode & S_IFMT) == S_IFREG {
                    // "gitdir: PATH", relative to the directory holding the .git file.
                    let prefix = Array("gitdir: ".utf8)
                    guard let line = firstLine(dotGit), line.starts(with: prefix) else { return nil }
                    gitDir = resolve(Array(line.dropFirst(prefix.count)), relativeTo: directory)
                }
                // A linked worktree's git dir names the common one (objects, refs) in `commondir`.
                let commonDir = firstLine(join(gitDir, "commondir")).flatMap { $0.isEmpty ? nil : resolve($0, relativeTo: gitDir) } ?? gitDir
                guard let gitInfo = fileStatus(gitDir) else { return nil }
                var owners: [uid_t] = []
                for part in [directory, gitDir, commonDir] {
                    if let partInfo = fileStatus(part), !owners.contains(partInfo.st_uid) { owners.append(partInfo.st_uid) }
                }
                return WorkspaceOwner(
                    workTree: directory, gitDir: gitDir, commonDir: commonDir, uid: gitInfo.st_uid, gid: gitInfo.st_gid, owners: owners)
            }
            if directory == [UInt8(ascii: "/")] { return nil }
            directory = AtomicFile.parentDirectory(of: directory)
        }
    }

    /// "alice (uid 1000)", or "uid 1000" when the user database has no name for it.
    public static func describe(_ uid: uid_t) -> String {
        userName(uid).map { "\($0) (uid \(uid))" } ?? "uid \(uid)"
    }

    public static func userName(_ uid: uid_t) -> String? { account(uid)?.name }

    /// `uid`'s entry in the user database: its name, primary group, home and groups.
    public static func account(_ uid: uid_t) -> (name: String, gid: gid_t, home: String, groups: [gid_t])? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else { return nil }
        var count: Int32 = 64
        var groups = Array<gid_t>(repeating: 0, count: Int(count))
        if getgrouplist(name, entry.pw_gid, &groups, &count) < 0 {
            groups = Array<gid_t>(repeating: 0, count: Int(count))
            _ = getgrouplist(name, entry.pw_gid, &groups, &count)
        }
        return (String(cString: name), entry.pw_gid, entry.pw_dir.map { String(cString: $0) } ?? "/", Array(groups.prefix(Int(max(0, count)))))
    }

    public static func groupName(_ gid: gid_t) -> String? {
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getgrgid_r(gid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.gr_name else { return nil }
        return String(cString: name)
    }

    // MARK: - File-system helpers

    static func join(_ directory: [UInt8], _ name: String) -> [UInt8] {
        (directory.last == UInt8(ascii: "/") ? directory : directory + [UInt8(ascii: "/")]) + Array(name.utf8)
    }

    static func realPath(_ path: [UInt8]) -> [UInt8]? { Syscall.realPath(path) }

    /// stat(2) (follows symlinks), nil on any error.
    static func fileStatus(_ path: [UInt8]) -> stat? {
        var info = stat()
        return Syscall.withCStringResult(path) { stat($0, &info) } == 0 ? info : nil
    }

    /// The first line of a small file, nil when it cannot be read.
    static func firstLine(_ path: [UInt8]) -> [UInt8]? {
        guard let bytes = try? Syscall.readFile(path, limit: 4096), !bytes.isEmpty else { return nil }
        return Array(bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).first ?? [])
    }

    /// A path from a git file: absolute as it is, else relative to `base`; symlinks resolved.
    static func resolve(_ path: [UInt8], relativeTo base: [UInt8]) -> [UInt8] {
        let absolute = path.first == UInt8(ascii: "/") ? path : join(base, String(decoding: path, as: UTF8.self))
        return realPath(absolute) ?? absolute
    }
}
