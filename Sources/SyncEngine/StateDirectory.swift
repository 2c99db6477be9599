import Glibc
import Logging
import SyncCore
import SyncGit
import SyncSystem
import SyncWatcher

/// syncd's state directory (`.git/syncd`) while syncd runs: the instance lock that keeps a second
/// syncd out of the workspace, and the journal. Both are put back when the directory is deleted
/// under syncd; what the previous run left behind is repaired at the start.
///
/// Owned by `SyncService` and used only from it.
final class StateDirectory {
    let path: [UInt8]
    let journal: Journal
    private var instanceLock: ProcessLock
    private let repository: Repository
    private let log: Logger

    /// Creates the directory, takes the instance lock and opens the journal. Throws
    /// `.alreadyRunning` when another syncd has the lock.
    init(repository: Repository, journalMaxBytes: Int, log: Logger) throws {
        let directory = SyncService.stateDirectory(of: repository)
        do {
            try Syscall.makeDirectory(directory)
        } catch {
            throw SyncError(.syscall, "cannot create syncd's state directory \(Syscall.display(directory)): check its permissions", cause: error)
        }
        // core.hooksPath of syncd's git calls: an empty directory, so no hook runs (git finds none
        // there even when it is missing; made so a person sees where the setting points).
        try? Syscall.makeDirectory(Repository.noHooksDirectory(gitDir: repository.gitDir))
        let lockPath = SyncService.instanceLock(directory)
        let outcome: ProcessLock.Outcome
        do {
            outcome = try ProcessLock.acquire(lockPath)
        } catch {
            throw SyncError(
                .syscall,
                "cannot open the instance lock \(Syscall.display(lockPath))"
                    + (error.errno == Errno(ELOOP) ? ": it is a symlink; remove it (syncd never follows one there)" : ""),
                cause: error)
        }
        switch outcome {
        case .acquired(let lock):
            instanceLock = lock
            Self.removeStaleStatusTemporaries(in: directory, log: log)
        case .heldBy(let pid):
            let who = pid.map { pid in "pid \(pid)" + (ProcessTable.commandLine(of: pid).map { ": \($0)" } ?? "") } ?? "pid unknown"
            throw SyncError(
                .alreadyRunning,
                "syncd is already running for \(repository.workTreeDisplay) (\(who)); one instance per workspace: "
                    + "stop that one first (for example `kill \(pid.map(String.init) ?? "PID")` or `systemctl stop` its unit)")
        }
        do {
            journal = try Journal(directory: directory, maxBytes: journalMaxBytes)
        } catch {
            throw SyncError(.syscall, "cannot open the journal in \(Syscall.display(directory))", cause: error)
        }
        path = directory
        self.repository = repository
        self.log = log
    }

    /// The `state.json.tmp-PID` files a syncd killed while writing state.json left behind (only
    /// those: syncctl writes its control files' temporaries here too). Only syncd writes
    /// state.json, and the caller holds the instance lock and has not written it yet, so every
    /// such file is stale.
    static func removeStaleStatusTemporaries(in directory: [UInt8], log: Logger) {
        let prefix = Array("state.json.tmp-".utf8)
        guard let entries = try? DirectoryListing.list(directory) else { return }
        for entry in entries where entry.name.count > prefix.count && entry.name.starts(with: prefix) {
            let path = directory + [UInt8(ascii: "/")] + entry.name
            do {
                try Syscall.unlink(path)
                log.debug("removed \(Syscall.display(path)), left by a syncd that was killed while it wrote state.json")
            } catch {
                log.warning("cannot remove \(Syscall.display(path)), left by a syncd that was killed while it wrote state.json: \(error); remove it by hand")
            }
        }
    }

    /// What the last run left behind, repaired before anything else: an integration interrupted
    /// by a crash is finished or rolled back (and a stash left by an older syncd is restored).
    /// `ending`: how the journal says the previous run ended. One message per repair.
    nonisolated(nonsending) func recoverPreviousRun(ending: (crashed: Bool, openBatch: Int?)?) async -> [String] {
        let found = RecoveryNotes(log)
        if let ending {
            found.log.warning("""
                the previous run ended without a clean stop (killed, crashed or power lost)\
                \((ending.openBatch.map { "; its batch \($0) was not committed, and the startup batch commits what it held" } ?? ""))
                """)
        }
        await IntegrationInFlight.recover(repository: repository, directory: path, log: found.log)
        await StashInFlight.recover(git: repository.git, directory: path, log: found.log)
        return found.messages
    }

    /// Puts back the state directory, the instance lock, the journal and the sync lock when they
    /// were deleted or replaced while syncd runs. The instance lock is what keeps a second syncd
    /// out; if another syncd took it meanwhile (or it cannot be taken again), returns the error
    /// this one stops with.
    func repair(gate: inout SyncLockGate, lockDirectory: LockDirectory, reporter: StatusReporter, record: JournalRecorder) -> SyncError? {
        let directory = Syscall.display(path)
        if !instanceLock.isIntact {
            let lockPath = SyncService.instanceLock(path)
            do {
                try Syscall.makeDirectory(path)
                switch try ProcessLock.acquire(lockPath) {
                case .acquired(let lock):
                    instanceLock = lock
                    reporter.status.recoveries += 1
                    log.error("""
                        syncd's state directory \(directory) (or its instance lock) was deleted while syncd ran: \
                        recreated it and took the instance lock again, so no second syncd can start beside this one. \
                        What was in it (journal, backups, pause and stop files) is gone; do not delete it while syncd runs
                        """)
                case .heldBy(let pid):
                    return SyncError(
                        .alreadyRunning,
                        "syncd's state directory \(directory) was deleted while syncd ran, and another syncd (pid \(pid.map(String.init) ?? "unknown")) "
                            + "has taken the workspace since: this one stops so that only one commits")
                }
            } catch {
                return SyncError(
                    .syscall, "syncd's state directory \(directory) was deleted while syncd ran and cannot be recreated: stopping, "
                        + "since the instance lock can no longer keep a second syncd out; fix the permissions of \(Syscall.display(repository.gitDir)) and start again",
                    cause: error)
            }
        }
        do {
            if try journal.reopenIfReplaced() {
                record("recovery") { line in
                    line.add("found", "\(directory) deleted while syncd ran")
                    line.add("done", "recreated it, retook the instance lock, reopened the journal and the sync lock")
                }
            }
        } catch {
            log.warning("cannot reopen the journal in \(directory): \(error)")
        }
        do {
            if try gate.reopenIfReplaced() {
                log.error("""
                    the sync lock \(Syscall.display(lockDirectory.syncLock)) was deleted or replaced while syncd ran: locked the new file; \
                    writers that used the old one meanwhile were not coordinated with syncd. Do not delete the lock directory while syncd runs
                    """)
            }
        } catch {
            log.error("\(error)")
        }
        if !reporter.fileExists { reporter.write() }
        return nil
    }
}
