/// Decides when pending changes become a batch, with two clocks:
/// - a quiet period after the last change (a burst ends, then it is committed once);
/// - a maximum latency from the first uncommitted change (a writer that never stops still gets a
///   commit at least this often: the quiet clock alone would starve it);
/// plus a size cap (a huge burst is committed in parts instead of growing without bound).
///
/// A pure state machine: it never reads a clock. The caller passes `now`, asks for `deadline`
/// and sleeps until then; tests drive it with instants they make up.
public struct Batcher<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration, Instant: Sendable {
    public enum Trigger: String, Sendable, Equatable {
        /// Nothing changed for `quietPeriod`.
        case quiet
        /// The first pending change is `maxLatency` old.
        case maxLatency = "max-latency"
        /// `maxPaths` paths are pending.
        case size
        /// Asked for explicitly (startup, `syncctl sync`, shutdown).
        case requested
    }

    public var quietPeriod: Duration
    public var maxLatency: Duration
    public var maxPaths: Int

    public private(set) var firstChange: Instant?
    public private(set) var lastChange: Instant?
    public private(set) var pendingPaths = 0
    private var requested = false
    /// While set, nothing is due before it (a deferred or failed commit waits to retry).
    public private(set) var notBefore: Instant?

    public init(quietPeriod: Duration, maxLatency: Duration, maxPaths: Int) {
        self.quietPeriod = quietPeriod
        self.maxLatency = maxLatency
        self.maxPaths = maxPaths
    }

    public var hasPending: Bool { firstChange != nil || requested }

    /// New changes arrived; `pendingPaths` is the total now pending.
    public mutating func changed(pendingPaths: Int, at now: Instant) {
        if firstChange == nil { firstChange = now }
        lastChange = now
        self.pendingPaths = pendingPaths
    }

    /// Commit at the next opportunity, quiet or not.
    public mutating func request(at now: Instant) {
        requested = true
        if firstChange == nil { firstChange = now }
    }

    /// Holds everything back until `instant` (a retry after a deferral or an error).
    public mutating func hold(until instant: Instant) {
        notBefore = instant
    }

    /// The batch was taken (committed, or found to change nothing): start over.
    public mutating func batchTaken() {
        firstChange = nil
        lastChange = nil
        pendingPaths = 0
        requested = false
        notBefore = nil
    }

    /// Why a batch is due at `now`, or nil when it is not.
    public func due(at now: Instant) -> Trigger? {
        guard let firstChange else { return nil }
        if let notBefore, now < notBefore { return nil }
        if requested { return .requested }
        if pendingPaths >= maxPaths { return .size }
        if now >= firstChange.advanced(by: maxLatency) { return .maxLatency }
        if let lastChange, now >= lastChange.advanced(by: quietPeriod) { return .quiet }
        return nil
    }

    /// When the next batch falls due if nothing else changes; nil when nothing is pending.
    public var deadline: Instant? {
        guard let firstChange else { return nil }
        var next: Instant
        if requested || pendingPaths >= maxPaths {
            next = firstChange
        } else {
            next = firstChange.advanced(by: maxLatency)
            if let lastChange { next = min(next, lastChange.advanced(by: quietPeriod)) }
        }
        if let notBefore { next = max(next, notBefore) }
        return next
    }
}

/// Stops committing, loudly, when commits come faster than `maxCommits` per `window`: the sign of
/// a loop (something rewriting files because syncd committed them). It stays open for `window`,
/// then closes and lets the changes collected meanwhile through as one batch.
public struct CircuitBreaker<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration, Instant: Sendable {
    public let maxCommits: Int
    public let window: Duration
    private var recent: [Instant] = []
    public private(set) var openUntil: Instant?
    /// How many times it has opened since start.
    public private(set) var trips = 0

    public init(maxCommits: Int, window: Duration) {
        self.maxCommits = maxCommits
        self.window = window
    }

    /// Records a commit; returns true when this commit opened the breaker.
    public mutating func recordCommit(at now: Instant) -> Bool {
        let window = window
        recent.removeAll { $0.advanced(by: window) <= now }
        recent.append(now)
        guard recent.count > maxCommits else { return false }
        openUntil = now.advanced(by: window)
        recent.removeAll()
        trips += 1
        return true
    }

    /// True while commits are stopped. Closes by itself once `openUntil` has passed.
    public mutating func isOpen(at now: Instant) -> Bool {
        guard let openUntil else { return false }
        if now >= openUntil {
            self.openUntil = nil
            return false
        }
        return true
    }
}
