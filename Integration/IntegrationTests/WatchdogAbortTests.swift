import Glibc
import SyncTestKit
import Testing

/// systemd's watchdog ends a wedged syncd with SIGABRT sent by kill(2).
@Suite("SIGABRT from another process")
struct AbortSignalTests {
    @Test("ends syncd run (after the Swift runtime's backtrace) instead of letting it go on")
    func abortEndsTheProcess() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture)
        try await syncd.ready()
        syncd.process.signal(SIGABRT)
        #expect(try await syncd.process.exit(within: .seconds(20)) == .signaled(SIGABRT), "\(syncd.process.stderr.suffix(1500))")
    }
}
