import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Testing

/// Issue 13: a burst staged through git's pack writer survives a crash in the middle of it.
@Suite("bursts through the pack writer (real processes)", .serialized)
struct BurstPackTests {
    /// Pids whose command line contains every one of `needles`.
    static func processes(containing needles: [String]) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let line = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return needles.allSatisfy { line.contains($0) }
        }
    }

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
        // The pack writer at work: git update-index with bulk-checkin, run by syncd.
        try await waitUntil(.seconds(120), interval: .milliseconds(5), "git update-index writing a pack") {
            !Self.processes(containing: ["core.bigFileThreshold=1", "update-index"]).isEmpty
        }
        let gits = Self.processes(containing: ["core.bigFileThreshold=1", "update-index"])
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
