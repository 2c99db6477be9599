import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncSystem
import SyncTestKit
import Testing

@testable import SyncEngine

/// A torn shutdown commit (found by running the demo under load): the final batch committed only
/// the paths whose events had been handed over, after the watcher was torn down, so a writer's
/// last write was missing from a commit that held the first half of its update.
@Suite("SyncService: the final batch holds whole writer updates", .serialized)
struct ShutdownFenceTests {
    @Test("a writer's two-file update, half of it not yet seen by the watcher at the stop, is committed whole")
    func shutdownCommitIsWhole() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.write(fixture.file("a.txt"), "a round 1\n")
        try Files.write(fixture.file("b.txt"), "b round 1\n")
        try await fixture.run(["add", "-A"])
        try await fixture.run(["commit", "-qm", "round 1"])
        let repository = try await fixture.repository()
        var settings = Settings()
        settings.quietPeriod = .milliseconds(100)
        settings.remote = "none"
        let service = try SyncService(repository: repository, settings: settings, log: .discarding)
        let running = Task { try await service.run() }
        let state = fixture.path + "/.git/syncd/state.json"
        @Sendable func phase() -> String? {
            guard let data = FileManager.default.contents(atPath: state),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { return nil }
            return object["phase"] as? String
        }
        @Sendable func pendingPaths() -> Int {
            guard let data = FileManager.default.contents(atPath: state),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { return 0 }
            return object["pending_paths"] as? Int ?? 0
        }
        try await waitUntil(.seconds(30), "syncd is idle") { phase() == "idle" }

        // A writer under the protocol: round 2 of a.txt, seen by the watcher; then the watcher
        // falls behind (held back) before round 2 of b.txt; the writer releases, syncd stops.
        let lock = try FileLock(path: Array((fixture.path + "/.git/syncd/sync.lock").utf8))
        #expect(try lock.tryLock(.shared))
        try Files.write(fixture.file("a.txt"), "a round 2\n")
        try await waitUntil(.seconds(30), "the watcher handed a.txt over") { pendingPaths() == 1 }
        await service.holdWatcher(true)
        try Files.write(fixture.file("b.txt"), "b round 2\n")
        lock.unlock()
        await service.requestStop()
        try await withDeadline(.seconds(60), "syncd stops") { try await running.value }

        #expect(try await fixture.run(["show", "HEAD:a.txt"]) == "a round 2\n")
        #expect(try await fixture.run(["show", "HEAD:b.txt"]) == "b round 2\n")
        try await fixture.fsck()
    }
}
