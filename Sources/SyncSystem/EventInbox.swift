import Synchronization

/// The bounded hand-off between the reader thread and the event processor.
///
/// The reader never waits on the consumer: past `capacity` queued events it stops queueing, drops
/// the rest and records that events were lost, which the processor turns into a rescan. A doorbell
/// (an `AsyncStream` that buffers at most one ring) wakes the processor; it can never grow.
public final class EventInbox: Sendable {
    public struct Batch: Sendable {
        public var events: [InotifyEvent] = []
        /// Events were dropped because the inbox was full or a record could not be decoded.
        public var lostEvents = false
        /// The reader thread stopped because reading failed; the watcher cannot go on.
        public var readerFailure: SyscallError?
        /// A periodic rescan tick is due.
        public var tick = false
        /// The highest fence the reader passed: every event the kernel had queued when that fence
        /// was asked for is in this batch or an earlier one (0: none).
        public var fence: UInt64 = 0
        public var isEmpty: Bool { events.isEmpty && !lostEvents && readerFailure == nil && !tick && fence == 0 }
    }

    private let state: Mutex<Batch>
    private let capacity: Int
    private let bell: AsyncStream<Void>.Continuation
    /// Rings once per hand-off; iterate it from exactly one task.
    public let doorbell: AsyncStream<Void>

    public init(capacity: Int) {
        self.capacity = capacity
        self.state = Mutex(Batch())
        (doorbell, bell) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Called by the reader thread after each drained read.
    public func push(_ events: inout [InotifyEvent], decodeFailed: Bool, fence: UInt64 = 0) {
        state.withLock { batch in
            batch.fence = max(batch.fence, fence)
            let room = capacity - batch.events.count
            if events.count <= room {
                batch.events.append(contentsOf: events)
            } else {
                batch.events.append(contentsOf: events.prefix(max(room, 0)))
                batch.lostEvents = true
            }
            if decodeFailed { batch.lostEvents = true }
        }
        events.removeAll(keepingCapacity: true)
        bell.yield()
    }

    public func fail(_ error: SyscallError) {
        state.withLock { $0.readerFailure = error }
        bell.yield()
    }

    public func requestTick() {
        state.withLock { $0.tick = true }
        bell.yield()
    }

    /// Takes everything queued so far.
    public func take() -> Batch {
        state.withLock { batch in
            let taken = batch
            batch = Batch()
            batch.events.reserveCapacity(min(taken.events.count, capacity))
            return taken
        }
    }

    /// Ends the doorbell stream (the processor's loop then finishes).
    public func close() {
        bell.finish()
    }
}
