import Glibc
import Subprocess
import SyncCore
import SyncGit
import SyncSystem
import SyncWatcher

/// `syncctl doctor`: one check per line, OK / WARN / FAIL, each saying what to do.
public enum Doctor {
    public enum Level: String, Sendable { case ok = "OK", warn = "WARN", fail = "FAIL" }

    public struct Check: Sendable {
        public var level: Level
        public var name: String
        public var detail: String
    }

    public static func run(_ client: ControlClient, networkTimeout: Duration = .seconds(20)) async -> [Check] {
        var checks: [Check] = []
        let repository = client.repository
        let git = repository.git

        // git: merge-tree --write-tree needs 2.38, core.fsync 2.36.
        if let version = try? await git.run(["version"], readOnly: true).text {
            let numbers = version.split(separator: " ").last?.split(separator: ".").compactMap { Int($0) } ?? []
            let ok = numbers.count >= 2 && (numbers[0] > 2 || (numbers[0] == 2 && numbers[1] >= 38))
            checks.append(Check(level: ok ? .ok : .fail, name: "git", detail: ok ? version : "\(version): syncd needs git 2.38 or newer (merge-tree --write-tree); upgrade git"))
        }

        // The repository: branch, operations in progress.
        let state = GitDirectoryState(repository: repository, staleLockAge: .seconds(600), log: { _, _ in })
        let branch = GitDirectoryState.currentBranch(repository)
        if let deferral = state.foreignOperation() {
            checks.append(Check(level: .warn, name: "repository", detail: deferral.message))
        } else if branch == nil {
            checks.append(Check(level: .warn, name: "repository", detail: "HEAD is detached in \(repository.workTreeDisplay): syncd waits until a branch is checked out (`git switch BRANCH`)"))
        } else {
            let name = branch.map { String($0.dropFirst("refs/heads/".count)) } ?? "?"
            let upstream = (try? await git.run(["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}"], readOnly: true, acceptedExitCodes: [0, 128]))
                .flatMap { $0.exitCode == 0 ? $0.text : nil }
            checks.append(Check(level: .ok, name: "repository", detail: "\(repository.workTreeDisplay) on \(name)" + (upstream.map { ", upstream \($0)" } ?? ", no upstream (syncd pushes to the same branch name)")))
        }

        // Remote and upstream, reachability.
        if let remote = await Syncer.configuredRemote(repository, branch: branch) {
            let probe = try? await withTimeout(networkTimeout) {
                try await git.run(["ls-remote", "--heads", GitArgument(remote)], readOnly: true, acceptedExitCodes: Set(0...255))
            } ?? nil
            if let probe, probe.exitCode == 0 {
                checks.append(Check(level: .ok, name: "remote", detail: "\(remote) is reachable"))
            } else {
                let why = probe.map { Syncer.firstLine($0.standardError, or: "exit \($0.exitCode)") } ?? "no answer within \(Settings.formatDuration(networkTimeout))"
                checks.append(Check(level: .warn, name: "remote", detail: "\(remote) is not reachable (\(why)): commits stay local until it is; check the URL (`git remote -v`) and credentials (ssh keys, agent)"))
            }
        } else {
            checks.append(Check(level: .warn, name: "remote", detail: "no remote to sync with (none configured, or syncd.remote is none): commits stay local (`git remote add origin URL` to sync)"))
        }

        // inotify: directories that need a watch against the limit.
        let needed = await watchedDirectoryCount(repository)
        let limits = InotifyLimits.read()
        if let limit = limits.effectiveMaxWatches {
            if needed > limit {
                checks.append(Check(level: .fail, name: "inotify", detail: "this workspace needs \(needed) watches and the limit is \(limit) (shared by all programs of this user). Fix: \(WatchLimitMessage.fix(limits: limits, needed: needed))"))
            } else if needed * 5 > limit * 4 {
                checks.append(Check(level: .warn, name: "inotify", detail: "\(needed) of \(limit) watches needed; other programs share the limit. Consider: \(WatchLimitMessage.fix(limits: limits, needed: needed))"))
            } else {
                checks.append(Check(level: .ok, name: "inotify", detail: "\(needed) directories to watch, limit \(limit)"))
            }
        } else {
            checks.append(Check(level: .warn, name: "inotify", detail: "cannot read the inotify limits from /proc"))
        }

        // Disk space for backups and objects.
        var info = statvfs()
        if Syscall.withCStringResult(repository.gitDir, { statvfs($0, &info) }) == 0 {
            let free = Int(info.f_bavail) * Int(info.f_frsize)
            let mib = free / (1024 * 1024)
            let level: Level = mib < 100 ? .fail : (mib < 1024 ? .warn : .ok)
            checks.append(Check(level: level, name: "disk", detail: "\(mib) MiB free for \(Syscall.display(repository.gitDir))" + (level == .ok ? "" : ": commits and backup bundles need room; free some space")))
        }

        // The lock directory.
        let lockDirectory = client.lockDirectory
        if let info = try? Syscall.lstat(lockDirectory.path) {
            if (info.st_mode & S_IFMT) != S_IFDIR {
                checks.append(Check(level: .fail, name: "locks", detail: "\(lockDirectory.display) is not a directory (a symlink?): remove it; syncd creates it"))
            } else if Syscall.withCStringResult(lockDirectory.path, { access($0, W_OK) }) != 0 {
                checks.append(Check(level: .fail, name: "locks", detail: "\(lockDirectory.display) is not writable by uid \(getuid()): fix its owner or mode"))
            } else if let lock = try? Syscall.lstat(lockDirectory.syncLock), (lock.st_mode & S_IFMT) == S_IFLNK {
                checks.append(Check(level: .fail, name: "locks", detail: "\(Syscall.display(lockDirectory.syncLock)) is a symlink: remove it"))
            } else {
                checks.append(Check(level: .ok, name: "locks", detail: "\(lockDirectory.display) is writable"))
            }
        } else {
            checks.append(Check(level: .ok, name: "locks", detail: "\(lockDirectory.display) does not exist yet (syncd creates it)"))
        }

        // The service, and its unit when systemd runs.
        let unit = await unitState(repository.workTreeDisplay)
        if let pid = client.runningPid() {
            checks.append(Check(level: .ok, name: "service", detail: "syncd is running (pid \(pid))" + (unit.map { "; \($0)" } ?? "")))
        } else if let unit {
            checks.append(Check(level: .warn, name: "service", detail: "no syncd runs for this workspace; \(unit)"))
        } else {
            checks.append(Check(level: .warn, name: "service", detail: "no syncd runs for this workspace: start it (`syncd run`, or `systemctl enable --now \"syncd@$(systemd-escape --path \(repository.workTreeDisplay)).service\"`)"))
        }
        return checks
    }

    /// "unit syncd@….service is active" (system or user manager), nil when systemd is not running.
    static func unitState(_ workspace: String) async -> String? {
        guard Syscall.exists(Array("/run/systemd/system".utf8)) else { return nil }
        func run(_ arguments: [String]) async -> String? {
            guard let result = try? await Subprocess.run(.name(arguments[0]), arguments: Arguments(Array(arguments.dropFirst())), output: .string(limit: 4096), error: .discarded)
            else { return nil }
            return result.standardOutput.split(separator: "\n").first.map(String.init)
        }
        guard let escaped = await run(["systemd-escape", "--path", workspace]) else { return nil }
        let unit = "syncd@\(escaped).service"
        let system = await run(["systemctl", "is-active", unit]) ?? "unknown"
        if system == "active" { return "unit \(unit) is active" }
        let user = await run(["systemctl", "--user", "is-active", unit]) ?? "unknown"
        return user == "active" ? "user unit \(unit) is active" : "unit \(unit) is \(system)"
    }

    /// Directories syncd would watch: every directory that git does not ignore, `.git` excluded.
    static func watchedDirectoryCount(_ repository: Repository) async -> Int {
        let oracle = GitIgnoreOracle(git: repository.git)
        var count = 1
        var level: [RepoPath] = [.root]
        while !level.isEmpty {
            var next: [RepoPath] = []
            for directory in level {
                guard let entries = try? DirectoryListing.list(repository.absolute(directory)) else { continue }
                for entry in entries where entry.type == .directory && !entry.name.elementsEqual(".git".utf8) {
                    next.append(directory.appending(entry.name))
                }
            }
            let ignored = (try? await oracle.ignored(next)) ?? []
            level = next.filter { !ignored.contains($0) }
            count += level.count
        }
        return count
    }
}
