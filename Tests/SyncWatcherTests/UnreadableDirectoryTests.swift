import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Synchronization
import Testing

@testable import SyncWatcher

/// Directories the watcher cannot read (issue 12: "a directory that was briefly unreadable is never
/// watched again"). Tests run as root, whom a mode of 000 does not stop; the watcher's seam makes
/// `inotify_add_watch` fail with EACCES for the blocked directories instead, as the kernel does for
/// a syncd that is not root. The permission changes themselves are real (chmod, IN_ATTRIB).
@Suite("Watcher: directories it cannot read")
struct UnreadableDirectoryTests {
    /// Directories whose watch fails with EACCES while they are in the set.
    final class Blocked: Sendable {
        private let paths = Mutex<Set<RepoPath>>([])
        func block(_ path: String) { _ = paths.withLock { $0.insert(RepoPath(path)) } }
        func unblock(_ path: String) { _ = paths.withLock { $0.remove(RepoPath(path)) } }
        var fault: WatcherOptions.AddWatchFault {
            { path in self.paths.withLock { $0.contains(path) } ? Errno(EACCES) : nil }
        }
    }

    func withWatcher(
        rescanInterval: Duration,
        blocked: Blocked,
        lines: LogCollector = LogCollector(),
        setUp: (GitFixture) async throws -> Void = { _ in },
        _ body: (GitFixture, WatchHarness) async throws -> Void
    ) async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try await setUp(fixture)
        var options = WatcherOptions()
        options.degradedRescanInterval = rescanInterval
        options.addWatchFault = blocked.fault
        let harness = WatchHarness(repository: try await fixture.repository(), options: options, log: lines.logger)
        try await harness.ready()
        do {
            try await body(fixture, harness)
        } catch {
            await harness.stop()
            throw error
        }
        await harness.stop()
    }

    @Test("made readable again (chmod: IN_ATTRIB on its parent), it is watched and what it holds is reported; counted as unwatched until then")
    func readableAgainByChmod() async throws {
        let blocked = Blocked()
        let lines = LogCollector()
        // No periodic retry within the test: only the chmod can bring it back.
        try await withWatcher(rescanInterval: .seconds(3600), blocked: blocked, lines: lines) { fixture, harness in
            blocked.block("sub")
            try Files.mkdirs(fixture.file("sub"))
            try await waitUntil(.seconds(10), "sub counted as unreadable") {
                harness.watcher.statistics.unreadable == 1
            }
            let statistics = harness.watcher.statistics
            #expect(statistics.unwatched == 1)
            #expect(statistics.unreadablePaths == [RepoPath("sub")])
            #expect(lines.messages.contains { $0.contains("cannot watch sub/") && $0.contains("EACCES") }, "\(lines.messages)")
            // Written while it is not watched: no event, found when it is read again.
            try Files.write(fixture.file("sub/f.txt"), "d\n")
            blocked.unblock("sub")
            #expect(chmod(fixture.file("sub"), 0o755) == 0)
            try await harness.waitForPaths([RepoPath("sub/f.txt")], within: .seconds(10))
            #expect(harness.watcher.statistics.unwatched == 0)
            #expect(harness.watcher.statistics.unreadable == 0)
            #expect(harness.watcher.statistics.watched == 2)
            // Watched now: a later write is an event.
            try Files.write(fixture.file("sub/later.txt"))
            try await harness.waitForPaths([RepoPath("sub/later.txt")], within: .seconds(10))
            #expect(lines.messages.contains { $0.contains("sub/") && $0.contains("can be read again") }, "\(lines.messages)")
        }
    }

    @Test("without any event, the periodic retry watches it once it can be read; the warning is said once, not at every retry")
    func readableAgainByRetry() async throws {
        let blocked = Blocked()
        let lines = LogCollector()
        blocked.block("top/deep")
        try await withWatcher(rescanInterval: .seconds(1), blocked: blocked, lines: lines, setUp: { fixture in
            try Files.mkdirs(fixture.file("top/deep/er"))
            try Files.write(fixture.file("top/deep/er/old.txt"))
        }) { fixture, harness in
            // The startup crawl already counts it.
            #expect(harness.watcher.statistics.unreadable == 1)
            #expect(harness.watcher.statistics.unwatched == 1)
            try await harness.wait("the ready notice counts it as unwatched") { recorded in
                recorded.notices.contains { notice in
                    if case .ready(_, _, let unwatched) = notice { return unwatched == 1 }
                    return false
                }
            }
            // Several retries while it stays unreadable: one warning.
            try await Pace.wait(.milliseconds(3500))
            #expect(lines.messages.filter { $0.contains("cannot watch top/deep/") }.count == 1, "\(lines.messages)")
            #expect(harness.watcher.statistics.unreadable == 1)
            blocked.unblock("top/deep")
            try await harness.waitForPaths([RepoPath("top/deep/er/old.txt")], within: .seconds(10))
            try await waitUntil(.seconds(10), "no directory left unwatched") { harness.watcher.statistics.unwatched == 0 }
            try Files.write(fixture.file("top/deep/er/new.txt"))
            try await harness.waitForPaths([RepoPath("top/deep/er/new.txt")], within: .seconds(10))
        }
    }

    @Test("an unreadable directory that is deleted is no longer counted")
    func deletedWhileUnreadable() async throws {
        let blocked = Blocked()
        try await withWatcher(rescanInterval: .seconds(3600), blocked: blocked) { fixture, harness in
            blocked.block("gone")
            try Files.mkdirs(fixture.file("gone"))
            try await waitUntil(.seconds(10), "gone counted") { harness.watcher.statistics.unreadable == 1 }
            try Files.removeTree(fixture.file("gone"))
            try await waitUntil(.seconds(10), "gone forgotten") { harness.watcher.statistics.unwatched == 0 }
        }
    }
}
