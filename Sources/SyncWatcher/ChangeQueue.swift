import SyncCore
import Synchronization

/// Something the watcher wants its consumer (and the person running `syncd watch`) to know.
public enum WatcherNotice: Sendable, Hashable {
    /// The initial crawl finished: events from now on are live.
    case ready(watched: Int, ignored: Int, unwatched: Int)
    /// Directories could not be watched (the watch limit); they are rescanned periodically.
    case degraded(message: String)
    /// Every directory is watched again.
    case recovered(watched: Int)
}

/// The bounded set of changes waiting for the consumer.
///
/// Changes are deduplicated. Past `capacity` distinct changes the set collapses to "rescan needed":
/// memory stays bounded and nothing is lost, because the consumer then reconciles with git.
public final class ChangeQueue: Sendable {
    public struct Taken: Sendable {
        public var changes: [Change] = []
        public var rescanReasons: Set<RescanReason> = []
        public var notices: [WatcherNotice] = []
        public var isEmpty: Bool { changes.isEmpty && rescanReasons.isEmpty && notices.isEmpty }
    }

    private struct State {
        var taken = Taken()
        var seen: Set<Change> = []
    }

    public let capacity: Int
    private let state = Mutex(State())
    private let bell: AsyncStream<Void>.Continuation
    private let doorbell: AsyncStream<Void>

    public init(capacity: Int) {
        self.capacity = capacity
        (doorbell, bell) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    func append(_ changes: [Change]) {
        guard !changes.isEmpty else { return }
        state.withLock { state in
            guard state.taken.rescanReasons.isEmpty else { return }  // a rescan will find them all
            for change in changes where state.seen.insert(change).inserted {
                state.taken.changes.append(change)
            }
            if state.taken.changes.count > capacity {
                state.taken.changes = []
                state.seen = []
                state.taken.rescanReasons.insert(.pendingSetFull)
            }
        }
        bell.yield()
    }

    func requestRescan(_ reason: RescanReason) {
        state.withLock { state in
            state.taken.changes = []
            state.seen = []
            state.taken.rescanReasons.insert(reason)
        }
        bell.yield()
    }

    func post(_ notice: WatcherNotice) {
        state.withLock { $0.taken.notices.append(notice) }
        bell.yield()
    }

    func finish() {
        bell.finish()
    }

    /// Takes what is pending now (possibly nothing).
    public func take() -> Taken {
        state.withLock { state in
            let taken = state.taken
            state.taken = Taken()
            state.seen = []
            return taken
        }
    }

    /// Waits for the next ring of the doorbell that finds something pending, without taking it.
    /// Returns false once the watcher has stopped or the calling task is cancelled.
    ///
    /// It always suspends for a ring: returning at once because something is still pending would
    /// spin while the consumer is busy (a commit in progress), burning a core and starving the
    /// cooperative pool. A consumer drains everything on each wake-up, so no change waits for a
    /// ring that never comes.
    public func waitForPending() async -> Bool {
        for await _ in doorbell where hasPending {
            return true
        }
        return false
    }

    public var hasPending: Bool { state.withLock { !$0.taken.isEmpty } }

    /// Waits until something is pending and takes it. Returns nil once the watcher has stopped
    /// and nothing is left, or when the calling task is cancelled.
    public func next() async -> Taken? {
        for await _ in doorbell {
            let taken = take()
            if !taken.isEmpty { return taken }
        }
        let rest = take()
        return rest.isEmpty ? nil : rest
    }
}
