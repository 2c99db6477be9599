import Glibc
import SyncCore
import SyncGit
import SyncSystem

/// `syncctl verify`: is everything written here safe, and where? One line per check (OK / WARN /
/// FAIL, each saying what to do), one exit code for monitoring: 0 all OK, 1 a WARN, 2 a FAIL.
/// Unlike `doctor` (can syncd work here?), verify proves the data: the object store, every kept
/// backup chain restored into a scratch repository, the working tree, the remote, the off-site copy.
public enum Verify {
    public typealias Check = Doctor.Check

    public static func exitCode(_ checks: [Check]) -> Int32 {
        if checks.contains(where: { $0.level == .fail }) { return 2 }
        if checks.contains(where: { $0.level == .warn }) { return 1 }
        return 0
    }

    public static func run(_ client: ControlClient) async -> [Check] {
        let repository = client.repository
        var checks: [Check] = []
        checks.append(await objects(repository))
        var settings = (try? await Settings.load(git: repository.git))?.settings ?? Settings()
        // `syncd run --backup-dir` (a flag, not in git config): the running syncd says it.
        if settings.backupDir.isEmpty, let running = client.state()?.backupDir, !running.isEmpty { settings.backupDir = running }
        let local = BundleStore(directory: client.stateDirectory + Array("/backups".utf8))
        let branch = GitDirectoryState.currentBranch(repository)
        let remote = await Syncer.configuredRemote(repository, branch: branch)
        checks.append(await backups(local, name: "backups", repository: repository, scratchIn: client.stateDirectory, expectSome: remote != nil))
        if !settings.backupDir.isEmpty {
            checks.append(contentsOf: await offsite(settings.backupDir, local: local, repository: repository, scratchIn: client.stateDirectory))
        }
        checks.append(await workingTree(repository, running: client.runningPid() != nil))
        checks.append(await pushed(repository, branch: branch, remote: remote, offsite: !settings.backupDir.isEmpty))
        return checks
    }

    /// `git fsck`: every object readable and every ref's history complete.
    static func objects(_ repository: Repository) async -> Check {
        do {
            let result = try await repository.git.run(["fsck", "--no-progress", "--no-dangling"], readOnly: true, acceptedExitCodes: Set(0...255))
            if result.exitCode == 0 {
                return Check(level: .ok, name: "objects", detail: "git fsck found every object and every history complete")
            }
            let lines = (result.standardError + "\n" + result.text).split(separator: "\n").map { OneLine.make(String($0)) }.filter { !$0.isEmpty }
            return Check(
                level: .fail, name: "objects",
                detail: "git fsck failed (exit \(result.exitCode)): \(lines.prefix(3).joined(separator: "; ")). Do not run gc; restore the damaged objects "
                    + "from the remote (`git fetch`) or a backup (`syncctl restore BUNDLE --into DIR`) and copy them back")
        } catch {
            return Check(level: .fail, name: "objects", detail: "cannot run git fsck: \(error)")
        }
    }

    /// Every chain in `store` unbundled, oldest first, into a scratch repository of its own: each
    /// bundle must apply on what came before it in its chain, and its tip must then be there.
    static func backups(_ store: BundleStore, name: String, repository: Repository, scratchIn: [UInt8], expectSome: Bool) async -> Check {
        let chains = store.chains()
        let where_ = Syscall.display(store.directory)
        guard !chains.isEmpty else {
            return Check(
                level: expectSome ? .warn : .ok, name: name,
                detail: expectSome
                    ? "no bundle backups in \(where_) yet (syncd writes one in each sync round that has new commits)"
                    : "no bundle backups in \(where_) (syncd makes them in sync rounds, and there is no remote)")
        }
        let scratch = scratchIn + Array("/verify-\(getpid())".utf8)
        defer { try? Syscall.removeTree(scratch) }
        var count = 0
        for chain in chains {
            try? Syscall.removeTree(scratch)
            let git = GitRunner(workTree: scratch)
            do {
                _ = try await GitRunner(workTree: scratchIn).run(["init", "-q", "--bare", GitArgument(rawBytes: scratch)])
            } catch {
                return Check(level: .fail, name: name, detail: "cannot make a scratch repository in \(Syscall.display(scratchIn)): \(error)")
            }
            if let first = chain.first, !BundleHeader.read(first.path).isFull {
                return Check(
                    level: .fail, name: name,
                    detail: "\(first.name) in \(where_) is incremental and no full bundle precedes it: that chain cannot be restored without "
                        + "the remote. The next sync round starts a new full chain; keep the remote until then")
            }
            for backup in chain {
                let header = BundleHeader.read(backup.path)
                guard header.isBundle, !header.refs.isEmpty else {
                    return Check(level: .fail, name: name, detail: "\(backup.name) in \(where_) is not a readable git bundle (truncated or overwritten): delete it; the bundles after it in its chain cannot be restored")
                }
                let result: GitResult
                do {
                    result = try await git.run(["bundle", "unbundle", GitArgument(rawBytes: backup.path)], acceptedExitCodes: Set(0...255))
                } catch {
                    return Check(level: .fail, name: name, detail: "cannot unbundle \(backup.name): \(error)")
                }
                if result.exitCode != 0 {
                    let why = OneLine.make(result.standardError.split(separator: "\n").first.map(String.init) ?? "exit \(result.exitCode)")
                    let missing = result.standardError.contains("prerequisite") || result.standardError.contains("Repository lacks")
                    return Check(
                        level: .fail, name: name,
                        detail: "\(backup.name) in \(where_) does not restore" + (missing ? " on the bundles before it (one of its chain is missing)" : " (damaged)")
                            + ": \(why). The next sync round starts a new full chain; until then the remote is the only copy of what it held")
                }
                for tip in header.refs {
                    let present = (try? await git.run(["cat-file", "-e", GitArgument("\(tip.commit)^{commit}")], readOnly: true, acceptedExitCodes: Set(0...255)))?.exitCode == 0
                    if !present {
                        return Check(level: .fail, name: name, detail: "\(backup.name) in \(where_) restores without its tip \(tip.commit.prefix(12)) (\(tip.name)): the bundle is damaged; delete it")
                    }
                    let ours = (try? await repository.git.run(["cat-file", "-e", GitArgument("\(tip.commit)^{commit}")], readOnly: true, acceptedExitCodes: Set(0...255)))?.exitCode == 0
                    if !ours {
                        return Check(level: .warn, name: name, detail: "\(backup.name) in \(where_) holds \(tip.commit.prefix(12)), which this repository lacks: a backup of other history (copied from another workspace?)")
                    }
                }
                count += 1
            }
        }
        let newest = store.list().first.map { " (newest \($0.name))" } ?? ""
        return Check(level: .ok, name: name, detail: "\(count) bundle(s) in \(chains.count) chain(s) in \(where_) restore on their own\(newest)")
    }

    /// The off-site directory: reachable, holding the newest local bundle, and restorable alone.
    static func offsite(_ directory: String, local: BundleStore, repository: Repository, scratchIn: [UInt8]) async -> [Check] {
        let path = Syscall.realPath(Array(directory.utf8)) ?? Array(directory.utf8)
        guard let info = try? Syscall.lstat(path), info.st_mode & S_IFMT == S_IFDIR else {
            return [Check(level: .fail, name: "off-site", detail: "syncd.backupDir \(directory) is not reachable (not mounted, or missing): mount it or fix the setting; the backups are only on this disk until then")]
        }
        let store = BundleStore(directory: path)
        var checks: [Check] = []
        if let newest = local.list().first {
            if let copy = store.list().first(where: { $0.name == newest.name }), copy.size == newest.size {
                checks.append(Check(level: .ok, name: "off-site", detail: "\(directory) holds the newest backup, \(newest.name)"))
            } else {
                checks.append(Check(level: .fail, name: "off-site", detail: "\(directory) lacks the newest backup \(newest.name): see `syncctl status` for why the copy fails; syncd copies what is missing in its next sync round"))
            }
        }
        checks.append(await backups(store, name: "off-site", repository: repository, scratchIn: scratchIn, expectSome: false))
        return checks
    }

    /// The working tree is committed, or its pending paths are named.
    static func workingTree(_ repository: Repository, running: Bool) async -> Check {
        guard let entries = try? await GitStatus.dirtyPaths(repository.git) else {
            return Check(level: .fail, name: "worktree", detail: "cannot run git status in \(repository.workTreeDisplay)")
        }
        let paths = entries.filter { !$0.isNestedRepository }.map(\.path.description)
        guard !paths.isEmpty else {
            return Check(level: .ok, name: "worktree", detail: "everything in \(repository.workTreeDisplay) is committed")
        }
        let named = paths.prefix(5).joined(separator: ", ") + (paths.count > 5 ? ", …" : "")
        return Check(
            level: .warn, name: "worktree",
            detail: "\(paths.count) path(s) not committed yet: \(named)"
                + (running ? " (syncd commits them after its quiet period)" : "; syncd is not running, so they are not safe: start it, or `git add -A && git commit`"))
    }

    /// Every local commit is on the remote, or counted.
    static func pushed(_ repository: Repository, branch: String?, remote: String?, offsite: Bool) async -> Check {
        guard let branch else { return Check(level: .warn, name: "remote", detail: "HEAD is detached: no branch to compare with a remote") }
        guard let remote else {
            return Check(
                level: offsite ? .ok : .warn, name: "remote",
                detail: "no remote: the commits are on this disk" + (offsite ? " and in the off-site backups" : " only; add one (`git remote add origin URL`) or set syncd.backupDir"))
        }
        let tracking = "refs/remotes/\(remote)/\(Syncer.shortName(branch))"
        let counted = try? await repository.git.run(["rev-list", "--count", GitArgument(branch), GitArgument("^\(tracking)")], readOnly: true, acceptedExitCodes: Set(0...255))
        guard let counted, counted.exitCode == 0, let unpushed = Int(counted.text) else {
            return Check(level: .warn, name: "remote", detail: "\(remote) has no \(Syncer.shortName(branch)) yet (never pushed): `syncctl sync` pushes it")
        }
        if unpushed == 0 { return Check(level: .ok, name: "remote", detail: "every commit of \(Syncer.shortName(branch)) is on \(remote) (as of the last fetch)") }
        return Check(level: .warn, name: "remote", detail: "\(unpushed) commit(s) of \(Syncer.shortName(branch)) are not on \(remote) yet (offline, or a push is due); they are in the local backups")
    }
}
