import Logging
import SyncCore
import SyncSystem
import SyncWatcher

/// The control inbox: what `syncctl` asked for, read from the control files in the lock
/// directory (docs/PROTOCOL.md): the pause, the emergency stop, and the requests (sync, commit,
/// squash) with their serials.
///
/// syncctl writes a file, then sends SIGUSR1; `signalled()` marks the inbox to be read at the
/// loop's next turn (and stops a commit in flight at once for an emergency stop), `reload` reads
/// it. Owned by `SyncService` and used only from it; it writes its part of the status.
final class ControlInbox {
    /// What a reload asks of the loop.
    struct Reloaded {
        /// A sync, commit or squash request was accepted: commit now.
        var commitRequested = false
        /// The pause ended (`syncctl resume`): what was collected is committed.
        var resumed = false
    }

    /// A squash request (`syncctl squash`): its message and the commit after which to fold.
    typealias SquashRequest = (serial: UInt64, message: String, since: String?)

    private(set) var pause: DaemonPause?
    private(set) var emergency: EmergencyStop?
    /// Set by SIGUSR1 (and at start): the files are read again at the loop's next turn.
    private(set) var dirty = true
    /// The request whose commit is not made yet.
    private(set) var syncSerialPending: UInt64?
    /// The pending request asks for a commit only (`syncctl checkpoint`, `rewind`).
    private var commitOnly = false
    /// Until its push completes (the remote sync clears it).
    var squashRequest: SquashRequest?
    private var problems: [String] = []
    /// Requests older than this process were answered by an earlier one, or by the startup batch.
    private let startSerial = ControlFile.newSerial()
    /// Seen by the committer between its steps: an emergency stop reaches a commit in flight.
    let stopFlag: StopFlag
    private let lockDirectory: LockDirectory
    private let reporter: StatusReporter
    private let log: Logger
    private let record: JournalRecorder

    init(lockDirectory: LockDirectory, stopFlag: StopFlag, reporter: StatusReporter, log: Logger, record: JournalRecorder) {
        self.lockDirectory = lockDirectory
        self.stopFlag = stopFlag
        self.reporter = reporter
        self.log = log
        self.record = record
    }

    /// Paused or emergency-stopped: no git activity beyond collecting changes.
    var halted: Bool { emergency != nil || pause != nil }

    /// SIGUSR1 from syncctl. Runs even while a commit is awaited (actors are reentrant): the
    /// committer sees an emergency stop at its next step. True when an emergency stop is there
    /// (a fetch or push in flight must stop too).
    func signalled() -> Bool {
        dirty = true
        guard Syscall.exists(lockDirectory.emergencyStop) else { return false }
        stopFlag.set(true)
        return true
    }

    /// Re-reads the control files (at start and on SIGUSR1 from syncctl). Broken files get a loud
    /// log line and the safe reading: a broken emergency stop stops, a broken pause pauses.
    /// `waiting`: the requests whose commit is made and that wait for their push; `syncing`: a
    /// remote is configured.
    func reload(waiting: Set<UInt64>, syncing: Bool) -> Reloaded {
        dirty = false
        var reloaded = Reloaded()
        var problems: [String] = []
        defer { stopFlag.set(emergency != nil) }
        switch ControlFile.read(EmergencyStop.self, at: lockDirectory.emergencyStop) {
        case .absent: emergency = nil
        case .value(let value): emergency = value
        case .broken(let message):
            problems.append(message + "; syncd treats it as an emergency stop: `syncctl resume --clear-emergency` clears it")
            emergency = EmergencyStop(reason: "unreadable emergency-stop file", by: "unknown", since: ControlFile.now(), serial: 0)
        }
        switch ControlFile.read(DaemonPause.self, at: lockDirectory.daemonPause) {
        case .absent: pause = nil
        case .value(let value): pause = value
        case .broken(let message):
            problems.append(message + "; syncd treats it as a pause: `syncctl resume` clears it")
            pause = DaemonPause(reason: "unreadable pause file", by: "unknown", since: ControlFile.now(), until: nil, serial: 0)
        }
        if case .value(let request) = ControlFile.read(ControlRequest.self, at: lockDirectory.controlRequest) {
            reporter.status.controlSerial = max(reporter.status.controlSerial, request.serial)
        }
        if case .value(let request) = ControlFile.read(ControlRequest.self, at: lockDirectory.syncRequest),
            request.serial > reporter.status.syncSerialDone, request.serial != syncSerialPending, !waiting.contains(request.serial)
        {
            reporter.status.controlSerial = max(reporter.status.controlSerial, request.serial)
            if request.serial < startSerial {
                // Left by a request to an earlier syncd: never replayed (the startup batch commits
                // everything pending anyway).
                reporter.status.syncSerialDone = request.serial
                reporter.status.syncOutcome = "superseded: syncd restarted; run `syncctl sync` again"
            } else if emergency != nil || pause != nil {
                reporter.status.syncSerialDone = request.serial
                reporter.status.syncOutcome = emergency != nil ? "refused: emergency stop" : "refused: paused"
            } else {
                syncSerialPending = request.serial
                // `commit` (checkpoint, rewind): commit what is pending, no push to wait for.
                commitOnly = request.command == "commit"
                // `squash` (syncctl squash): commit, then fold syncd's unpushed commits with the
                // person's message and push.
                squashRequest = request.command == "squash" ? (request.serial, request.message ?? "squashed with syncctl", request.since) : nil
                reloaded.commitRequested = true
                log.info("\(commitOnly ? "commit" : "sync") requested by \(request.by): committing now\((!syncing || commitOnly ? "" : ", then pushing"))")
            }
        }
        if problems != self.problems {
            for problem in problems { log.error("\(problem)") }
            self.problems = problems
        }
        let wasPaused = reporter.status.paused
        let wasStopped = reporter.status.emergencyStop
        reporter.status.paused = pause != nil
        reporter.status.pausedReason = pause?.reason ?? ""
        reporter.status.pausedBy = pause?.by ?? ""
        reporter.status.pausedUntil = pause?.until.map { WallClock.rfc3339(seconds: $0) } ?? ""
        reporter.status.emergencyStop = emergency != nil
        reporter.status.emergencyReason = emergency?.reason ?? ""
        reporter.status.emergencySince = emergency.map { WallClock.rfc3339(seconds: $0.since) } ?? ""
        let status = reporter.status
        if status.emergencyStop != wasStopped {
            if status.emergencyStop {
                log.error("EMERGENCY STOP by \(emergency?.by ?? "?"): \(emergency?.reason ?? ""); no git activity until `syncctl resume --clear-emergency`")
            } else {
                log.info("emergency stop cleared; committing resumes")
            }
            record(status.emergencyStop ? "emergency-stop" : "emergency-cleared") { line in line.add("reason", status.emergencyReason) }
        }
        if status.paused != wasPaused {
            if status.paused {
                log.info("paused by \(pause?.by ?? "?")\(status.pausedUntil.isEmpty ? "" : " until \(status.pausedUntil)"): \(pause?.reason ?? ""); changes are collected and committed as one batch on resume")
            } else {
                log.info("resumed: committing what was collected")
            }
            record(status.paused ? "pause" : "resume") { line in line.add("reason", status.pausedReason) }
            reloaded.resumed = !status.paused
        }
        return reloaded
    }

    /// The pause has an end (`syncctl pause --for`) that has passed: it ends here (its file is
    /// removed). True when it ended.
    func endPauseIfExpired(now: Double) -> Bool {
        guard let expired = pause, let until = expired.until, now >= until else { return false }
        try? ControlFile.remove(lockDirectory.daemonPause)
        pause = nil
        reporter.status.paused = false
        reporter.status.pausedReason = ""
        reporter.status.pausedBy = ""
        reporter.status.pausedUntil = ""
        log.info("the pause by \(expired.by) expired; committing what was collected")
        record("resume") { line in line.add("reason", "expired") }
        return true
    }

    /// The pending request's commit is made: it is taken (its push, if any, is the remote's).
    func takeSyncRequest() -> (serial: UInt64, commitOnly: Bool)? {
        guard let serial = syncSerialPending else { return nil }
        syncSerialPending = nil
        return (serial, commitOnly)
    }
}
