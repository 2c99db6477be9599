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
        let state = GitDirectoryState(repository: repository, staleLockAge: .seconds(600), log: .discarding)
        let branch = GitDirectoryState.currentBranch(repository)
        if let deferral = state.foreignOperation() {
            checks.append(Check(level: .warn, name: "repository", detail: deferral.message))
        } else if branch == nil {
            checks.append(Check(level: .warn, name: "repository", detail: "HEAD is detached in \(repository.workTreeDisplay): syncd waits until a branch is checked out (`git switch BRANCH`)"))
        } else {
            let name = branch.map(Syncer.shortName) ?? "?"
            let upstream = (try? await git.run(["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}"], readOnly: true, acceptedExitCodes: [0, 128]))
                .flatMap { $0.exitCode == 0 ? $0.text : nil }
            checks.append(Check(level: .ok, name: "repository", detail: "\(repository.workTreeDisplay) on \(name)" + (upstream.map { ", upstream \($0)" } ?? ", no upstream (syncd pushes to the same branch name)")))
        }

        // Settings: what `syncd run` would refuse at start (exit 78), with the key and the value.
        checks.append(await settingsCheck(repository))

        // Remote and upstream, reachability. A setup problem (host key, credentials, a URL that
        // names no repository) is a FAIL: waiting never fixes it. Only real unreachability warns.
        if let remote = await Syncer.configuredRemote(repository, branch: branch) {
            let probe = try? await withTimeout(networkTimeout) {
                try await git.run(["ls-remote", "--heads", GitArgument(remote)], readOnly: true, acceptedExitCodes: Set(0...255))
            } ?? nil
            if let probe, probe.exitCode == 0 {
                checks.append(Check(level: .ok, name: "remote", detail: "\(remote) is reachable"))
            } else {
                let problem = probe.map { RemoteProblem(gitOutput: $0.standardError, exitCode: $0.exitCode, remote: remote, operation: "fetch") }
                    ?? RemoteProblem(kind: .offline, message: "no answer within \(Settings.formatDuration(networkTimeout))")
                if problem.kind == .setup {
                    checks.append(Check(level: .fail, name: "remote", detail: "\(remote): a setup problem, not an outage: \(problem.message). To fix: \(problem.fix)"))
                } else {
                    checks.append(Check(level: .warn, name: "remote", detail: "\(remote) is not reachable (\(problem.message)): commits stay local until it is; check the URL (`git remote -v`) and the network"))
                }
            }
        } else {
            checks.append(Check(level: .warn, name: "remote", detail: "no remote to sync with (none configured, or syncd.remote is none): commits stay local (`git remote add origin URL` to sync)"))
        }

        // inotify: directories that need a watch against the limit.
        let limits = InotifyLimits.read()
        if let needed = await Crawler.directoriesToWatch(repository), let limit = limits.effectiveMaxWatches {
            if needed > limit {
                checks.append(Check(level: .fail, name: "inotify", detail: "this workspace needs \(needed) watches and the limit is \(limit) (shared by all programs of this user). Fix: \(WatchLimitMessage.fix(limits: limits, needed: needed))"))
            } else if needed * 5 > limit * 4 {
                checks.append(Check(level: .warn, name: "inotify", detail: "\(needed) of \(limit) watches needed; other programs share the limit. Consider: \(WatchLimitMessage.fix(limits: limits, needed: needed))"))
            } else {
                checks.append(Check(level: .ok, name: "inotify", detail: "\(needed) directories to watch, limit \(limit)"))
            }
        } else if limits.effectiveMaxWatches == nil {
            checks.append(Check(level: .warn, name: "inotify", detail: "cannot read the inotify limits from /proc"))
        } else {
            checks.append(Check(level: .warn, name: "inotify", detail: "cannot count the directories to watch: `git check-ignore` failed"))
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

        // What syncd itself found (state.json): a conflict, a setup problem, failing commits.
        checks += await reportedChecks(client, branch: branch)
        // What is never committed although it changes: nested repositories, unreadable paths.
        checks += await coverageChecks(client)

        // Ownership: everything syncd writes in the repository belongs to one user, and syncd runs as them.
        checks.append(await ownershipCheck(client))

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

    /// The `syncd.*` settings as `syncd run` reads them (git config, every scope), and the remote
    /// `syncd.remote` names.
    static func settingsCheck(_ repository: Repository) async -> Check {
        let loaded: (settings: Settings, warnings: [String])
        do {
            loaded = try await Settings.load(git: repository.git)
            try await OwnPaths.check(loaded.settings, repository: repository)
        } catch {
            let message = (error as? SyncError)?.description ?? "\(error)"
            return Check(level: .fail, name: "settings", detail: "\(message) (syncd refuses to start with it: exit 78)")
        }
        let (settings, warnings) = loaded
        if !settings.remote.isEmpty, settings.remote != "none" {
            let known = try? await repository.git.run(["remote", "get-url", GitArgument(settings.remote)], readOnly: true, acceptedExitCodes: [0, 2, 128])
            if known?.exitCode != 0 {
                return Check(level: .fail, name: "settings", detail: "syncd.remote is \"\(settings.remote)\", which is not a remote of \(repository.workTreeDisplay) "
                    + "(syncd refuses to start: exit 78): add it (`git remote add \(settings.remote) URL`), or set syncd.remote to an existing remote or to none")
            }
        }
        if !warnings.isEmpty {
            return Check(level: .warn, name: "settings", detail: warnings.joined(separator: "; "))
        }
        return Check(level: .ok, name: "settings", detail: "every syncd.* setting is valid")
    }

    /// Problems syncd reported in state.json: while it runs, or as of its last run.
    static func reportedChecks(_ client: ControlClient, branch: String?) async -> [Check] {
        guard let state = client.state() else { return [] }
        let running = client.runningPid() != nil
        let when = running ? "" : " (as of syncd's last run)"
        let remote = state.remote
        var checks: [Check] = []
        if !state.conflictBranch.isEmpty {
            let side = state.conflictBranch
            let files = state.conflictFiles.joined(separator: ", ")
            // Merged by hand already (the remote's branch is in the local one): pushed at the next sync.
            var merged = false
            if let branch, !remote.isEmpty {
                let tracking = "refs/remotes/\(remote)/\(Syncer.shortName(branch))"
                merged = (try? await client.repository.git.run(
                    ["merge-base", "--is-ancestor", GitArgument(tracking), GitArgument(branch)], readOnly: true, acceptedExitCodes: [0, 1, 128]))?.exitCode == 0
            }
            if merged {
                checks.append(Check(level: .ok, name: "conflict", detail: "the conflict with \(remote) in \(files) is merged here\(when); syncd pushes the merge at its next sync"))
            } else {
                let short = branch.map(Syncer.shortName) ?? "BRANCH"
                checks.append(Check(level: .fail, name: "conflict", detail: "the histories of \(remote) and this workspace conflict in \(files)\(when); "
                    + "the local side is on \(side). Resolve it: `git merge \(remote)/\(short)`, fix the files, commit (syncd then pushes); "
                    + "`syncctl conflicts` lists the conflict branches"))
            }
        }
        if state.syncProblemKind == RemoteProblem.Kind.setup.rawValue {
            checks.append(Check(level: .fail, name: "sync", detail: "syncd cannot sync with \(remote)\(when), a setup problem: \(state.syncError)"))
        }
        if running, state.phase == .failing {
            checks.append(Check(level: .fail, name: "commits", detail: "commits are failing: \(state.lastError); see `syncctl status` and syncd's log"))
        }
        return checks
    }

    /// Every part of the repository that syncd and git write (index, HEAD, the branch's ref and
    /// log, object directories, syncd's state directory) belongs to the workspace's owner, and a
    /// running syncd runs as that owner. A root-owned object directory or index breaks the
    /// owner's next `git add` ("insufficient permission").
    static func ownershipCheck(_ client: ControlClient) async -> Check {
        let repository = client.repository
        guard let owner = WorkspaceOwner.find(repository.workTreeDisplay) else {
            return Check(level: .warn, name: "owner", detail: "cannot tell who owns \(repository.workTreeDisplay)")
        }
        if owner.owners.count > 1 {
            return Check(level: .fail, name: "owner", detail: "the working tree and git directory of \(repository.workTreeDisplay) belong to different users ("
                + owner.owners.map(WorkspaceOwner.describe).joined(separator: ", ") + "): give them all to one user (`chown -R USER: \(repository.workTreeDisplay)`)")
        }
        func join(_ base: [UInt8], _ name: String) -> [UInt8] { base + Array("/\(name)".utf8) }
        var paths: [[UInt8]] = [join(repository.gitDir, "index"), join(repository.gitDir, "HEAD"), join(repository.gitDir, "logs/HEAD"),
                                join(repository.commonDir, "refs/heads"), join(repository.commonDir, "objects"), client.stateDirectory]
        if let branch = GitDirectoryState.currentBranch(repository) {
            paths += [join(repository.commonDir, branch), join(repository.commonDir, "logs/\(branch)")]
        }
        for directory in [join(repository.commonDir, "objects"), client.stateDirectory] {
            for entry in (try? DirectoryListing.list(directory)) ?? [] {
                paths.append(directory + [UInt8(ascii: "/")] + entry.name)
            }
        }
        var foreign: [String] = []
        var foreignCount = 0
        var uids: Set<uid_t> = []
        for path in paths {
            guard let info = try? Syscall.lstat(path), info.st_uid != owner.uid else { continue }
            uids.insert(info.st_uid)
            foreignCount += 1
            if foreign.count < 3 { foreign.append(Syscall.display(path)) }
        }
        let who = owner.ownerDescription
        let name = owner.userName ?? String(owner.uid)
        if !foreign.isEmpty {
            let others = uids.sorted().map(WorkspaceOwner.describe).joined(separator: ", ")
            // A repository shared on purpose (core.sharedRepository) has objects of several users.
            let shared = (try? await repository.git.run(["config", "--get", "core.sharedRepository"], readOnly: true, acceptedExitCodes: [0, 1]))
                .map { $0.exitCode == 0 && !["false", "umask", "0"].contains(String(decoding: $0.standardOutput, as: UTF8.self).trimmed.lowercased()) } ?? false
            return Check(level: shared ? .warn : .fail, name: "owner", detail: "files in \(owner.gitDirDisplay) belong to \(others), not to \(who) who owns the workspace "
                + "(\(foreign.joined(separator: ", "))\(foreignCount > foreign.count ? " and \(foreignCount - foreign.count) more" : "")): git fails for \(name) there; "
                + "fix with `chown -R \(name): \(owner.gitDirDisplay)`, and run syncd as \(name) (`syncctl enable \(repository.workTreeDisplay)`)")
        }
        if let pid = client.runningPid(), let uid = effectiveUid(of: pid), uid != owner.uid {
            return Check(level: .fail, name: "owner", detail: "syncd (pid \(pid)) runs as \(WorkspaceOwner.describe(uid)), but the workspace belongs to \(who): "
                + "its commits would leave files \(name) cannot write; stop it and run it as \(name) (`syncctl enable \(repository.workTreeDisplay)`)")
        }
        return Check(level: .ok, name: "owner", detail: "the repository belongs to \(who)")
    }

    /// The effective uid of a process, from /proc/PID/status ("Uid: real effective saved fs").
    static func effectiveUid(of pid: Int32) -> uid_t? {
        guard let bytes = try? Syscall.readFile(Array("/proc/\(pid)/status".utf8), limit: 64 * 1024) else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("Uid:") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            return fields.count > 2 ? uid_t(fields[2]) : nil
        }
        return nil
    }

    /// "unit syncd@….service is active" (system or user manager), nil when systemd is not running.
    static func unitState(_ workspace: String) async -> String? {
        guard Syscall.exists(Array("/run/systemd/system".utf8)) else { return nil }
        func run(_ arguments: [String]) async -> String? {
            guard let result = try? await Subprocess.run(.command(arguments[0]), arguments: Arguments(Array(arguments.dropFirst())), output: .string(limit: 4096), error: .discarded)
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
}
