import Logging
import SyncCore
import SyncSystem
import SyncGit
import SyncWatcher

/// The layer behind the watcher: every `syncd.reconcileInterval`, `git status` over the whole
/// tree, compared with what events reported. A path no event reported is committed like any
/// change, counted (`reconcile_found`, a metric, an alert) and named in the log and the journal:
/// the count should always be 0. The first run after the start only learns what stays dirty
/// (the startup batch just committed the rest); a path that stays dirty (a nested repository, an
/// unreadable file) is reported once, not every hour.
///
/// Owned by `SyncService` and used only from it; the service fences the watcher's events in
/// around the status run, so a change that is merely in flight is never counted.
final class PeriodicReconcile {
    typealias Instant = ContinuousClock.Instant

    var interval: Duration
    /// The last run (or the start).
    private var last: Instant?
    /// The dirty paths the last run saw.
    private var seen: Set<RepoPath> = []
    private var learned = false
    private let repository: Repository
    /// syncd's lock directory when it is inside the tree: never a change.
    private let excluded: RepoPath?
    private let reporter: StatusReporter
    private let log: Logger
    private let record: JournalRecorder

    init(interval: Duration, repository: Repository, excluded: RepoPath?, reporter: StatusReporter, log: Logger, record: JournalRecorder) {
        self.interval = interval
        self.repository = repository
        self.excluded = excluded
        self.reporter = reporter
        self.log = log
        self.record = record
    }

    /// When the next run is due (nil: off, or not started yet).
    func due(ready: Bool, now: Instant) -> Instant? {
        guard interval > .zero, ready else { return nil }
        guard let last else { return now }
        return last.advanced(by: interval)
    }

    func started(at now: Instant) {
        last = now
    }

    /// What `git status` finds changed (nested repositories and syncd's lock directory left
    /// out); nil when it failed (logged; tried again at the next interval).
    nonisolated(nonsending) func dirtyPaths() async -> Set<RepoPath>? {
        let entries: [StatusEntry]
        do {
            entries = try await GitStatus.dirtyPaths(repository.git)
        } catch {
            log.warning("periodic reconcile: git status failed (\((error as? SyncError)?.description ?? "\(error)")); trying again in \(Settings.formatDuration(interval))")
            return nil
        }
        return Set(entries.filter { !$0.isNestedRepository }.map(\.path).filter { path in
            !(excluded.map { path.isWithin($0) } ?? false)
        })
    }

    /// The paths `dirty` holds that no event reported (not pending, not dirty at the last run),
    /// counted and said; the caller commits them.
    func missed(in dirty: Set<RepoPath>, pending: PendingChanges) -> [RepoPath] {
        let first = !learned
        defer {
            seen = dirty
            learned = true
        }
        let missed = dirty.filter { path in !seen.contains(path) && !pending.contains(path) }.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }
        reporter.status.lastReconcileAt = WallClock.rfc3339()
        guard !first else { return [] }
        reporter.status.lastReconcileFound = missed.count
        guard !missed.isEmpty else {
            reporter.write()
            return []
        }
        reporter.status.reconcileFound += missed.count
        let named = missed.prefix(10).map(\.description).joined(separator: ", ") + (missed.count > 10 ? ", …" : "")
        log.warning("""
            periodic reconcile: \(missed.count) changed path(s) that no inotify event reported: \(named); committing them now. \
            If this repeats, part of the tree does not deliver events (a network or bind mount, writes through mmap)
            """)
        record("reconcile") { line in
            line.add("found", missed.count)
            line.add("paths", missed.prefix(100).map(\.description))
        }
        return missed
    }
}
