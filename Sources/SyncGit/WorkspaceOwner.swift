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
            var info = stat()
            if lstatBytes(dotGit, &info) {
                var gitDir = dotGit
                if (info.st_mode & S_IFMT) == S_IFREG {
                    // "gitdir: PATH", relative to the directory holding the .git file.
                    guard let named = readGitFileTarget(dotGit) else { return nil }
                    gitDir = named.first == UInt8(ascii: "/") ? named : join(directory, String(decoding: named, as: UTF8.self))
                    gitDir = realPath(gitDir) ?? gitDir
                }
                var commonDir = gitDir
                if let common = readFirstLine(join(gitDir, "commondir")), !common.isEmpty {
                    let path = common.first == UInt8(ascii: "/") ? common : join(gitDir, String(decoding: common, as: UTF8.self))
                    commonDir = realPath(path) ?? path
                }
                var gitInfo = stat()
                guard statBytes(gitDir, &gitInfo) else { return nil }
                var owners: [uid_t] = []
                for part in [directory, gitDir, commonDir] {
                    var partInfo = stat()
                    if statBytes(part, &partInfo), !owners.contains(partInfo.st_uid) { owners.append(partInfo.st_uid) }
                }
                return WorkspaceOwner(
                    workTree: directory, gitDir: gitDir, commonDir: commonDir, uid: gitInfo.st_uid, gid: gitInfo.st_gid, owners: owners)
            }
            if directory == [UInt8(ascii: "/")] { return nil }
            directory = parent(directory)
        }
    }

    /// "alice (uid 1000)", or "uid 1000" when the user database has no name for it.
    public static func describe(_ uid: uid_t) -> String {
        userName(uid).map { "\($0) (uid \(uid))" } ?? "uid \(uid)"
    }

    public static func userName(_ uid: uid_t) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else { return nil }
        return String(cString: name)
    }

    public static func groupName(_ gid: gid_t) -> String? {
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getgrgid_r(gid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.gr_name else { return nil }
        return String(cString: name)
    }

    // MARK: - Small file-system helpers (SyncGit has no syscall layer of its own).

    static func join(_ directory: [UInt8], _ name: String) -> [UInt8] {
        (directory.last == UInt8(ascii: "/") ? directory : directory + [UInt8(ascii: "/")]) + Array(name.utf8)
    }

    static func parent(_ path: [UInt8]) -> [UInt8] {
        guard let slash = path.lastIndex(of: UInt8(ascii: "/")), slash > 0 else { return [UInt8(ascii: "/")] }
        return Array(path[..<slash])
    }

    static func realPath(_ path: [UInt8]) -> [UInt8]? {
        (path + [0]).withUnsafeBufferPointer { buffer -> [UInt8]? in
            buffer.withMemoryRebound(to: CChar.self) { chars -> [UInt8]? in
                guard let resolved = realpath(chars.baseAddress!, nil) else { return nil }
                defer { free(resolved) }
                return Array(String(cString: resolved).utf8)
            }
        }
    }

    static func statBytes(_ path: [UInt8], _ info: inout stat) -> Bool {
        (path + [0]).withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { stat($0.baseAddress!, &info) == 0 }
        }
    }

    static func lstatBytes(_ path: [UInt8], _ info: inout stat) -> Bool {
        (path + [0]).withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { lstat($0.baseAddress!, &info) == 0 }
        }
    }

    static func readFirstLine(_ path: [UInt8]) -> [UInt8]? {
        let fd = (path + [0]).withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_RDONLY | O_CLOEXEC) }
        }
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        let line = bytes[..<count].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).first ?? []
        return Array(line)
    }

    static func readGitFileTarget(_ path: [UInt8]) -> [UInt8]? {
        guard let line = readFirstLine(path) else { return nil }
        let prefix = Array("gitdir: ".utf8)
        guard line.starts(with: prefix) else { return nil }
        return Array(line.dropFirst(prefix.count))
    }
}
