/// When to talk to the remote: a pure state machine with injected instants, like `Batcher`.
///
/// - a fetch round at start, then at least every `syncInterval` (and at once on `syncctl sync`);
/// - a push `pushDelay` after a commit, coalesced (commits meanwhile share the push);
/// - an integration as soon as a fetch found remote commits (local, under the lock);
/// - after a failure, a backoff from 5 s doubling up to the interval (a setup problem waits the
///   whole interval: retrying sooner cannot fix a host key or a password), with jitter given by
///   the caller; while failing, commits do not schedule pushes (the backoff decides);
/// - a push rejected because the remote moved: fetch and integrate again at once; only
///   rejections with nothing new to integrate in between count towards a failure.
/// One round runs at a time; the caller says when it starts and how it ended.
public struct RemoteSchedule<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration, Instant: Sendable {
    public enum Action: Sendable, Equatable {
        /// Integrate fetched remote commits (local work, under the sync lock).
        case integrate
        /// A round that fetches first (then pushes when nothing needs integrating).
        case fetch
        /// A round that only pushes.
        case push
    }

    public var syncInterval: Duration
    public var pushDelay: Duration
    public private(set) var nextFetch: Instant?
    public private(set) var nextPush: Instant?
    public private(set) var integrationDue = false
    public private(set) var roundInFlight = false
    public private(set) var backoff: Duration = .zero
    public private(set) var failing = false
    public private(set) var rejections = 0
    public private(set) var refusals = 0

    /// Rejected pushes in a row before the remote counts as failing.
    public static var maxRejections: Int { 4 }
    /// Refused integrations (a path the remote changes keeps changing here) before giving up until later.
    public static var maxRefusals: Int { 5 }

    /// The first round is due at `now` (syncd syncs at startup).
    public init(syncInterval: Duration, pushDelay: Duration, now: Instant) {
        self.syncInterval = syncInterval
        self.pushDelay = pushDelay
        nextFetch = now
    }

    /// What to do at `now`, nil for nothing (or a round is in flight).
    public func due(at now: Instant) -> Action? {
        guard !roundInFlight else { return nil }
        if integrationDue { return .integrate }
        if let nextFetch, now >= nextFetch { return .fetch }
        if let nextPush, now >= nextPush { return .push }
        return nil
    }

    /// When `due` next says something (an integration: now).
    public func deadline(now: Instant) -> Instant? {
        guard !roundInFlight else { return nil }
        if integrationDue { return now }
        return [nextFetch, nextPush].compactMap { $0 }.min()
    }

    public mutating func roundStarted(fetch: Bool) {
        roundInFlight = true
        if fetch { nextFetch = nil }
        nextPush = nil
    }

    /// A round that could not start (no branch yet, say): try again after `delay`.
    public mutating func retryFetch(at now: Instant, after delay: Duration) {
        nextFetch = now.advanced(by: delay)
    }

    /// A local commit: push it soon, unless the remote is failing (then the backoff decides).
    public mutating func committed(at now: Instant) {
        guard !failing else { return }
        let due = now.advanced(by: pushDelay)
        nextPush = min(nextPush ?? due, due)
    }

    /// `syncctl sync`, or a rejected push: fetch now.
    public mutating func fetchNow(at now: Instant) {
        nextFetch = now
    }

    /// The fetch found remote commits. A push rejected before it was not a problem: the remote
    /// had simply moved, and integrating is progress (a busy remote is not a failing one).
    public mutating func behind() {
        roundInFlight = false
        integrationDue = true
        rejections = 0
    }

    /// The integration is done (or found nothing to do): push now.
    public mutating func integrated(at now: Instant) {
        integrationDue = false
        refusals = 0
        nextPush = now
    }

    /// The integration found a conflict: no push of the branch; the caller pushes the conflict branch.
    public mutating func conflicted() {
        integrationDue = false
        refusals = 0
    }

    /// git refused to integrate (a path it must change was written after the commit before it).
    /// True while it is worth retrying at once (after committing again); false once it is not.
    public mutating func refused() -> Bool {
        refusals += 1
        guard refusals >= Self.maxRefusals else { return true }
        integrationDue = false
        refusals = 0
        return false
    }

    /// The integration failed outright.
    public mutating func integrationFailed() {
        integrationDue = false
        refusals = 0
    }

    /// The round pushed, or found nothing to push: back to the interval.
    public mutating func succeeded(at now: Instant) {
        roundInFlight = false
        failing = false
        backoff = .zero
        rejections = 0
        if nextFetch == nil { nextFetch = now.advanced(by: syncInterval) }
    }

    /// The conflict branch was pushed (or not): look again at the interval.
    public mutating func conflictRoundEnded(at now: Instant) {
        roundInFlight = false
        if nextFetch == nil { nextFetch = now.advanced(by: syncInterval) }
    }

    /// The push was rejected (the remote moved). True when that is still normal (fetch and
    /// integrate again now); false after `maxRejections` in a row (then report a failure).
    public mutating func rejected(at now: Instant) -> Bool {
        roundInFlight = false
        rejections += 1
        guard rejections < Self.maxRejections else { return false }
        nextFetch = now
        return true
    }

    /// The round was cancelled (an emergency stop): nothing to report, fetch again when allowed.
    public mutating func cancelled(at now: Instant) {
        roundInFlight = false
        nextFetch = now
    }

    /// The remote could not be reached (`setup`: a person must fix something). Returns the wait
    /// before the next fetch, without jitter; `jitter` is added to the schedule.
    @discardableResult
    public mutating func failed(setup: Bool, at now: Instant, jitter: (Duration) -> Duration = { _ in .zero }) -> Duration {
        roundInFlight = false
        failing = true
        rejections = 0
        let ceiling = max(syncInterval, .seconds(5))
        backoff = setup ? ceiling : min(max(backoff * 2, .seconds(5)), ceiling)
        nextFetch = now.advanced(by: backoff + jitter(backoff))
        nextPush = nil
        return backoff
    }

    /// New settings (SIGHUP): a shorter interval takes effect now, not after the old one.
    public mutating func reload(syncInterval: Duration, pushDelay: Duration, at now: Instant) {
        self.syncInterval = syncInterval
        self.pushDelay = pushDelay
        guard !failing else { return }
        let due = now.advanced(by: syncInterval)
        nextFetch = min(nextFetch ?? due, due)
    }
}
