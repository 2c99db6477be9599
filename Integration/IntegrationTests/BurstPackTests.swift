import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncSystem
import SyncTestKit
import Testing

/// Issue 13: a burst staged through git's pack writer survives a crash in the middle of it.
@Suite("bursts through the pack writer (real processes)", .serialized)
struct BurstPackTests {
    @Test("kill -9 of syncd and its git while the pack is written: fsck accepts the repository and the restart commits everything")
    func killDuringPackWrite() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "300ms"])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        for directory in 0..<40 {
            try Files.mkdirs(fixture.file("d\(directory)"))
            for file in 0..<100 { try Files.write(fixture.file("d\(directory)/f\(file).txt"), "\(directory) \(file)\n" + String(repeating: "x", count: 4000)) }
        }
        // The pack writer at work: git update-index with bulk-checkin, run by this syncd (only
        // its children: other tests' pack writers run beside it and must not be killed).
        let pid = try #require(syncd.process.pid)
        let packWriter = ["core.bigFileThreshold=1", "update-index"]
        try await waitUntil(.seconds(120), interval: .milliseconds(5), "git update-index writing a pack") {
            !ProcessTable.children(of: pid, containing: packWriter).isEmpty
        }
        let gits = ProcessTable.children(of: pid, containing: packWriter)
        syncd.process.signal(SIGKILL)
        for pid in gits { kill(pid, SIGKILL) }
        _ = try await syncd.process.exit(within: .seconds(30))
        try await fixture.run(["fsck", "--full"])

        let restarted = SyncdHarness(fixture, ["--quiet-period", "300ms"])
        defer { restarted.process.signal(SIGKILL) }
        try await restarted.ready()
        try await restarted.settled(within: .seconds(180))
        #expect(try await fixture.headTree().count == 4000)
        try await fixture.fsck()
        #expect(try await restarted.stop() == .exited(0))
    }
}
