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
