/// The service loop's one wake-up stream (buffering one ring) and its single timer. The change
/// queue's doorbell, the signals and the end of a network round ring it; the timer rings it at
/// the earliest deadline the loop set. Nothing polls while nothing is pending.
///
/// Owned by `SyncService`; `ring` is what the service's tasks hold.
final class Wakeups {
    typealias Instant = ContinuousClock.Instant

    let stream: AsyncStream<Void>
    let ring: AsyncStream<Void>.Continuation
    private var timer: Task<Void, Never>?
    private var deadline: Instant?

    init() {
        (stream, ring) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The timer rings at `deadline`, replacing the one set before. Set in one place only (the
    /// loop's step): a second place replaced this timer once, and a batch due during a long sync
    /// cycle was never committed.
    func schedule(_ deadline: Instant) {
        if let current = self.deadline, current == deadline, timer != nil { return }
        timer?.cancel()
        self.deadline = deadline
        let ring = ring
        timer = Task {
            try? await ContinuousClock().sleep(until: deadline)
            if !Task.isCancelled { ring.yield() }
        }
    }

    /// Stopping: no more timer.
    func cancelTimer() {
        timer?.cancel()
    }
}
