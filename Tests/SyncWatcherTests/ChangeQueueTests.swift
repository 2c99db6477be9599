import SyncCore
import SyncTestKit
import Synchronization
import Testing

@testable import SyncWatcher

@Suite("Change queue")
struct ChangeQueueTests {
    @Test("waitForPending suspends until the next ring, even while earlier changes are still untaken")
    func waitsForTheNextRing() async throws {
        let queue = ChangeQueue(capacity: 100)
        queue.append([Change(path: RepoPath("a"), kind: .modified)])
        #expect(await queue.waitForPending())
        // "a" is still pending (the consumer is busy committing): returning at once again would
        // spin. It must wait for something new. (Not cancelled: cancelling a wait on an
        // AsyncStream ends the stream.)
        let returned = Flag()
        let waiter = Task {
            let result = await queue.waitForPending()
            returned.set()
            return result
        }
        try await Pace.holds(for: .milliseconds(300), "waitForPending waits for a new change") { !returned.isSet }
        queue.append([Change(path: RepoPath("b"), kind: .modified)])
        #expect(await waiter.value)
        #expect(Set(queue.take().changes.map(\.path)) == [RepoPath("a"), RepoPath("b")])
    }
}

final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

@Suite("Log lines")
struct LogLineTests {
    @Test("a repeated message is written once per minute, then with the count held back")
    func repeatsAreHeldBack() {
        let limiter = RepeatLimiter(window: .seconds(60))
        #expect(limiter.admit("push failed") == "push failed")
        #expect(limiter.admit("push failed") == nil)
        #expect(limiter.admit("push failed") == nil)
        #expect(limiter.admit("another failure") == "another failure")
    }

    @Test("journald priorities: error 3, warning 4, info 6, debug 7")
    func priorities() {
        #expect(StandardErrorLog.priority(.error) == 3)
        #expect(StandardErrorLog.priority(.warning) == 4)
        #expect(StandardErrorLog.priority(.info) == 6)
        #expect(StandardErrorLog.priority(.debug) == 7)
    }
}
