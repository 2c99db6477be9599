import Logging
import Synchronization
import SyncCore
import SyncGit
import SyncWatcher

/// Runs a `Watcher` on a fixture and records everything it reports, so a test can wait for the
/// changes it expects (with a deadline) and then check what else was reported.
public final class WatchHarness: Sendable {
    public let watcher: Watcher
    private let task: Task<Void, any Error>
    private let pump: Task<Void, Never>
    private let recorded = Store()

    public struct Recorded: Sendable {
        public var changes: [Change] = []
        public var rescans: [Set<RescanReason>] = []
        public var notices: [WatcherNotice] = []
        /// Paths found by reconciles after rescans.
        public var reconciled: Set<RepoPath> = []
    }

    public init(repository: Repository, options: WatcherOptions = WatcherOptions(), log: Logger? = nil) {
        let watcher = Watcher(repository: repository, options: options, log: log ?? .discarding)
        self.watcher = watcher
        task = Task { try await watcher.run() }
        let recorded = recorded
        pump = Task {
            while let taken = await watcher.changes.next() {
                var reconciled: [Change] = []
                if !taken.rescanReasons.isEmpty {
                    reconciled = (try? await watcher.reconcile()) ?? []
                }
                recorded.withLock { state in
                    state.changes += taken.changes
                    state.notices += taken.notices
                    if !taken.rescanReasons.isEmpty {
                        state.rescans.append(taken.rescanReasons)
                        state.reconciled.formUnion(reconciled.map(\.path))
                    }
                }
            }
        }
    }

    private final class Store: Sendable {
        private let state = Mutex(Recorded())
        func withLock<T: Sendable>(_ body: (inout Recorded) -> T) -> T { state.withLock { body(&$0) } }
    }

    public var snapshot: Recorded { recorded.withLock { $0 } }

    /// Every path reported so far, by events or by reconciles.
    public var paths: Set<RepoPath> {
        recorded.withLock { state in Set(state.changes.map(\.path)).union(state.reconciled) }
    }

    /// Waits until the initial crawl is done.
    public func ready(within limit: Duration = .seconds(30)) async throws {
        try await waitUntil(limit, "watcher ready") { [watcher] in watcher.statistics.ready }
    }

    /// Waits until `condition` holds for what was recorded.
    public func wait(
        _ what: String,
        within limit: Duration = .seconds(30),
        until condition: @escaping @Sendable (Recorded) -> Bool
    ) async throws {
        let recorded = recorded
        try await waitUntil(limit, what) { recorded.withLock { condition($0) } }
    }

    /// Waits until every path in `expected` has been reported.
    public func waitForPaths(_ expected: Set<RepoPath>, within limit: Duration = .seconds(30)) async throws {
        do {
            try await waitUntil(limit, "\(expected.count) paths reported") { [self] in paths.isSuperset(of: expected) }
        } catch {
            let missing = expected.subtracting(paths)
            throw TestFailure("\(missing.count) of \(expected.count) paths never reported, e.g. \(missing.prefix(5).map(\.description))")
        }
    }

    /// Drops what was recorded so far.
    public func reset() {
        recorded.withLock { $0 = Recorded() }
    }

    /// The watcher's outcome once it stops by itself (for "root removed" tests).
    public func outcome(within limit: Duration = .seconds(30)) async throws -> Result<Void, any Error> {
        let task = task
        return try await withDeadline(limit, "watcher stopping") { await task.result }
    }

    public func stop() async {
        task.cancel()
        _ = await task.result
        pump.cancel()
        _ = await pump.value
    }
}
