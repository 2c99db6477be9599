import Glibc
import Logging
import SyncCore
import SyncGit
import SyncSystem
import SyncWatcher

/// `syncd run`: watcher → batcher → committer → remote, one workspace, until stopped.
///
/// The loop that wires the stages, each a type of its own: changes from the watcher collect in
/// `PendingChanges`; the `Batcher` (two clocks and a size cap) says when they become a batch;
/// `SyncLockGate` takes the sync lock from the writers; `CommitStep` turns the batch into one
/// commit; `RemoteSync` fetches, integrates and pushes off the commit path; `ControlInbox` reads
/// what syncctl asked for; `PeriodicReconcile` asks git what no event reported;
/// `StatusReporter` tells `state.json`, systemd and the alert hook; `StateDirectory` holds the
/// instance lock and the journal. The stages are plain classes and structs owned by this actor
/// and used only from it; the actor's own state is what connects them (the pending set, the
/// batcher, the lock) and the one wake-up stream its loop waits on.
public actor SyncService {
    public typealias Instant = ContinuousClock.Instant

    public let repository: Repository
    public private(set) var settings: Settings
    /// Flag values given at start; a reload (SIGHUP) re-reads git config and applies them again.
    private let overrides: [(name: String, value: String)]
    public let stateDirectory: [UInt8]
    public let lockDirectory: LockDirectory
    private let log: Logger
    private let clock = ContinuousClock()
    /// When this service started (seconds since the epoch), for `GitDirectoryState`.
    private let serviceStarted: Int
    /// Every git call of this service: slow ones are reported (log, state.json), a stop bounds them.
    private let gitMonitor: GitMonitor
    private let gitActivity: AsyncStream<Void>

    // The stages.
    private let watcher: Watcher
    /// What changed and is not committed yet.
    private var pending: PendingChanges
    private var batcher: Batcher<Instant>
    /// The coordinator: the sync lock, the writer lease, the writers named when they block (docs/PROTOCOL.md).
    private var gate: SyncLockGate
    /// Batches into commits: numbering, the committer, deferrals, failure backoff, the circuit breaker.
    private let commits: CommitStep
    /// Remote sync: the network runs in its own task, never on the commit path; the loop does
    /// only the local integration, under the lock (milliseconds).
    private let remote: RemoteSync
    /// Pause, emergency stop and requests from syncctl.
    private let inbox: ControlInbox
    /// `git status` every `reconcileInterval`: what no event reported.
    private let reconciler: PeriodicReconcile
    /// state.json, the metrics file, sd_notify, alerts.
    private let reporter: StatusReporter
    /// The instance lock and the journal, put back when deleted.
    private let own: StateDirectory
    private let record: JournalRecorder

    // The loop.
    /// The loop's one wake-up stream and its single timer.
    private let wakeups = Wakeups()
    /// The watcher's first crawl is done: batches may be committed.
    private var ready = false
    private var stopRequested = false
    /// Set when syncd must stop with an error found outside the loop (its instance lock lost).
    private var stopError: SyncError?

    /// The instance lock in a state directory; it holds the running syncd's pid.
    public static func instanceLock(_ stateDirectory: [UInt8]) -> [UInt8] {
        stateDirectory + Array("/syncd.lock".utf8)
    }

    /// The state directory of a repository: `syncd/` in its git directory.
    public static func stateDirectory(of repository: Repository) -> [UInt8] {
        repository.gitDir + Array("/syncd".utf8)
    }

    /// Takes the workspace's instance lock and opens the journal. Throws `.alreadyRunning` when
    /// another syncd has the lock.
    public init(
        repository: Repository, settings: Settings, overrides: [(name: String, value: String)] = [], log: Logger
    ) throws {
        signal(SIGHUP, SIG_IGN)
        serviceStarted = WallClock.nanoseconds()
        self.overrides = overrides
        // syncctl signals SIGUSR1 once it finds the pid; its default action would kill us.
        signal(SIGUSR1, SIG_IGN)
        let (gitActivity, activity) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.gitActivity = gitActivity
        let gitMonitor = GitMonitor(slowAfter: settings.slowGitAfter) { event in
            if let line = event.logLine { log.log(level: event.isWarning ? .warning : .info, "\(line)") }
            activity.yield()
        }
        self.gitMonitor = gitMonitor
        let repository = repository.monitored(by: gitMonitor)
        self.repository = repository
        self.settings = settings
        self.log = log
        let own = try StateDirectory(repository: repository, journalMaxBytes: settings.journalMaxBytes, log: log)
        self.own = own
        let directory = own.path
        stateDirectory = directory
        record = JournalRecorder(journal: own.journal, log: log)
        reporter = StatusReporter(stateDirectory: directory, workspace: repository.workTreeDisplay, settings: settings, log: log, record: record)
        lockDirectory = LockDirectory.resolve(repository, configured: settings.lockDir)
        let stopFlag = StopFlag()
        inbox = ControlInbox(lockDirectory: lockDirectory, stopFlag: stopFlag, reporter: reporter, log: log, record: record)
        try lockDirectory.prepare()
        gate = try SyncLockGate(lockDirectory: lockDirectory, leaseCap: settings.writerLeaseCap, reportAfter: settings.writerLockTimeout, log: log)
        let lockInsideTree = lockDirectory.inside(repository)
        pending = PendingChanges(capacity: WatcherOptions().pendingCapacity, excluded: lockInsideTree)
        reconciler = PeriodicReconcile(
            interval: settings.reconcileInterval, repository: repository, excluded: lockInsideTree, reporter: reporter, log: log, record: record)
        do {
            try OwnPaths.excludeLockDirectory(lockDirectory, repository: repository)
        } catch {
            log.warning("\(error); a person's `git add -A` may then commit syncd's lock files")
        }
        var watcherOptions = WatcherOptions()
        watcherOptions.degradedRescanInterval = settings.rescanInterval
        watcher = Watcher(repository: repository, options: watcherOptions, log: log)
        commits = CommitStep(
            repository: repository, stateDirectory: directory, settings: settings, serviceStarted: serviceStarted, lockDirectory: lockDirectory,
            stopFlag: stopFlag, reporter: reporter, log: log, record: record)
        batcher = Batcher(quietPeriod: settings.quietPeriod, maxLatency: settings.maxLatency, maxPaths: settings.maxBatchPaths)
        remote = RemoteSync(
            repository: repository, settings: settings, stateDirectory: directory, serviceStarted: serviceStarted, now: clock.now,
            inbox: inbox, reporter: reporter, wake: wakeups.ring, log: log, record: record)
        reporter.status.pid = getpid()
        reporter.status.workspace = repository.workTreeDisplay
        reporter.status.started = WallClock.rfc3339()
        reporter.status.lockDirectory = lockDirectory.display
    }

    /// Runs until cancelled (then commits what is pending and returns) or until watching fails.
    public func run() async throws {
        let ending = Journal.previousEnding(in: stateDirectory)
        record("start") { line in
            line.add("pid", Int(getpid()))
            line.add("workspace", repository.workTreeDisplay)
            line.add("quiet_period", Settings.formatDuration(settings.quietPeriod))
            line.add("max_latency", Settings.formatDuration(settings.maxLatency))
        }
        reporter.write()
        try await commits.committer.prepare()
        // What the last run left behind is repaired here; each repair is one `recovery` record.
        for message in await own.recoverPreviousRun(ending: ending) {
            reporter.status.recoveries += 1
            record("recovery") { line in line.add("found", message) }
        }
        try await remote.prepare()
        let watcher = watcher
        let wake = wakeups.ring
        let gitActivity = gitActivity
        let watchdogInterval = reporter.notifier.watchdogInterval
        var failure: (any Error)?
        var stoppedGracefully = false
        do {
            failure = try await withThrowingTaskGroup(of: Void.self) { group -> (any Error)? in
                group.addTask { try await watcher.run() }
                group.addTask {
                    while await watcher.changes.waitForPending() { wake.yield() }
                }
                group.addTask { try await self.loop() }
                group.addTask {
                    for await _ in SignalStream.make([SIGUSR1]) { await self.controlChanged() }
                }
                group.addTask {
                    for await _ in SignalStream.make([SIGHUP]) { await self.reloadSettings() }
                }
                // syncd's own files deleted under it (`rm -rf .git/syncd`) are put back within a
                // second, so a second syncd can never start beside this one.
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: .seconds(1))
                        await self.checkOwnFiles()
                    }
                }
                group.addTask {
                    for await _ in gitActivity { await self.gitActivityChanged() }
                }
                if let interval = watchdogInterval {
                    // Wakes the loop; the loop itself pings, so a wedged loop is caught.
                    group.addTask {
                        while !Task.isCancelled {
                            try await Task.sleep(for: interval / 2)
                            wake.yield()
                        }
                    }
                }
                defer { group.cancelAll() }
                try await group.next()
                // The loop returned: a graceful stop. Commit what is pending and push, in this
                // task (not cancelled, so no git child is torn down), while the watcher still
                // runs: the final batch's fence must see every write made before it took the
                // lock (a watcher torn down first once let a shutdown commit hold half of a
                // writer's update). A cancellation (a second signal) skips it: what is pending
                // stays in the working tree for the next start.
                guard !Task.isCancelled else { return nil }
                stoppedGracefully = true
                self.stopping()
                let uncommitted = await self.finalBatch()
                guard !Task.isCancelled else { return uncommitted }
                await self.finalSync()
                return uncommitted
            }
        } catch is CancellationError {
        } catch {
            failure = error
        }
        if !stoppedGracefully { stopping() }
        // Cancelled (a second signal): the batch in flight was stopped with its git; what is
        // pending stays in the working tree, and the exit says so.
        if failure == nil, Task.isCancelled { failure = uncommittedAtCancel() }
        reporter.status.phase = .stopped
        reporter.status.reason = failure.map { String(describing: $0) } ?? ""
        reporter.write()
        record("stop") { line in
            if let failure { line.add("error", String(describing: failure)) }
        }
        if let failure { throw failure }
    }

    /// Tests: holds the watcher's reader back (events stay queued in the kernel), so a fence fails.
    package func holdWatcher(_ held: Bool) {
        watcher.setReaderHeldBack(held)
    }

    /// Stopping, either way: no more timers, and systemd is told.
    private func stopping() {
        wakeups.cancelTimer()
        reporter.stopping()
    }

    /// A graceful stop (the first SIGTERM or SIGINT): the loop finishes the step it is in, then
    /// `run` commits what is pending and pushes, within a bound. Only a second signal cancels.
    public func requestStop() {
        guard !stopRequested else { return }
        stopRequested = true
        // The commit in flight and the final batch get `stopTimeout`; then git gets SIGTERM.
        gitMonitor.stopCalls(
            at: clock.now.advanced(by: settings.stopTimeout),
            reason: "syncd is stopping and waits at most \(Settings.formatDuration(settings.stopTimeout)) for git (syncd.stopTimeout)")
        log.info("stopping: finishing the current step, then committing what is pending and pushing (a second signal stops at once)")
        wakeups.ring.yield()
    }

    private func loop() async throws {
        for await _ in wakeups.stream {
            try Task.checkCancellation()
            if stopRequested { return }
            reporter.pingWatchdog(now: clock.now)
            drainChanges()
            await step()
            // After the initial reconcile: the crawl is done and the startup batch was tried.
            if ready { reporter.sendReady() }
            reporter.pingWatchdog(now: clock.now)
            reporter.checkIncidents(now: clock.now)
            if let stopError { throw stopError }
            if stopRequested { return }
        }
        throw CancellationError()
    }

    /// syncd's own files deleted or replaced under it are put back (`StateDirectory.repair`); if
    /// the instance lock cannot be retaken, this syncd stops.
    private func checkOwnFiles() {
        guard stopError == nil else { return }
        stopError = own.repair(gate: &gate, lockDirectory: lockDirectory, reporter: reporter, record: record)
        if stopError != nil { wakeups.ring.yield() }
    }

    /// Decides at `now`: commit a due batch, or wait for the next deadline.
    private func step() async {
        if inbox.dirty { reloadControl() }
        let now = clock.now
        guard ready else { return }
        if let emergency = inbox.emergency {
            reporter.setPhase(.emergencyStop, reason: "emergency stop since \(WallClock.rfc3339(seconds: emergency.since)) by \(emergency.by): \(emergency.reason)", code: "emergency-stop")
            return
        }
        if let pause = inbox.pause {
            if inbox.endPauseIfExpired(now: ControlFile.now()) {
                if !pending.isEmpty || pending.fullScan { batcher.request(at: clock.now) }
                reporter.setPhase(batcher.hasPending ? .pending : .idle)
            } else {
                reporter.setPhase(.paused, reason: "paused by \(pause.by): \(pause.reason)", code: "paused")
                if let until = pause.until { wakeups.schedule(now.advanced(by: .milliseconds(Int64((until - ControlFile.now()) * 1000) + 10))) }
                return
            }
        }
        if let until = commits.breakerOpenUntil(at: now) {
            reporter.setPhase(.breakerOpen, reason: reporter.status.reason, code: "circuit-breaker")
            wakeups.schedule(until)
            return
        }
        if let trigger = batcher.due(at: now) {
            await commitBatch(trigger: commits.isStartup && trigger == .requested ? "startup" : trigger.rawValue)
        }
        await remote.refreshUnpushed()
        if reporter.status.phase == .committing || reporter.status.phase == .paused || reporter.status.phase == .emergencyStop
            || (reporter.status.phase == .breakerOpen && commits.breakerOpenUntil(at: clock.now) == nil)
        {
            reporter.setPhase(batcher.hasPending ? .pending : .idle)
        }
        if commits.currentBatch == nil, batcher.due(at: clock.now) == nil {
            switch remote.due(at: clock.now) {
            case .integrate: await integrateRemote()
            case .fetch: startNetworkRound(fetch: true)
            // In a conflict only a fetch round can move things (it refreshes the conflict branch).
            case .push: startNetworkRound(fetch: !reporter.status.conflictBranch.isEmpty)
            case nil: break
            }
        }
        if let due = reconciler.due(ready: ready, now: clock.now), due <= clock.now, commits.currentBatch == nil, batcher.due(at: clock.now) == nil {
            await reconcile()
        }
        // One timer for the earliest thing to do: the batch, the next sync cycle (only when it
        // can run: a batch waiting to be retried goes first), the breaker closing, an alert
        // check. Scheduled here only: a second place replaced this timer once (a batch due
        // during a long sync cycle was never committed).
        var wakeAt: [Instant] = []
        if let deadline = batcher.deadline { wakeAt.append(deadline) }
        if commits.currentBatch == nil, let due = remote.deadline(now: clock.now) {
            // Something due now that could not run (the lock busy, a person's git operation): 100 ms.
            wakeAt.append(max(due, clock.now.advanced(by: .milliseconds(100))))
        }
        if let until = commits.breakerOpenUntil(at: clock.now) { wakeAt.append(until) }
        if let due = reconciler.due(ready: ready, now: clock.now) { wakeAt.append(max(due, clock.now.advanced(by: .milliseconds(100)))) }
        // A failure that must last `alertAfter` before its alert needs a wake-up then.
        if let check = reporter.nextIncidentCheck(now: clock.now) { wakeAt.append(check) }
        if let earliest = wakeAt.min() { wakeups.schedule(earliest) }
    }

    /// The periodic reconcile (`PeriodicReconcile`): events up to the start and up to the end of
    /// the status run are fenced in first; what no event reported is committed.
    private func reconcile() async {
        reconciler.started(at: clock.now)
        await fenceChanges()
        // A full scan is due anyway: it commits everything, and nothing can be told apart.
        guard !pending.fullScan, let dirty = await reconciler.dirtyPaths() else { return }
        await fenceChanges()
        let missed = reconciler.missed(in: dirty, pending: pending)
        guard !missed.isEmpty else { return }
        pending.add(missed)
        batcher.changed(pendingPaths: pending.count, at: clock.now)
        reporter.status.pendingPaths = pending.count
        if reporter.status.phase == .idle { reporter.setPhase(.pending) }
        reporter.write()
    }

    /// Under the exclusive lock: every change made before it was taken, into the pending set.
    private func fenceChanges() async {
        if !(await watcher.fence(within: .seconds(2))), !Task.isCancelled {
            // git is the authority while syncd holds the lock: without the fence, the events of a
            // writer's last writes may still be queued, and a batch of only the paths handed over
            // could hold half of its update. The batch asks git for every change instead.
            log.info("the watcher did not pass a fence within 2 s; this batch asks git for every change")
            pending.fullScan = true
        }
        drainChanges()
    }

    /// Moves what the watcher has collected into the pending set.
    private func drainChanges() {
        let taken = watcher.changes.take()
        let now = clock.now
        // .degraded, .recovered: the watcher logged it (once).
        for case .ready(let watched, let ignored, let unwatched) in taken.notices {
            ready = true
            pending.fullScan = true
            batcher.request(at: now)
            log.info("watching \(repository.workTreeDisplay): \(watched) directories (\(ignored) ignored, \(unwatched) unwatched); committing what changed while syncd was not running")
        }
        if !taken.rescanReasons.isEmpty {
            pending.fullScan = true
            // The watcher already said so (once, with the reason); here only the consequence.
            log.debug("events were lost (\(taken.rescanReasons.map(\.rawValue).sorted().joined(separator: ", "))); the next batch asks git for every change")
        }
        let before = (reporter.status.pendingPaths, reporter.status.pendingScan)
        if pending.take(taken.changes) > 0 || !taken.rescanReasons.isEmpty {
            batcher.changed(pendingPaths: pending.batchCount, at: now)
            reporter.status.pendingPaths = pending.shownCount
            if reporter.status.phase == .idle { reporter.setPhase(.pending) }
        }
        reporter.status.pendingScan = pending.fullScan
        let coverageChanged = reporter.status.apply(watcher.statistics)
        // Paused, deferred, failing: no change of phase writes state.json, yet the count must be
        // true there too (it once stayed 0 for as long as a pause lasted). So must the unwatched
        // count (it once lagged after the watch limit was raised).
        if (reporter.status.pendingPaths, reporter.status.pendingScan) != before || coverageChanged { pendingChanged() }
    }

    /// The pending count changed without a change of phase: state.json follows (see
    /// `StatusReporter.changed(now:)`), flushed in a task of its own.
    private func pendingChanged() {
        guard let at = reporter.changed(now: clock.now) else { return }
        let clock = clock
        reporter.flush = Task {
            try? await clock.sleep(until: at)
            await self.flushStatus()
        }
    }

    private func flushStatus() async {
        reporter.flushed()
    }

    private func commitBatch(trigger: String) async {
        let batch = commits.open(trigger: trigger, pending: pending)
        // A large batch's blobs are written before the lock, so writers wait only for what
        // changed since (the pack write and its fsync are done by then).
        await commits.prestage(batch: batch, trigger: trigger, pending: pending)
        // Writers hold the sync lock shared while they write; syncd snapshots only under the
        // exclusive lock, so no commit holds half of a multi-file update.
        guard acquireSyncLock(batch: batch) else { return }
        defer { releaseSyncLock() }
        // Everything writers wrote before they released the lock joins the batch: a fence makes
        // the watcher process what the kernel has queued, then it is drained.
        await fenceChanges()
        guard !Task.isCancelled else { return }
        await commitHeld(batch: batch, trigger: trigger, releaseAtSnapshot: true)
    }

    private var releaseAtSnapshotHook: @Sendable () async -> Void {
        { [self] in await self.snapshotTaken() }
    }

    /// The snapshot of the batch in flight is taken: writers go on (see `commitHeld`).
    private func snapshotTaken() {
        if gate.held { releaseSyncLock() }
    }

    /// Commits the pending batch (`CommitStep`); the caller holds the exclusive sync lock. True
    /// when nothing is left pending (committed, or nothing had changed).
    /// `releaseAtSnapshot`: the sync lock is released as soon as the tree is written, before the
    /// commit object and the branch move (writers wait only for the snapshot); not when an
    /// integration follows under the same lock.
    @discardableResult
    private func commitHeld(batch: Int, trigger: String, releaseAtSnapshot: Bool = false) async -> Bool {
        let outcome: CommitOutcome
        do {
            let result = try await commits.commit(
                batch: batch, trigger: trigger, pending: pending, snapshotTaken: releaseAtSnapshot ? releaseAtSnapshotHook : nil)
            if result.findingsChanged { pendingChanged() }
            outcome = result.outcome
        } catch {
            // A second signal cancelled the batch (its git got SIGTERM): not a failure to retry;
            // the run ends and says what stayed uncommitted.
            guard !Task.isCancelled else {
                log.info("batch \(batch) was cancelled by a second stop signal; its changes stay in the working tree")
                return false
            }
            failed(batch: batch, error: error)
            return false
        }
        switch outcome {
        case .committed(let summary):
            finishBatch()
            commits.committed(summary, batch: batch, trigger: trigger)
            remote.committedLocally(at: clock.now)
        case .unchanged:
            finishBatch()
            commits.unchanged(batch: batch, trigger: trigger)
        case .deferred(let deferral):
            batcher.hold(until: clock.now.advanced(by: CommitStep.deferRetry))
            reporter.status.deferrals += 1
            if let counted = deferral.pendingPaths, counted != pending.scanned {
                pending.scanned = counted
                reporter.status.pendingPaths = pending.shownCount
                pendingChanged()
            }
            commits.deferred(deferral, batch: batch)
            return false
        }
        return true
    }

    private func finishBatch() {
        if let (serial, commitOnly) = inbox.takeSyncRequest() {
            remote.requestCommitted(serial: serial, commitOnly: commitOnly, at: clock.now)
        }
        pending.clear()
        commits.finished()
        batcher.batchTaken()
    }

    private func failed(batch: Int, error: any Error) {
        batcher.hold(until: commits.failed(batch: batch, error: error, stopping: stopRequested))
    }

    /// Commits what is pending when syncd stops (SIGTERM, SIGINT), within `syncd.stopTimeout` of
    /// the stop. Returns the error to exit with when git had to be stopped and changes stayed
    /// uncommitted.
    private func finalBatch() async -> SyncError? {
        defer { gitMonitor.stopCalls(at: nil) }
        drainChanges()
        var attempted = false
        if ready, batcher.hasPending, commits.breakerOpenUntil(at: clock.now) == nil, !inbox.halted, !gitMonitor.deadlinePassed {
            attempted = true
            log.info("stopping: committing \(pending.namedPaths.count) pending path(s) first")
            // Writers holding the sync lock are waited for (they finish their update), within
            // the stop's bound; then what is left is said, and committed at the next start.
            let deadline = clock.now.advanced(by: min(settings.stopTimeout, .seconds(30)))
            while true {
                await commitBatch(trigger: "shutdown")
                guard batcher.hasPending, reporter.status.reasonCode == "writers-active", clock.now < deadline else { break }
                try? await clock.sleep(for: .milliseconds(100))
            }
        }
        if let stopped = gitMonitor.stoppedCalls.last, batcher.hasPending || commits.currentBatch != nil || pending.fullScan {
            return CommitStep.uncommittedAtStop(pending, stopped: stopped, stopTimeout: settings.stopTimeout)
        }
        // The final batch had to wait (writers held the sync lock to the end, another git held
        // the index): not "committed first", so not exit 0.
        // (A second signal cancelled it instead: `run` says that.)
        if attempted, batcher.hasPending, !Task.isCancelled {
            let why = reporter.status.reasonCode == "writers-active"
                ? "writers held the sync lock for \(Settings.formatDuration(min(settings.stopTimeout, .seconds(30))))"
                : (reporter.status.reason.isEmpty ? "the final commit had to wait" : reporter.status.reason)
            return CommitStep.uncommittedWaiting(pending, why: why)
        }
        return nil
    }

    /// The error syncd exits with when a second signal cancelled it with changes uncommitted;
    /// nil when nothing was pending.
    private func uncommittedAtCancel() -> SyncError? {
        drainChanges()
        guard batcher.hasPending || commits.currentBatch != nil || pending.fullScan else { return nil }
        return CommitStep.uncommittedAtCancel(pending)
    }

    private func gitActivityChanged() {
        reporter.slowGit(gitMonitor.slowCalls.first)
    }

    // MARK: - remote sync

    private func startNetworkRound(fetch: Bool, conflictSide: String? = nil) {
        remote.startRound(fetch: fetch, conflictSide: conflictSide, now: clock.now) { result, covering, branch in
            await self.networkFinished(result, covering: covering, branch: branch)
        }
    }

    /// At shutdown, after the final batch: the round in flight, then one bounded push.
    private func finalSync() async {
        guard ready, commits.currentBatch == nil else { return }
        await remote.finalSync()
    }

    private func networkFinished(_ result: RemoteSync.RoundResult, covering: Set<UInt64>, branch: String) async {
        await remote.finished(result, covering: covering, branch: branch, now: clock.now)
    }

    /// The remote's commits, integrated at the loop's turn: commit what is pending first, then
    /// move branch, index and working tree to the result, touching only the paths the remote
    /// changed. Held: the writer lease and the exclusive sync lock, for milliseconds; never
    /// across a network call.
    private func integrateRemote() async {
        guard let branch = remote.integrationBranch() else { return }
        guard (try? acquireSyncLock(purpose: "syncd is integrating \(remote.name)", leaseAfter: .zero)) == true else { return }
        defer { releaseSyncLock() }
        await Failpoint.hit("before-integration-commit", log: log)
        await fenceChanges()
        if batcher.hasPending || pending.fullScan {
            let batch = commits.open(trigger: "before-integration", pending: pending)
            guard await commitHeld(batch: batch, trigger: "before-integration") else { return }
        }
        switch await remote.integrate(branch: branch) {
        case .none: break
        case .commitAgain:
            pending.fullScan = true
            batcher.request(at: clock.now)
        case .pushConflictBranch(let side):
            startNetworkRound(fetch: false, conflictSide: side)
        }
    }

    // MARK: - coordination

    /// SIGUSR1: the inbox is read at the loop's next turn; an emergency stop also stops the
    /// fetch or push in flight (git gets SIGTERM and removes its own locks).
    private func controlChanged() {
        if inbox.signalled() { remote.cancelRound() }
        wakeups.ring.yield()
    }

    private func reloadControl() {
        let asked = inbox.reload(waiting: remote.syncWaiters, syncing: remote.isConfigured)
        if asked.commitRequested || (asked.resumed && (!pending.isEmpty || pending.fullScan)) { batcher.request(at: clock.now) }
        let status = reporter.status
        if !status.paused && !status.emergencyStop && (status.phase == .paused || status.phase == .emergencyStop) {
            reporter.setPhase(batcher.hasPending ? .pending : .idle)
        }
        reporter.write()
    }

    /// Takes the sync lock exclusively without waiting (the coordinator, `SyncLockGate`).
    private func acquireSyncLock(purpose: String, leaseAfter: Duration) throws -> Bool {
        defer { reporter.status.writersBlockingSince = gate.blockingSinceText }
        guard try gate.tryAcquire(purpose: purpose, leaseAfter: leaseAfter, now: clock.now) else { return false }
        lockTaken = (clock.now, purpose)
        return true
    }

    /// When the sync lock was taken and why, for the debug line that says how long it was held.
    private var lockTaken: (at: Instant, purpose: String)?

    /// The batch's turn at the sync lock: false (and the batch deferred 100 ms) while writers hold it.
    private func acquireSyncLock(batch: Int) -> Bool {
        do {
            if try acquireSyncLock(purpose: "syncd is snapshotting batch \(batch)", leaseAfter: .milliseconds(500)) { return true }
        } catch {
            failed(batch: batch, error: error)
            return false
        }
        batcher.hold(until: clock.now.advanced(by: .milliseconds(100)))
        reporter.setPhase(.deferred, reason: "writers hold the sync lock", code: "writers-active")
        return false
    }

    private func releaseSyncLock() {
        gate.release()
        reporter.status.writersBlockingSince = ""
        if let taken = lockTaken {
            log.debug("the sync lock was held \((clock.now - taken.at).wholeMilliseconds) ms (\(taken.purpose))")
            lockTaken = nil
        }
    }

    /// SIGHUP: re-read `syncd.*` from git config (flags given at start still win). A bad value
    /// keeps the running settings and says why.
    private func reloadSettings() async {
        do {
            let (fresh, warnings) = try await Settings.load(git: repository.git, overrides: overrides)
            for warning in warnings { log.warning("\(warning)") }
            try OwnPaths.checkMetricsFile(fresh.metricsFile, repository: repository)
            settings = fresh
            reporter.adopt(fresh)
            reconciler.interval = fresh.reconcileInterval
            gate.leaseCap = fresh.writerLeaseCap
            gate.reportAfter = fresh.writerLockTimeout
            batcher.quietPeriod = fresh.quietPeriod
            batcher.maxLatency = fresh.maxLatency
            batcher.maxPaths = fresh.maxBatchPaths
            remote.reload(fresh, at: clock.now)
            log.info("""
                settings reloaded: quietPeriod \(Settings.formatDuration(fresh.quietPeriod)), maxLatency \(Settings.formatDuration(fresh.maxLatency)), \
                syncInterval \(Settings.formatDuration(fresh.syncInterval)), pushDelay \(Settings.formatDuration(fresh.pushDelay)) (lockDir, remote, fsync, backupDir, squash, integrate and strategyOption apply at the next start)
                """)
            record("reload") { _ in }
            wakeups.ring.yield()
        } catch {
            log.error("settings not reloaded, the running ones stay: \((error as? SyncError)?.description ?? "\(error)")")
        }
    }
}

