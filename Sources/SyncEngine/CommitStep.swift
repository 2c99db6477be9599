import Logging
import SyncCore
import SyncGit
import SyncSystem
import SyncWatcher

/// The commit step: turns the pending set into one batch and one commit, and says how it went.
///
/// Numbers the batches (journaled before they are attempted), names the writers whose sessions
/// a commit holds, runs the `Committer`, and reports the outcome: a commit (and the circuit
/// breaker that stops a commit loop), nothing changed, a deferral (said once per reason), a
/// failure (backed off from 2 s to 60 s, logged once per distinct message per 5 minutes). The
/// service decides when a batch is due and holds the sync lock; it clears the pending set when
/// a batch is done (`finished`). Owned by `SyncService` and used only from it.
final class CommitStep {
    typealias Instant = ContinuousClock.Instant

    /// Retry interval while a foreign git operation runs.
    static let deferRetry: Duration = .seconds(1)

    let committer: Committer
    private var breaker: CircuitBreaker<Instant>
    /// The batch in flight (a retry keeps its number).
    private(set) var currentBatch: Int?
    /// The first batch commits what changed while syncd was not running.
    private(set) var isStartup = true
    private var nextBatch: Int
    /// Named writers (`as-writer --name`) whose sessions the next commit holds.
    private var writers: [String] = []
    private var started: Instant?
    private var lastDeferral: Deferral?
    private var failureBackoff: Duration = .zero
    private let lockDirectory: LockDirectory
    private let workspace: String
    private let clock = ContinuousClock()
    private let reporter: StatusReporter
    private let log: Logger
    private let record: JournalRecorder

    init(
        repository: Repository, stateDirectory: [UInt8], settings: Settings, serviceStarted: Int, lockDirectory: LockDirectory,
        stopFlag: StopFlag, reporter: StatusReporter, log: Logger, record: JournalRecorder
    ) {
        var options = Committer.Options()
        options.fsync = settings.fsync
        options.splitIndex = settings.splitIndex
        options.staleLockAge = settings.staleLockAge
        options.serviceStarted = serviceStarted
        if let inside = lockDirectory.inside(repository) { options.excluded = [inside] }
        options.stop = stopFlag
        committer = Committer(repository: repository, stateDirectory: stateDirectory, options: options, log: log)
        breaker = CircuitBreaker(maxCommits: settings.breakerMaxCommits, window: settings.breakerWindow)
        nextBatch = Journal.lastBatch(in: stateDirectory) + 1
        self.lockDirectory = lockDirectory
        workspace = repository.workTreeDisplay
        self.reporter = reporter
        self.log = log
        self.record = record
        reporter.status.lastBatch = nextBatch - 1
    }

    /// Until when the circuit breaker is open at `now` (nil: closed; it closes by itself).
    func breakerOpenUntil(at now: Instant) -> Instant? {
        breaker.isOpen(at: now) ? breaker.openUntil : nil
    }

    /// The batch being committed: the one in flight (a retry), else a new one, journaled before
    /// it is attempted.
    func open(trigger: String, pending: PendingChanges) -> Int {
        if let currentBatch { return currentBatch }
        let batch = nextBatch
        currentBatch = batch
        nextBatch += 1
        reporter.status.lastBatch = batch
        record("batch") { line in
            line.add("batch", batch)
            line.add("trigger", trigger)
            line.add("paths", pending.count)
            line.add("full_scan", pending.fullScan)
        }
        return batch
    }

    /// Before the sync lock: a large batch's blobs are written now, so writers wait only for
    /// what changed since.
    nonisolated(nonsending) func prestage(batch: Int, trigger: String, pending: PendingChanges) async {
        await committer.prestage(CommitRequest(paths: pending.paths, directoryHints: pending.directoryHints, fullScan: pending.fullScan, batch: batch, trigger: trigger))
    }

    /// Commits `pending` as `batch`; the caller holds the exclusive sync lock. `snapshotTaken`
    /// runs once the tree is written (the lock can go then). Also says whether the findings
    /// (files git could not read, nested repositories) changed what status shows.
    nonisolated(nonsending) func commit(
        batch: Int, trigger: String, pending: PendingChanges, snapshotTaken: (@Sendable () async -> Void)?
    ) async throws -> (outcome: CommitOutcome, findingsChanged: Bool) {
        // The named writers that held the lock since the last snapshot (none holds it now).
        for name in WriterLog.take(from: lockDirectory) where !writers.contains(name) { writers.append(name) }
        let request = CommitRequest(
            paths: pending.paths, directoryHints: pending.directoryHints, fullScan: pending.fullScan, batch: batch, trigger: trigger,
            writer: writers.isEmpty ? nil : writers.joined(separator: ", "),
            snapshotTaken: snapshotTaken)
        reporter.setPhase(.committing)
        started = clock.now
        let outcome = try await committer.commit(request)
        for repair in await committer.takeRecoveries() {
            reporter.status.recoveries += 1
            record("recovery") { line in line.add("found", repair) }
        }
        // Files git could not read, nested repositories: in status until they are committed.
        return (outcome, reporter.status.apply(await committer.findings))
    }

    /// The batch is done (committed, or nothing had changed): the next one starts afresh.
    func finished() {
        isStartup = false
        currentBatch = nil
        lastDeferral = nil
        failureBackoff = .zero
        reporter.status.pendingPaths = 0
        reporter.status.pendingScan = false
        reporter.status.reason = ""
        reporter.status.reasonCode = ""
    }

    /// After `finished`: the commit is counted, journaled and logged; the circuit breaker opens
    /// when commits come too fast.
    func committed(_ summary: CommitSummary, batch: Int, trigger: String) {
        let now = clock.now
        reporter.status.commits += 1
        reporter.status.lastCommit = summary.commit
        reporter.status.lastCommitAt = WallClock.rfc3339()
        reporter.status.lastCommitBatch = batch
        let writer = writers.isEmpty ? nil : writers.joined(separator: ", ")
        writers = []
        record("commit") { line in
            line.add("batch", batch)
            line.add("commit", summary.commit)
            line.add("files", summary.files.count)
            line.add("attempts", summary.attempts)
            line.add("trigger", trigger)
            if let writer { line.add("writer", writer) }
        }
        log.info("batch \(batch) (\(trigger)): \(CommitMessage.summary(summary.files)) → \(summary.commit.prefix(12)) in \((now - (started ?? now)).wholeMilliseconds) ms")
        if breaker.recordCommit(at: now) {
            reporter.status.breakerTrips = breaker.trips
            let message = "circuit breaker open: more than \(breaker.maxCommits) commits within \(Settings.formatDuration(breaker.window)) "
                + "in \(workspace), which looks like a loop (a program rewriting files after each commit?); "
                + "committing stops for \(Settings.formatDuration(breaker.window)) while changes keep being collected. "
                + "Find the writer, or raise syncd.breakerMaxCommits if this rate is expected"
            log.error("\(message)")
            let window = breaker.window
            record("breaker-open") { line in
                line.add("batch", batch)
                line.add("reopens_in", Settings.formatDuration(window))
            }
            reporter.setPhase(.breakerOpen, reason: message, code: "circuit-breaker")
        }
    }

    /// After `finished`: nothing had changed.
    func unchanged(batch: Int, trigger: String) {
        reporter.status.unchangedBatches += 1
        writers = []
        record("unchanged") { line in line.add("batch", batch) }
        log.debug("batch \(batch) (\(trigger)): nothing changed")
    }

    /// The batch waits (a person's git operation, a lock): said once per distinct reason.
    func deferred(_ deferral: Deferral, batch: Int) {
        if deferral != lastDeferral {
            lastDeferral = deferral
            log.info("batch \(batch) waits: \(deferral.message)")
            record("deferred") { line in
                line.add("batch", batch)
                line.add("reason", deferral.code.rawValue)
                line.add("message", deferral.message)
            }
        }
        reporter.setPhase(.deferred, reason: deferral.message, code: deferral.code.rawValue)
    }

    /// A batch failed (disk full, git error): everything stays pending; says so without a storm.
    /// Returns when to try again (backing off from 2 s to 60 s).
    func failed(batch: Int, error: any Error, stopping: Bool) -> Instant {
        let now = clock.now
        failureBackoff = min(max(failureBackoff * 2, .seconds(2)), .seconds(60))
        let message = (error as? SyncError)?.detailedDescription ?? String(describing: error)
        let diskFull = (error as? SyncError)?.code == .diskFull
        let advice = diskFull
            ? "the disk is full: free space on the filesystem of \(workspace); "
            : ""
        let text = "batch \(batch) failed: \(advice)\(message); nothing is lost (the changes stay in the working tree)"
            + (stopping ? "" : ", retrying in \(Settings.formatDuration(failureBackoff))")
        reporter.status.failures += 1
        reporter.status.lastError = advice + ((error as? SyncError)?.description ?? String(describing: error))
        reporter.status.lastErrorAt = WallClock.rfc3339()
        // The same failure is logged once per 5 minutes (the handler counts the repeats; the
        // batch number in the text varies, so the key is the failure itself). Every failure is
        // journaled: the retries back off, so the records stay few.
        log.error("\(text)", metadata: .limitRepeats(within: .seconds(300), key: "batch failed: " + message))
        let lastError = reporter.status.lastError
        record("failed") { line in
            line.add("batch", batch)
            line.add("error", lastError)
            line.add("disk_full", diskFull)
        }
        reporter.setPhase(.failing, reason: reporter.status.lastError, code: (error as? SyncError)?.code.rawValue ?? "error")
        return now.advanced(by: failureBackoff)
    }

    /// The error syncd exits with when a stop had to end git (`stopped`, after `stopTimeout`)
    /// and `pending` stayed uncommitted.
    static func uncommittedAtStop(_ pending: PendingChanges, stopped: GitMonitor.Call, stopTimeout: Duration) -> SyncError {
        let what = uncommitted(pending)
        return SyncError(
            .git,
            "stopped with \(what) not committed: \(stopped.description) did not finish within syncd.stopTimeout "
                + "(\(Settings.formatDuration(stopTimeout))) and was stopped with SIGTERM; nothing is lost: the changes stay in "
                + "the working tree and are committed at the next start")
    }

    /// The error syncd exits with when its final batch at a stop had to wait (`why`) and
    /// `pending` stayed uncommitted.
    static func uncommittedWaiting(_ pending: PendingChanges, why: String) -> SyncError {
        SyncError(
            .git,
            "stopped with \(uncommitted(pending)) not committed: \(why); nothing is lost: the changes stay in the working tree "
                + "and are committed at the next start")
    }

    /// The error syncd exits with when a second SIGTERM/SIGINT cancelled the graceful stop and
    /// `pending` stayed uncommitted.
    static func uncommittedAtCancel(_ pending: PendingChanges) -> SyncError {
        SyncError(
            .git,
            "stopped with \(uncommitted(pending)) not committed: a second stop signal cancelled the commit; nothing is "
                + "lost: the changes stay in the working tree and are committed at the next start (send one signal to "
                + "let syncd commit before it exits)")
    }

    /// What stayed uncommitted, for a person: how many paths and the first few.
    private static func uncommitted(_ pending: PendingChanges) -> String {
        let paths = pending.namedPaths.sorted()
        return paths.isEmpty
            ? "the changes since the last commit" + (pending.fullScan ? " (a full scan was due)" : "")
            : "\(paths.count) path(s) (\(paths.prefix(5).map(\.description).joined(separator: ", "))\(paths.count > 5 ? ", …" : ""))"
    }
}
