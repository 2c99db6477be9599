import Glibc
import SyncCore
import SyncGit
import SyncSystem

/// Where syncd's own files may go. State, journal and backups always live in `.git/syncd`; two
/// settings can put files elsewhere: `syncd.metricsFile` and `syncd.lockDir`. Inside the working
/// tree, either one would break a promise: syncd would commit its own writes (every status write
/// a change, every commit a status write: a loop), or hide a person's files behind the exclusion
/// that keeps its lock files out of commits. Both are refused at start and on reload, with why.
public enum OwnPaths {
    /// The names syncd (and writers) create in a lock directory.
    static let lockDirectoryNames: Set<String> = [
        "sync.lock", "writer-pause.json", "paused.json", "emergency-stop.json", "control-request.json", "sync-request.json",
    ]

    public static func check(_ settings: Settings, repository: Repository) async throws {
        try checkMetricsFile(settings.metricsFile, repository: repository)
        if !settings.backupDir.isEmpty, isInWorkTree(resolved(Array(settings.backupDir.utf8)), repository) {
            throw SyncError(
                .invalidSetting,
                "syncd.backupDir \(settings.backupDir) is inside the working tree \(repository.workTreeDisplay): syncd would commit its own "
                    + "backups, and an off-site copy on the same disk protects nothing. Point it at another disk or a network mount")
        }
        try await checkLockDirectory(LockDirectory.resolve(repository, configured: settings.lockDir), repository: repository)
    }

    /// The metrics file must be outside the working tree (or inside the git directory).
    public static func checkMetricsFile(_ file: String, repository: Repository) throws {
        guard !file.isEmpty else { return }
        let path = resolved(Array(file.utf8))
        guard isInWorkTree(path, repository) else { return }
        throw SyncError(
            .invalidSetting,
            "syncd.metricsFile \(file) is inside the working tree \(repository.workTreeDisplay): syncd rewrites it after every commit, "
                + "so it would commit its own writes in a loop. Put it outside the working tree (for example "
                + "/var/lib/prometheus/node-exporter/syncd.prom) or in the git directory (\(Syscall.display(repository.gitDir))/syncd/metrics.prom)")
    }

    /// A lock directory inside the working tree must be syncd's alone: not the top of the tree,
    /// no tracked files, nothing but syncd's own files.
    public static func checkLockDirectory(_ directory: LockDirectory, repository: Repository) async throws {
        let path = resolved(directory.path)
        let top = repository.workTree
        if path == top {
            throw SyncError(
                .invalidSetting,
                "syncd.lockDir \(directory.display) is the top of the working tree: syncd keeps its lock directory out of commits, "
                    + "so it would hide every file. Use a directory of its own (for example .syncd-locks) or leave syncd.lockDir unset (.git/syncd)")
        }
        guard isInWorkTree(path, repository) else { return }
        let relative = Array(path[(top.count + 1)...])
        let tracked = try await repository.git.run(
            ["ls-files", "-z", "--cached", "--", GitArgument(rawBytes: relative + Array("/".utf8))], readOnly: true)
        if let first = tracked.standardOutput.split(separator: 0).first {
            throw SyncError(
                .invalidSetting,
                "syncd.lockDir \(directory.display) holds tracked files (\(String(decoding: first, as: UTF8.self)) among them): syncd keeps its lock "
                    + "directory out of commits, so their changes would never be committed. Use a directory of its own (for example .syncd-locks)")
        }
        if let entries = try? DirectoryListing.list(path) {
            let foreign = entries.map { String(decoding: $0.name, as: UTF8.self) }.filter { name in
                !lockDirectoryNames.contains(name) && !name.contains(".tmp-")
            }
            if let first = foreign.sorted().first {
                throw SyncError(
                    .invalidSetting,
                    "syncd.lockDir \(directory.display) holds files that are not syncd's (\(first) among them): syncd keeps its lock directory out "
                        + "of commits, so they would never be committed. Use an empty directory of its own (for example .syncd-locks), or move them")
            }
        }
    }

    /// Keeps an in-tree lock directory out of a person's `git add -A` as well: a line in
    /// `info/exclude` (added once; the file is the repository's, not the working tree's).
    public static func excludeLockDirectory(_ directory: LockDirectory, repository: Repository) throws {
        let path = resolved(directory.path)
        guard isInWorkTree(path, repository) else { return }
        let line = "/" + String(decoding: path[(repository.workTree.count + 1)...], as: UTF8.self) + "/"
        let existing = (try? Syscall.readFile(repository.excludeFile)) ?? []
        let lines = String(decoding: existing, as: UTF8.self).split(separator: "\n").map(String.init)
        guard !lines.contains(line) else { return }
        var text = existing
        if let last = text.last, last != UInt8(ascii: "\n") { text.append(UInt8(ascii: "\n")) }
        text += Array("# syncd's lock directory (syncd.lockDir): never committed\n\(line)\n".utf8)
        try? Syscall.makeDirectory(AtomicFile.parentDirectory(of: repository.excludeFile))
        do {
            try AtomicFile.write(repository.excludeFile, text)
        } catch {
            throw SyncError(.syscall, "cannot add the lock directory to \(Syscall.display(repository.excludeFile))", cause: error)
        }
    }

    /// Inside the working tree and not inside the git directory.
    static func isInWorkTree(_ path: [UInt8], _ repository: Repository) -> Bool {
        func within(_ base: [UInt8]) -> Bool { path == base || path.starts(with: base + [UInt8(ascii: "/")]) }
        return within(repository.workTree) && !within(repository.gitDir) && !within(repository.commonDir)
    }

    /// The path with its existing directories resolved (symlinks, `..`), so `./x/../docs` and a
    /// symlink into the tree are recognised.
    static func resolved(_ path: [UInt8]) -> [UInt8] {
        var head = path
        var tail: [[UInt8]] = []
        while head.count > 1 {
            if let real = Syscall.realPath(head) {
                return tail.reversed().reduce(real) { $0 + [UInt8(ascii: "/")] + $1 }
            }
            guard let slash = head.lastIndex(of: UInt8(ascii: "/")) else { break }
            tail.append(Array(head[(slash + 1)...]))
            head = slash == 0 ? [UInt8(ascii: "/")] : Array(head[..<slash])
        }
        return path
    }
}
