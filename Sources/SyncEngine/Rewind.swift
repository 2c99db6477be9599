import Glibc
import Logging
import SyncCore
import SyncGit
import SyncSystem

/// `syncctl rewind`: the working tree (or some paths) brought back to an earlier commit, written
/// like any writer writes, under the shared sync lock, so syncd commits the result as a new
/// commit on top; history is never rewritten. Only paths that differ between HEAD and the target
/// are touched, each replaced atomically (temporary file in its directory, then rename); an
/// untracked or ignored file is never touched; a path changed since HEAD is never overwritten
/// (the caller commits first and retries).
public enum Rewind {
    public struct Change: Sendable {
        public enum Kind: Sendable { case write, delete }
        public var path: RepoPath
        public var kind: Kind
        /// The target's mode and blob (for `write`).
        public var mode: String
        public var blob: String
    }

    public enum Plan: Sendable {
        case changes([Change])
        /// Paths whose working file differs from HEAD: commit first, then plan again.
        case dirty([RepoPath])
        /// Paths the target adds where an untracked or ignored file, or a nested repository,
        /// stands (never overwritten).
        case blocked([RepoPath])
    }

    /// What must change to bring `paths` (all when empty) from HEAD to `target`.
    public static func plan(to target: String, paths: [RepoPath], repository: Repository) async throws -> Plan {
        let git = repository.git
        let limit: [GitArgument] = paths.isEmpty ? [] : ["--"] + paths.map { GitArgument(rawBytes: Array(":(top,literal)".utf8) + $0.bytes) }
        // `?? dir/` is a nested repository, which syncd never commits: not a change to wait
        // for; if the target needs its place, it blocks below like any untracked path.
        let dirty = try await GitStatus.dirtyPaths(git, limitedTo: paths).filter { !$0.isNestedRepository }
        if !dirty.isEmpty { return .dirty(dirty.map(\.path)) }
        let diff = try await git.run(["diff", "--raw", "-z", "--no-renames", "--no-abbrev", "HEAD", GitArgument(target)] + limit, readOnly: true)
        var changes: [Change] = []
        var blocked: [RepoPath] = []
        var added: [RepoPath] = []
        let fields = diff.standardOutput.split(separator: 0, omittingEmptySubsequences: true)
        var index = fields.startIndex
        while index + 1 < fields.endIndex {
            // ":oldmode newmode oldblob newblob STATUS" then the path.
            let header = String(decoding: fields[index], as: UTF8.self).dropFirst().split(separator: " ")
            let path = RepoPath(bytes: Array(fields[index + 1]))
            index += 2
            guard header.count == 5 else { continue }
            let (oldMode, newMode, newBlob, status) = (String(header[0]), String(header[1]), String(header[3]), String(header[4]))
            if newMode == "160000" || oldMode == "160000" { continue }  // submodules: not files here
            if status == "D" {
                changes.append(Change(path: path, kind: .delete, mode: oldMode, blob: ""))
            } else {
                if oldMode == "000000", Syscall.exists(repository.workTree + [UInt8(ascii: "/")] + path.bytes) { added.append(path) }
                changes.append(Change(path: path, kind: .write, mode: newMode, blob: newBlob))
            }
        }
        // A path the target adds where something stands: only a directory of tracked files that
        // this rewind deletes, with nothing untracked or ignored in it, may give way.
        let deleted = Set(changes.filter { $0.kind == .delete }.map(\.path))
        for path in added {
            let absolute = repository.workTree + [UInt8(ascii: "/")] + path.bytes
            guard let info = try? Syscall.lstat(absolute), info.st_mode & S_IFMT == S_IFDIR else {
                blocked.append(path)
                continue
            }
            let inside: [GitArgument] = ["--", GitArgument(rawBytes: Array(":(top,literal)".utf8) + path.bytes + Array("/".utf8))]
            let tracked = try await git.run(["ls-files", "-z", "--cached"] + inside, readOnly: true).standardOutput
                .split(separator: 0).map { RepoPath(bytes: Array($0)) }
            let others = try await git.run(["ls-files", "-z", "--others", "--directory"] + inside, readOnly: true).standardOutput
            if tracked.isEmpty || !tracked.allSatisfy({ deleted.contains($0) }) || !others.isEmpty { blocked.append(path) }
        }
        if !blocked.isEmpty { return .blocked(blocked) }
        // Deletions first: a directory the target turns into a file is emptied (and removed)
        // before the file is written.
        return .changes(changes.filter { $0.kind == .delete } + changes.filter { $0.kind == .write })
    }

    /// Applies `changes` to the working tree; the caller holds the sync lock shared.
    public static func apply(_ changes: [Change], repository: Repository, log: Logger) async throws {
        let top = repository.workTree
        for (index, change) in changes.enumerated() {
            if index == 1 { Failpoint.hitBlocking("rewind-after-first-file", log: log) }
            let path = top + [UInt8(ascii: "/")] + change.path.bytes
            switch change.kind {
            case .delete:
                do {
                    try Syscall.unlink(path)
                } catch {
                    throw SyncError(.syscall, "cannot remove \(change.path) while rewinding", cause: error)
                }
                removeEmptyParents(of: change.path, top: top)
            case .write:
                // The content a checkout would write: smudge filters and eol conversion applied.
                let content = try await repository.git.run(
                    ["cat-file", "--filters", GitArgument(rawBytes: Array("--path=".utf8) + change.path.bytes), GitArgument(change.blob)], readOnly: true)
                try makeParents(of: change.path, top: top)
                let directory = AtomicFile.parentDirectory(of: path)
                let temporary = directory + Array("/.syncd-rewind-\(getpid()).tmp".utf8)
                do {
                    if change.mode == "120000" {
                        try? Syscall.unlink(temporary)
                        let target = content.standardOutput
                        guard Syscall.withCStringResult(temporary, { link in Syscall.withCStringResult(target, { symlink($0, link) }) }) == 0 else {
                            throw SyscallError(call: "symlink", path: Syscall.display(temporary), errno: Errno(errno))
                        }
                    } else {
                        let fd = try Syscall.openRegular(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: change.mode == "100755" ? 0o755 : 0o644)
                        defer { Syscall.close(fd) }
                        try Syscall.writeAll(fd, content.standardOutput)
                        _ = fchmod(fd, change.mode == "100755" ? 0o755 : 0o644)
                    }
                    try Syscall.rename(temporary, to: path)
                } catch {
                    try? Syscall.unlink(temporary)
                    throw SyncError(.syscall, "cannot write \(change.path) while rewinding", cause: error)
                }
            }
        }
    }

    static func makeParents(of path: RepoPath, top: [UInt8]) throws {
        var current = top
        let parts = path.bytes.split(separator: UInt8(ascii: "/"))
        for part in parts.dropLast() {
            current += [UInt8(ascii: "/")] + part
            if let info = try? Syscall.lstat(current), info.st_mode & S_IFMT == S_IFDIR { continue }
            do {
                try Syscall.makeDirectory(current)
            } catch {
                throw SyncError(.syscall, "cannot create the directory for \(path) while rewinding (a file in its place?)", cause: error)
            }
        }
    }

    static func removeEmptyParents(of path: RepoPath, top: [UInt8]) {
        var parts = path.bytes.split(separator: UInt8(ascii: "/")).map(Array.init)
        parts.removeLast()
        while !parts.isEmpty {
            let directory = top + [UInt8(ascii: "/")] + Array(parts.joined(separator: [UInt8(ascii: "/")]))
            guard Syscall.withCStringResult(directory, { rmdir($0) }) == 0 else { return }
            parts.removeLast()
        }
    }
}
