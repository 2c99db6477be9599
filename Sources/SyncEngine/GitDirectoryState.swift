import Glibc
import Logging
import Synchronization
import SyncCore
import SyncGit
import SyncSystem

/// Reads the git directory for operations syncd must not interfere with: a person's rebase, merge,
/// cherry-pick, revert or bisect, and any git process holding `index.lock`. Plain file checks, no
/// git process: this runs before every batch and during every deferral.
public struct GitDirectoryState: Sendable {
    /// The branch HEAD points to in `repository`, nil when detached.
    public static func currentBranch(_ repository: Repository) -> String? {
        GitDirectoryState(repository: repository, staleLockAge: Settings.defaultStaleLockAge, log: .discarding).branch()
    }

    let repository: Repository
    let staleLockAge: Duration
    let log: Logger

    /// When this syncd started (nanoseconds since the epoch; 0 outside syncd run). An `index.lock`
    /// that no process holds and that was already there then is stale whatever its age: it was
    /// left by a git command that died before this start (the watchdog or a crash killed the
    /// previous syncd with its git child), and waiting `staleLockAge` would only delay commits.
    /// A value of the service, not of the process: tests run several services in one process.
    var serviceStart = 0

    private static let markers: [(name: String, code: Deferral.Code, what: String, resolve: String)] = [
        ("rebase-merge", .rebase, "a rebase", "finish it (`git rebase --continue`) or abort it (`git rebase --abort`)"),
        ("rebase-apply", .rebase, "a rebase or `git am`", "finish it (`--continue`) or abort it (`--abort`)"),
        ("MERGE_HEAD", .merge, "a merge", "commit it or abort it (`git merge --abort`)"),
        ("CHERRY_PICK_HEAD", .cherryPick, "a cherry-pick", "finish it (`git cherry-pick --continue`) or abort it (`git cherry-pick --abort`)"),
        ("REVERT_HEAD", .revert, "a revert", "finish it (`git revert --continue`) or abort it (`git revert --abort`)"),
        ("BISECT_LOG", .bisect, "a bisect", "end it with `git bisect reset`"),
    ]

    /// The branch HEAD points to (`refs/heads/...`), or nil when HEAD is detached.
    func branch() -> String? {
        guard let contents = try? Syscall.readFile(repository.gitDir + Array("/HEAD".utf8), limit: 4096)
        else { return nil }
        let text = String(decoding: contents, as: UTF8.self).trimmed
        guard text.hasPrefix("ref: refs/") else { return nil }
        return String(text.dropFirst("ref: ".count))
    }

    /// How old an `index.lock` must be before it is removed when no process holds it open and
    /// no git process runs in the tree at all (`staleLockAge` if that is shorter): nothing can
    /// be about to use it.
    static let unusedLockAge: Duration = .seconds(10)

    /// The reason to wait, or nil when syncd may commit now. An `index.lock` is removed as stale
    /// when no process has it open and no git process that could have made it (one in the tree
    /// that started before the lock was written: a `git commit` waiting in an editor keeps the
    /// lock without keeping it open) is alive, and it is older than `unusedLockAge` (no git
    /// process runs in the tree) or `staleLockAge` (others do), or predates this syncd.
    func foreignOperation() -> Deferral? {
        for marker in Self.markers where Syscall.exists(repository.gitDir + Array("/\(marker.name)".utf8)) {
            return Deferral(
                code: marker.code,
                message: "\(marker.what) is in progress in \(repository.workTreeDisplay): syncd waits until you \(marker.resolve)")
        }
        let lock = repository.gitDir + Array("/index.lock".utf8)
        guard let info = try? Syscall.lstat(lock) else { return nil }
        let now = WallClock.now()
        let ageSeconds = max(0, now.tv_sec - info.st_mtim.tv_sec)
        let holders = ProcessTable.processesHolding(lock)
        let gitInTree = ProcessTable.gitProcesses(within: repository.workTree)
        // A git process that started after the lock was written did not make it (a `git status`
        // polling the tree): it is no reason to keep a lock nobody holds open.
        let lockWritten = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
        let owners = gitInTree.filter { pid in
            !holders.contains(pid) && (ProcessTable.startTime(of: pid).map { $0 <= lockWritten + 1 } ?? true)
        }
        let started = serviceStart
        // Nanoseconds: a watchdog restart comes within the second of the kill.
        let predatesStart = started > 0 && info.st_mtim.tv_sec * 1_000_000_000 + info.st_mtim.tv_nsec < started
        let limit = gitInTree.isEmpty ? min(staleLockAge, Self.unusedLockAge) : staleLockAge
        if holders.isEmpty && owners.isEmpty && (Duration.seconds(ageSeconds) > limit || predatesStart) {
            do {
                try Syscall.unlink(lock)
                log.warning("""
                    removed a stale \(Syscall.display(lock)): \(ageSeconds) s old\(predatesStart ? " (it predates this start)" : ""), no process holds it open \
                    and no git process that could have made it is running (a git command crashed earlier)
                    """)
                return nil
            } catch {
                log.error("cannot remove the stale \(Syscall.display(lock)): \(error); remove it by hand")
            }
        }
        let who: String
        if let holder = holders.first {
            who = " (held open by pid \(holder)" + (ProcessTable.commandLine(of: holder).map { ": \($0)" } ?? "") + ")"
        } else if let owner = owners.first {
            who = " (not open in any process; pid \(owner)" + (ProcessTable.commandLine(of: owner).map { " (\($0))" } ?? "")
                + " runs in the tree since before it was made and may own it, like a `git commit` waiting for its message)"
        } else {
            // The same words whether or not a git process runs right now: one log line, not one per poll.
            who = " (no process holds it open; it is removed once it is older than "
                + (staleLockAge > Self.unusedLockAge
                    ? "\(Settings.formatDuration(Self.unusedLockAge)) while no git process runs in the tree, or \(Settings.formatDuration(staleLockAge))"
                    : Settings.formatDuration(staleLockAge))
                + ")"
        }
        return Deferral(
            code: .indexLocked,
            message: "another git process is using the index in \(repository.workTreeDisplay): \(Syscall.display(lock)) exists\(who); syncd waits")
    }
}
