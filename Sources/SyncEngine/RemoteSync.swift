import Glibc
import Logging
import SyncCore
import SyncGit
import SyncSystem
import SyncWatcher

/// The loop's side of the remote: the schedule (`RemoteSchedule`), the round in flight (a task of
/// its own, never on the commit path), the `syncctl sync` requests waiting for a push, and the
/// problem last reported (logged once, not in a storm). The loop does only the local
/// integration, under the lock (milliseconds).
///
/// Owned by `SyncService` and used only from it (its async methods run on the service's actor).
final class RemoteSync {
    typealias Instant = ContinuousClock.Instant

    private var syncer: Syncer?
    /// When to fetch, push and integrate (pure, injected instants).
    private var schedule: RemoteSchedule<Instant>
    /// The round in flight (fetch or push), if any.
    private(set) var network: Task<Void, Never>?
    /// `syncctl sync` requests whose commit is made and that wait for the push.
    private(set) var syncWaiters: Set<UInt64> = []
    /// A commit was made: the unpushed count is recounted from the refs after the lock is released.
    private var unpushedStale = false
    private var settings: Settings
    private let repository: Repository
    private let stateDirectory: [UInt8]
    /// When the service started (seconds since the epoch), for `GitDirectoryState`.
    private let serviceStarted: Int
    private let inbox: ControlInbox
    private let reporter: StatusReporter
    private let wake: AsyncStream<Void>.Continuation
    private let log: Logger
    private let record: JournalRecorder
    private let clock = ContinuousClock()

    init(
        repository: Repository, settings: Settings, stateDirectory: [UInt8], serviceStarted: Int, now: Instant,
        inbox: ControlInbox, reporter: StatusReporter, wake: AsyncStream<Void>.Continuation, log: Logger, record: JournalRecorder
    ) {
        self.repository = repository
        self.settings = settings
        self.stateDirectory = stateDirectory
        self.serviceStarted = serviceStarted
        schedule = RemoteSchedule(syncInterval: settings.syncInterval, pushDelay: settings.pushDelay, now: now)
        self.inbox = inbox
        self.reporter = reporter
        self.wake = wake
        self.log = log
        self.record = record
    }

    /// The remote's name (`origin`), once prepared.
    var name: String { syncer?.options.remote ?? "" }

    /// A remote is configured (`prepare` found one): commits are pushed.
    var isConfigured: Bool { syncer != nil }

    /// Sets up the syncer from `syncd.remote` (none: committing locally only). Throws when
    /// `syncd.remote` names no remote of the repository.
    nonisolated(nonsending) func prepare() async throws {
        guard settings.remote != "none" else {
            log.info("syncd.remote is none: committing locally only")
            return
        }
        let branch = GitDirectoryState.currentBranch(repository)
        guard let name = await Syncer.remote(for: settings.remote, repository, branch: branch) else {
            log.info("no remote configured: committing locally only (add one with `git remote add origin URL`)")
            return
        }
        if !settings.remote.isEmpty {
            let known = try await repository.git.run(["remote", "get-url", GitArgument(name)], readOnly: true, acceptedExitCodes: [0, 2, 128])
            guard known.exitCode == 0 else {
                throw SyncError(
                    .invalidSetting,
                    "syncd.remote is \"\(name)\", which is not a remote of \(repository.workTreeDisplay) (`git remote -v` lists them): "
                        + "add it, or set syncd.remote to an existing remote or to none")
            }
        }
        var options = Syncer.Options(remote: name, backupDirectory: stateDirectory + Array("/backups".utf8), stateDirectory: stateDirectory)
        options.networkTimeout = settings.networkTimeout
        options.backupKeep = settings.backupKeep
        options.offsiteDirectory = settings.backupDir.isEmpty ? nil : Array(settings.backupDir.utf8)
        reporter.status.backupDir = settings.backupDir
        options.squash = settings.squash > .zero ? settings.squash : nil
        options.squashKeep = settings.squashKeep
        options.backupMaxAge = settings.backupMaxAge
        options.fsync = settings.fsync
        options.integrate = settings.integrate
        options.sshCommand = await Self.sshCommand(repository)
        options.strategyOption = settings.strategyOption
        syncer = Syncer(repository: repository, options: options, log: log)
        reporter.status.remote = name
        schedule = RemoteSchedule(syncInterval: settings.syncInterval, pushDelay: settings.pushDelay, now: clock.now)
        if let branch, let syncer { reporter.status.unpushedCommits = await syncer.unpushed(branch: branch) }
        log.info("syncing with \(name) every \(Settings.formatDuration(settings.syncInterval)), and \(Settings.formatDuration(settings.pushDelay)) after each commit")
    }

    /// The ssh command git would use: `GIT_SSH_COMMAND`, else `core.sshCommand`, else `ssh`.
    static func sshCommand(_ repository: Repository) async -> String {
        if let command = getenv("GIT_SSH_COMMAND").map({ String(cString: $0) }), !command.isEmpty { return command }
        let configured = (try? await repository.git.run(["config", "--get", "core.sshCommand"], readOnly: true, acceptedExitCodes: [0, 1]))?.text ?? ""
        return configured.isEmpty ? "ssh" : configured
    }

    /// After a local commit: the count of unpushed commits from the refs, and a push soon.
    func committedLocally(at now: Instant) {
        guard syncer != nil else { return }
        // Counted once the lock is released (the step goes on after the commit), not under it.
        unpushedStale = true
        schedule.committed(at: now)
    }

    /// After a commit: the unpushed count from the refs, once the lock is released.
    nonisolated(nonsending) func refreshUnpushed() async {
        guard unpushedStale, let syncer, let branch = GitDirectoryState.currentBranch(repository) else { return }
        unpushedStale = false
        reporter.status.unpushedCommits = await syncer.unpushed(branch: branch)
        reporter.write()
    }

    /// A sync, commit or squash request's commit is made: a sync waits for its push (`syncctl
    /// sync` returns once the commit is on the remote, or says why not); the rest are done.
    func requestCommitted(serial: UInt64, commitOnly: Bool, at now: Instant) {
        if syncer != nil, !commitOnly, !inbox.halted {
            syncWaiters.insert(serial)
            schedule.fetchNow(at: now)
        } else {
            reporter.status.syncSerialDone = serial
            reporter.status.syncOutcome = "done"
            reporter.write()
        }
    }

    /// What is due now: nil while a round is in flight (or no remote).
    func due(at now: Instant) -> RemoteSchedule<Instant>.Action? {
        guard syncer != nil, network == nil else { return nil }
        return schedule.due(at: now)
    }

    /// When something is due next: nil while a round is in flight (or no remote).
    func deadline(now: Instant) -> Instant? {
        guard syncer != nil, network == nil else { return nil }
        return schedule.deadline(now: now)
    }

    /// SIGHUP: a new interval takes effect now, not after the old one runs out.
    func reload(_ fresh: Settings, at now: Instant) {
        settings = fresh
        schedule.reload(syncInterval: fresh.syncInterval, pushDelay: fresh.pushDelay, at: now)
    }

    /// An emergency stop: the fetch or push in flight stops (git gets SIGTERM).
    func cancelRound() {
        network?.cancel()
    }

    /// What one network round found.
    enum RoundResult: Sendable {
        /// The remote has commits the branch lacks: integrate them (locally, under the lock).
        case behind
        case pushed(Syncer.PushOutcome)
        /// The conflict branch was pushed (or could not be: the problem).
        case conflictPushed(side: String, problem: RemoteProblem?)
        case failed(RemoteProblem)
        /// Cancelled (an emergency stop, a stop): nothing to report; tried again when allowed.
        case cancelled
    }

    /// Starts a fetch round (backup, fetch, then a push when nothing needs integrating) or a push
    /// round in a task of its own: committing goes on while it waits on the network. The task
    /// hands its result to `done`, which brings it back to the loop (`finished`).
    func startRound(
        fetch: Bool, conflictSide: String? = nil, now: Instant,
        done: @escaping @Sendable (RoundResult, _ covering: Set<UInt64>, _ branch: String) async -> Void
    ) {
        guard let syncer, network == nil, !inbox.halted else { return }
        let state = GitDirectoryState(repository: repository, staleLockAge: settings.staleLockAge, log: log, serviceStart: serviceStarted)
        guard let branch = state.branch() else {
            schedule.retryFetch(at: now, after: .seconds(5))
            return
        }
        schedule.roundStarted(fetch: fetch)
        let covering = syncWaiters
        // Until its request completes (a round that integrates first is followed by the push).
        let squash = inbox.squashRequest.flatMap { covering.contains($0.serial) ? $0 : nil }
        let squashMessage = squash?.message
        let squashSince = squash?.since
        record("sync-start") { line in
            line.add("remote", syncer.options.remote)
            line.add("fetch", fetch)
        }
        network = Task {
            // A person waiting on `syncctl sync` gets the commits on the branch now, squashed or not.
            let result = await RemoteSync.networkRound(
                syncer: syncer, branch: branch, fetch: fetch, conflictSide: conflictSide, squashNow: !covering.isEmpty,
                squashMessage: squashMessage, squashSince: squashSince)
            await done(result, covering, branch)
        }
    }

    static func networkRound(
        syncer: Syncer, branch: String, fetch: Bool, conflictSide: String?, squashNow: Bool = false, squashMessage: String? = nil, squashSince: String? = nil
    ) async -> RoundResult {
        do {
            if let side = conflictSide {
                return .conflictPushed(side: side, problem: try await syncer.pushConflict(side: side))
            }
            if fetch {
                switch try await syncer.fetch(branch: branch) {
                case .failed(let problem): return .failed(problem)
                case .fetched(let behind, _) where behind > 0: return .behind
                case .fetched: break
                }
            }
            return .pushed(try await syncer.push(branch: branch, squashNow: squashNow, message: squashMessage, since: squashSince))
        } catch is CancellationError {
            return .cancelled
        } catch {
            if Task.isCancelled { return .cancelled }
            return .failed(RemoteProblem(kind: .offline, message: RemoteProblem.oneLine((error as? SyncError)?.description ?? "\(error)")))
        }
    }

    /// A round ended (`now`: when its result reached the loop): the schedule, the status, the
    /// requests it covered; the loop is woken.
    nonisolated(nonsending) func finished(_ result: RoundResult, covering: Set<UInt64>, branch: String, now: Instant) async {
        network = nil
        guard let syncer else { return }
        // A cancelled round's task cannot run git any more: its count would be wrong.
        if case .cancelled = result {} else { reporter.status.unpushedCommits = await syncer.unpushed(branch: branch) }
        reporter.status.backupOffsiteError = await syncer.offsiteProblem ?? ""
        switch result {
        case .cancelled:
            schedule.cancelled(at: now)
        case .behind:
            schedule.behind()
        case .pushed(.rejected):
            // The remote moved since the fetch: fetch and integrate again, a few times, then back off.
            if !schedule.rejected(at: now) {
                syncProblem(RemoteProblem(kind: .offline, message: "the remote kept moving during \(RemoteSchedule<Instant>.maxRejections) pushes"), covering: covering)
            }
        case .pushed(.failed(let problem)), .failed(let problem):
            syncProblem(problem, covering: covering)
        case .pushed(.held(let until)):
            // syncd.squash: the branch gets its one commit when the window closes.
            schedule.succeeded(at: now)
            schedule.committed(at: now.advanced(by: .milliseconds(Int64(max(0, until - ControlFile.now()) * 1000))))
            reporter.status.lastSyncAt = WallClock.rfc3339()
            record("sync-done") { line in
                line.add("pushed", false)
                line.add("held_until", WallClock.rfc3339(seconds: until))
            }
        case .pushed(let outcome):
            schedule.succeeded(at: now)
            let pushed: Bool
            if case .pushed = outcome { pushed = true } else { pushed = false }
            reporter.status.lastSyncAt = WallClock.rfc3339()
            if pushed { reporter.status.lastPushAt = reporter.status.lastSyncAt }
            if !reporter.status.offlineSince.isEmpty { log.info("\(syncer.options.remote) is reachable again; synced") }
            if !reporter.status.conflictBranch.isEmpty { log.info("the conflict with \(syncer.options.remote) is resolved; syncing again") }
            reporter.status.offlineSince = ""
            reporter.status.syncError = ""
            reporter.status.syncProblemKind = ""
            reporter.status.syncFix = ""
            reporter.status.conflictBranch = ""
            reporter.status.conflictFiles = []
            record("sync-done") { line in
                line.add("pushed", pushed)
            }
            completeSyncRequests(covering, outcome: pushed ? "pushed" : "synced")
        case .conflictPushed(let side, let problem):
            if let problem {
                log.warning("could not push the conflict branch \(side): \(problem); it exists locally")
            }
            schedule.conflictRoundEnded(at: now)
            completeSyncRequests(covering, outcome: "committed; not pushed: conflict with \(syncer.options.remote) in \(reporter.status.conflictFiles.joined(separator: ", ")), local side on \(side)")
        }
        reporter.write()
        wake.yield()
    }

    /// What the loop does after an integration.
    enum IntegrationFollowUp {
        case none
        /// Something changed after the commit before it: commit it (a full scan), then try again.
        case commitAgain
        /// A conflict: the local side goes to the conflict branch, in a round of its own.
        case pushConflictBranch(side: String)
    }

    /// The branch to integrate into, when an integration can run now (a person's rebase, merge
    /// or commit in progress goes first).
    func integrationBranch() -> String? {
        guard syncer != nil else { return nil }
        let state = GitDirectoryState(repository: repository, staleLockAge: settings.staleLockAge, log: log, serviceStart: serviceStarted)
        guard let branch = state.branch(), state.foreignOperation() == nil else { return nil }
        return branch
    }

    /// The remote's commits, integrated at the loop's turn; the loop holds the writer lease and
    /// the exclusive sync lock (for milliseconds; never across a network call) and has committed
    /// what was pending. Moves branch, index and working tree to the result, touching only the
    /// paths the remote changed.
    nonisolated(nonsending) func integrate(branch: String) async -> IntegrationFollowUp {
        guard let syncer else { return .none }
        var followUp = IntegrationFollowUp.none
        let started = clock.now
        do {
            let outcome = try await syncer.integrate(branch: branch)
            reporter.status.unpushedCommits = await syncer.unpushed(branch: branch)
            switch outcome {
            case .upToDate:
                schedule.integrated(at: clock.now)
            case .integrated(let commit, let how):
                schedule.integrated(at: clock.now)
                log.info("\(how) → \(commit.prefix(12)) in \((clock.now - started).wholeMilliseconds) ms")
                record("integrated") { line in
                    line.add("commit", commit)
                    line.add("how", how)
                }
                reporter.status.lastSyncAt = WallClock.rfc3339()
            case .conflict(let files):
                schedule.conflicted()
                let side = await syncer.currentConflictBranch() ?? "syncd/conflict"
                if reporter.status.conflictBranch != side {
                    log.error("""
                        CONFLICT with \(syncer.options.remote) in \(files.joined(separator: ", ")): nothing was changed here; \
                        the local side is pushed to \(side). Resolve it by hand (`git merge \(syncer.options.remote)/\(Syncer.shortName(branch))`, \
                        fix the files, commit); syncd keeps committing locally and syncs again once the histories merge
                        """)
                    record("sync-conflict") { line in
                        line.add("branch", side)
                        line.add("files", files)
                    }
                }
                reporter.status.conflictBranch = side
                reporter.status.conflictFiles = files
                reporter.status.lastSyncAt = WallClock.rfc3339()
                followUp = .pushConflictBranch(side: side)
            case .blocked(let paths):
                if schedule.refusals == 0 {
                    // Maybe a file created after the commit above: commit again, then retry once.
                    _ = schedule.refused()
                    followUp = .commitAgain
                } else {
                    schedule.integrationFailed()
                    syncProblem(RemoteProblem(
                        kind: .setup,
                        message: "\(syncer.options.remote) now tracks \(paths), which exist here untracked (ignored, or a nested repository): "
                            + "syncd never overwrites them, so the remote's commits wait",
                        fix: "move them aside (for example `mv PATH PATH.local`) or delete them if the remote's version is the one to keep; syncd then integrates by itself"),
                        covering: [])
                }
            case .refused(let paths):
                // A writer changed a path the remote changes after the commit above: commit it and
                // try again (the next turn), a few times; nothing was changed meanwhile.
                followUp = .commitAgain
                if !schedule.refused() {
                    syncProblem(RemoteProblem(
                        kind: .offline,
                        message: "cannot integrate \(syncer.options.remote) yet: git refused (\(paths)) after \(RemoteSchedule<Instant>.maxRefusals) commits; nothing was changed, syncd retries"),
                        covering: [])
                } else {
                    log.info("integrating \(syncer.options.remote) waits: \(paths) changed after the last commit; committing them first")
                }
            }
        } catch {
            schedule.integrationFailed()
            let text = RemoteProblem.oneLine((error as? SyncError)?.description ?? "\(error)")
            if text.contains("unrelated histories") {
                syncProblem(RemoteProblem(
                    kind: .setup, message: "\(syncer.options.remote)/\(Syncer.shortName(branch)) has a history unrelated to \(Syncer.shortName(branch)) here",
                    fix: "check that the remote is the right one (`git remote -v`); to join the two histories, merge by hand once: "
                        + "`git merge --allow-unrelated-histories \(syncer.options.remote)/\(Syncer.shortName(branch))`"),
                    covering: [])
            } else {
                syncProblem(RemoteProblem(kind: .offline, message: text), covering: [])
            }
        }
        reporter.write()
        return followUp
    }

    private func completeSyncRequests(_ serials: Set<UInt64>, outcome: String) {
        if let request = inbox.squashRequest, serials.contains(request.serial) { inbox.squashRequest = nil }
        let done = syncWaiters.intersection(serials)
        guard let highest = done.max() else { return }
        syncWaiters.subtract(done)
        reporter.status.syncSerialDone = max(reporter.status.syncSerialDone, highest)
        reporter.status.syncOutcome = outcome
    }

    /// The remote is unreachable or a step failed: back off (5 s doubling up to the interval,
    /// with jitter) and log the first failure, then at most every 10 minutes. A setup problem
    /// (host key, credentials, URL) is named as such, with its fix, never as "offline".
    private func syncProblem(_ problem: RemoteProblem, covering: Set<UInt64>) {
        let now = clock.now
        if reporter.status.offlineSince.isEmpty { reporter.status.offlineSince = WallClock.rfc3339() }
        reporter.status.syncError = problem.description
        reporter.status.syncProblemKind = problem.kind.rawValue
        reporter.status.syncFix = problem.fix
        schedule.failed(setup: problem.kind == .setup, at: now) { backoff in
            .milliseconds(Int64.random(in: 0...max(1, backoff.wholeMilliseconds / 5)))
        }
        let message = problem.description
        // The same problem is logged once per 10 minutes (the handler counts the repeats; the
        // unpushed count in the text varies, so the key is the problem itself). Every failed
        // round is journaled: rounds back off, so the records stay few.
        let limit: Logger.Metadata = .limitRepeats(within: .seconds(600), key: "sync: " + message)
        if problem.kind == .setup {
            log.error("""
                cannot sync with \(reporter.status.remote): SETUP PROBLEM: \(problem.message). To fix: \(problem.fix); \
                commits go on locally (\(reporter.status.unpushedCommits) not pushed)
                """, metadata: limit)
        } else {
            log.warning("cannot sync with \(reporter.status.remote): \(problem.message); commits go on locally (\(reporter.status.unpushedCommits) not pushed), retrying with backoff", metadata: limit)
        }
        record("sync-failed") { line in
            line.add("error", message)
            line.add("kind", problem.kind.rawValue)
        }
        completeSyncRequests(covering.union(syncWaiters), outcome: "committed; not pushed: \(message)")
        reporter.write()
    }

    /// At shutdown: the round in flight gets a short grace (a push almost done finishes), then is
    /// cancelled (git gets SIGTERM, never SIGKILL); then one push of what is not pushed yet, bounded
    /// so the whole stop stays well inside the unit's TimeoutStopSec.
    nonisolated(nonsending) func finalSync() async {
        guard let syncer, !inbox.halted else { return }
        if let network {
            // Task.value does not return on cancellation: race it with a timer, and cancel the
            // round itself when the timer wins (its git child then ends and `value` returns).
            let finished = await withTaskGroup(of: Bool.self) { group in
                group.addTask { await network.value; return true }
                group.addTask { (try? await Task.sleep(for: Self.shutdownGrace)) != nil ? false : true }
                let first = await group.next() ?? true
                if !first { network.cancel() }
                group.cancelAll()
                return first
            }
            if !finished {
                if let branch = GitDirectoryState.currentBranch(repository) { reporter.status.unpushedCommits = await syncer.unpushed(branch: branch) }
                log.warning("""
                    stopping: the sync with \(syncer.options.remote) in flight did not finish within \(Settings.formatDuration(Self.shutdownGrace)); \
                    cancelled, and no push is tried at this stop (\(reporter.status.unpushedCommits) commit(s) not pushed; the next start pushes them)
                    """)
                return
            }
        }
        guard let branch = GitDirectoryState.currentBranch(repository), reporter.status.conflictBranch.isEmpty else { return }
        reporter.status.unpushedCommits = await syncer.unpushed(branch: branch)
        guard reporter.status.unpushedCommits > 0 else { return }
        let limit = min(settings.networkTimeout, Self.shutdownPushLimit)
        log.info("stopping: pushing \(reporter.status.unpushedCommits) commit(s) first (at most \(Settings.formatDuration(limit)))")
        let result: RoundResult?
        do {
            result = .pushed(try await syncer.push(branch: branch, timeout: limit, squashNow: true))
        } catch {
            result = .failed(RemoteProblem(kind: .offline, message: RemoteProblem.oneLine((error as? SyncError)?.description ?? "\(error)")))
        }
        await finished(
            result ?? .failed(RemoteProblem(kind: .offline, message: "the push at shutdown timed out")), covering: syncWaiters, branch: branch,
            now: clock.now)
    }

    /// How long a sync round in flight may go on once a stop is asked for.
    static let shutdownGrace: Duration = .seconds(10)
    /// The longest push at shutdown (the unit's TimeoutStopSec is 180 s; grace + push + commit
    /// stay well inside it).
    static let shutdownPushLimit: Duration = .seconds(30)
}
