import Foundation
import SyncCore
import SyncGit
import SyncTestKit
import Testing

@testable import SyncWatcher

/// The watcher against the real kernel, in temporary repositories. Each test waits for what it
/// expects with a deadline and fails if the feature it covers is removed.
@Suite("Watcher on the real kernel")
struct WatcherKernelTests {
    /// Starts a watcher on a fresh repository prepared by `setUp`, runs `body`, cleans up.
    func withWatcher(
        options: WatcherOptions = WatcherOptions(),
        setUp: (GitFixture) async throws -> Void = { _ in },
        _ body: (GitFixture, WatchHarness) async throws -> Void
    ) async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try await setUp(fixture)
        let harness = WatchHarness(repository: try await fixture.repository(), options: options)
        try await harness.ready()
        do {
            try await body(fixture, harness)
        } catch {
            await harness.stop()
            throw error
        }
        await harness.stop()
    }

    /// Writes a sentinel file and waits for it: every event queued before it has then been processed
    /// (inotify keeps order within one instance), so a test can assert on what did *not* happen.
    func barrier(_ fixture: GitFixture, _ harness: WatchHarness, _ name: String = "sentinel") async throws {
        let unique = "\(name)-\(UUID().uuidString)"
        try Files.write(fixture.file(unique))
        try await harness.waitForPaths([RepoPath(unique)])
    }

    @Test("mkdir -p followed at once by writes: nothing inside the new directories is lost")
    func newDirectoryRace() async throws {
        try await withWatcher { fixture, harness in
            var expected: Set<RepoPath> = []
            for tree in 0..<40 {
                let relative = "t\(tree)/a/b/c/d/e"
                try Files.mkdirs(fixture.file(relative))
                for index in 0..<5 {
                    try Files.write(fixture.file("\(relative)/f\(index)"))
                    expected.insert(RepoPath("\(relative)/f\(index)"))
                }
                try Files.write(fixture.file("t\(tree)/a/top"))
                expected.insert(RepoPath("t\(tree)/a/top"))
            }
            try await harness.waitForPaths(expected)
            // Every new directory got a watch: later writes deep inside are seen as events.
            try Files.write(fixture.file("t7/a/b/c/d/e/later"))
            try await harness.waitForPaths([RepoPath("t7/a/b/c/d/e/later")])
            #expect(harness.watcher.statistics.watched == 1 + 40 * 6)
        }
    }

    @Test("a directory of 1,000 files renamed, moved out of the tree, then moved back in")
    func renameMoveOutMoveIn() async throws {
        let names = (0..<1000).map { "f\($0)" }
        try await withWatcher(setUp: { fixture in
            try Files.mkdirs(fixture.file("box/inner"))
            for name in names { try Files.write(fixture.file("box/\(name)")) }
        }) { fixture, harness in
            let outside = try TemporaryDirectory(prefix: "syncd-outside")
            defer { outside.remove() }

            try Files.move(fixture.file("box"), fixture.file("renamed"))
            var expected = Set(names.map { RepoPath("renamed/\($0)") })
            expected.insert(RepoPath("box"))
            try await harness.waitForPaths(expected)
            let renamed = harness.snapshot.changes.filter { $0.path.isWithin(RepoPath("renamed")) }
            #expect(renamed.contains { $0.path == RepoPath("renamed/inner") && $0.isDirectory })
            // The renamed tree is watched under its new name only.
            try Files.write(fixture.file("renamed/inner/new"))
            try await harness.waitForPaths([RepoPath("renamed/inner/new")])
            #expect(harness.watcher.statistics.watched == 3)

            // Out of the tree: its watches are dropped, writes there are not the workspace's.
            harness.reset()
            try Files.move(fixture.file("renamed"), outside.sub("away"))
            try await harness.waitForPaths([RepoPath("renamed")])
            try Files.write(outside.sub("away/inner/ghost"))
            try Files.write(outside.sub("away/f1"), "changed outside\n")
            try await barrier(fixture, harness)
            #expect(!harness.paths.contains { $0.lastComponent == Array("ghost".utf8) || $0.description.hasPrefix("inner") })
            #expect(harness.snapshot.rescans.isEmpty)
            #expect(harness.watcher.statistics.watched == 1)

            // Back in under a new name: watched and reported whole.
            harness.reset()
            try Files.move(outside.sub("away"), fixture.file("back"))
            var back = Set(names.map { RepoPath("back/\($0)") })
            back.insert(RepoPath("back/inner/ghost"))
            try await harness.waitForPaths(back)
            try Files.write(fixture.file("back/inner/again"))
            try await harness.waitForPaths([RepoPath("back/inner/again")])
        }
    }

    @Test("non-UTF-8 names and names with a newline, a leading dash and glob characters survive byte for byte")
    func oddNames() async throws {
        try await withWatcher { fixture, harness in
            let names: [[UInt8]] = [
                [0x62, 0x61, 0x64, 0xFF, 0xFE],  // "bad" + invalid UTF-8
                Array("line\nbreak".utf8),
                Array("-leading-dash".utf8),
                Array("glob*?[:]".utf8),
                Array("späce é".utf8),
            ]
            for name in names { try Files.write(in: fixture.path, name: name) }
            try Files.mkdirs(fixture.file("sub"))
            try Files.write(in: fixture.file("sub"), name: [0xC3, 0x28])
            var expected = Set(names.map(RepoPath.init(bytes:)))
            expected.insert(RepoPath(bytes: Array("sub/".utf8) + [0xC3, 0x28]))
            try await harness.waitForPaths(expected)
            let line = Change(path: RepoPath(bytes: names[0]), kind: .created).jsonLine
            #expect(line.contains("\"path_base64\":\"YmFk//4=\""))
            #expect(Change(path: RepoPath(bytes: names[1]), kind: .created).jsonLine.contains("line\\nbreak"))
        }
    }

    @Test("symlinks are never followed: loops, links to the parent and links out of the tree")
    func symlinksNotFollowed() async throws {
        let outside = try TemporaryDirectory(prefix: "syncd-link-target")
        defer { outside.remove() }
        try Files.mkdirs(outside.sub("deep/er"))
        try await withWatcher(setUp: { fixture in
            try Files.mkdirs(fixture.file("d"))
            try Files.symlink(".", at: fixture.file("d/self"))
            try Files.symlink("..", at: fixture.file("d/up"))
            try Files.symlink(fixture.path, at: fixture.file("root-link"))
            try Files.symlink(outside.path, at: fixture.file("out"))
        }) { fixture, harness in
            #expect(harness.watcher.statistics.watched == 2)  // the root and d, nothing through a link
            try Files.symlink("loop-b", at: fixture.file("loop-a"))
            try Files.symlink("loop-a", at: fixture.file("loop-b"))
            try Files.symlink(outside.path, at: fixture.file("d/out2"))
            try await harness.waitForPaths([RepoPath("loop-a"), RepoPath("loop-b"), RepoPath("d/out2")])
            // The link is reported as what it is, and writes through it are not events of the tree.
            #expect(harness.snapshot.changes.filter { $0.path == RepoPath("d/out2") }.allSatisfy { !$0.isDirectory })
            try Files.write(outside.sub("deep/er/x"))
            try await barrier(fixture, harness)
            #expect(!harness.paths.contains { $0.description.contains("deep") })
            #expect(harness.watcher.statistics.watched == 2)
        }
    }

    @Test("an ignored tree of 5,000 directories gets no watches; ignore rules added and removed while running")
    func ignoredTrees() async throws {
        try await withWatcher(setUp: { fixture in
            try Files.write(fixture.file(".gitignore"), "build/\n")
            for top in 0..<50 {
                for sub in 0..<99 { try Files.mkdirs(fixture.file("build/d\(top)/s\(sub)")) }
            }
            try Files.mkdirs(fixture.file("logs/2026"))
            try Files.write(fixture.file("logs/2026/old.txt"))
            try Files.mkdirs(fixture.file("src"))
        }) { fixture, harness in
            // root, logs, logs/2026, src: the 5,000 ignored directories cost nothing.
            #expect(harness.watcher.statistics.watched == 4)
            #expect(harness.watcher.statistics.ignored == 1)
            try Files.write(fixture.file("build/d3/s4/out.o"))
            try await barrier(fixture, harness)
            #expect(!harness.paths.contains { $0.isWithin(RepoPath("build")) })

            // A rule added while running: logs/ loses its watches.
            try Files.write(fixture.file(".gitignore"), "build/\nlogs/\n")
            try await waitUntil(.seconds(30), "logs/ unwatched") { harness.watcher.statistics.watched == 2 }
            harness.reset()
            try Files.write(fixture.file("logs/2026/new.txt"))
            try await barrier(fixture, harness)
            #expect(!harness.paths.contains { $0.isWithin(RepoPath("logs")) })

            // The rule removed again: logs/ is watched and what it holds is reported.
            try Files.write(fixture.file(".gitignore"), "build/\n")
            try await harness.waitForPaths([RepoPath("logs/2026/new.txt"), RepoPath("logs/2026/old.txt")])
            #expect(harness.watcher.statistics.watched == 4)

            // A rule in .git/info/exclude counts too.
            try Files.write(fixture.file(".git/info/exclude"), "src/\n")
            try await waitUntil(.seconds(30), "src/ unwatched") { harness.watcher.statistics.watched == 3 }
        }
    }

    @Test("deletes, IN_IGNORED and watch descriptors of recreated directories")
    func deleteAndRecreate() async throws {
        try await withWatcher { fixture, harness in
            for round in 0..<25 {
                try Files.mkdirs(fixture.file("d/e"))
                try Files.write(fixture.file("d/e/f\(round)"))
                try await harness.waitForPaths([RepoPath("d/e/f\(round)")])
                try Files.removeTree(fixture.file("d"))
                try await harness.wait("d deleted in round \(round)") { recorded in
                    recorded.changes.contains { $0.path == RepoPath("d") && $0.kind == .deleted }
                }
                try await waitUntil(.seconds(10), "watches of d released") { harness.watcher.statistics.watched == 1 }
                harness.reset()
            }
            #expect(harness.snapshot.rescans.isEmpty)
        }
    }

    @Test("a burst that overflows the kernel queue (IN_Q_OVERFLOW): the reconciled change set holds every file")
    func kernelQueueOverflow() async throws {
        try await withWatcher(setUp: { fixture in
            for directory in 0..<20 { try Files.mkdirs(fixture.file("burst\(directory)")) }
        }) { fixture, harness in
            // Watched directories, a reader that does not read: the kernel queue (16,384 events by
            // default) overflows for real.
            harness.watcher.setReaderHeldBack(true)
            var expected: Set<RepoPath> = []
            for directory in 0..<20 {
                try Files.mkdirs(fixture.file("burst\(directory)/new"))
                expected.insert(RepoPath("burst\(directory)/new/inside"))
                try Files.write(fixture.file("burst\(directory)/new/inside"))
                for index in 0..<1_050 {
                    try Files.write(fixture.file("burst\(directory)/f\(index)"))
                    expected.insert(RepoPath("burst\(directory)/f\(index)"))
                }
            }
            harness.watcher.setReaderHeldBack(false)
            try await harness.wait("IN_Q_OVERFLOW rescan", within: .seconds(60)) { recorded in
                recorded.rescans.contains { $0.contains(.kernelQueueOverflow) }
            }
            try await harness.waitForPaths(expected, within: .seconds(60))
            #expect(harness.snapshot.reconciled.isSuperset(of: expected))
            // The directories created while events were dropped are watched after the rescan.
            try Files.write(fixture.file("burst19/new/after"))
            try await harness.waitForPaths([RepoPath("burst19/new/after")])
        }
    }

    @Test("past its cap the pending change set collapses to a rescan, and nothing is lost")
    func pendingSetCap() async throws {
        var options = WatcherOptions()
        options.pendingCapacity = 100
        try await withWatcher(options: options) { fixture, harness in
            var expected: Set<RepoPath> = []
            try Files.mkdirs(fixture.file("many"))
            for index in 0..<600 {
                try Files.write(fixture.file("many/f\(index)"))
                expected.insert(RepoPath("many/f\(index)"))
            }
            try await harness.waitForPaths(expected)
            #expect(harness.snapshot.rescans.contains { $0.contains(.pendingSetFull) })
            #expect(harness.snapshot.changes.count <= 2 * options.pendingCapacity + 600)
        }
    }

    @Test("git's own work inside .git produces no change")
    func dotGitNotWatched() async throws {
        try await withWatcher(setUp: { fixture in
            try Files.write(fixture.file("tracked"))
        }) { fixture, harness in
            _ = try await fixture.git.run(["add", "-A"])
            _ = try await fixture.git.run(["commit", "-q", "-m", "one"])
            _ = try await fixture.git.run(["gc", "-q"])
            try await barrier(fixture, harness)
            #expect(!harness.paths.contains { $0.isWithin(RepoPath(".git")) })
        }
    }

    @Test("the workspace root removed while watching: a clear error, no spin")
    func rootRemoved() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let harness = WatchHarness(repository: try await fixture.repository())
        try await harness.ready()
        try Files.removeTree(fixture.path)
        let outcome = try await harness.outcome()
        guard case .failure(let error) = outcome, let syncError = error as? SyncError else {
            Issue.record("the watcher did not fail: \(outcome)")
            return
        }
        #expect(syncError.code == .rootGone || syncError.code == .syscall)
        #expect(syncError.message.contains(fixture.path))
        await harness.stop()
    }

    @Test("the workspace root moved away while watching")
    func rootMoved() async throws {
        let fixture = try await GitFixture()
        let moved = fixture.path + "-moved"
        defer {
            fixture.remove()
            try? Files.removeTree(moved)
        }
        let harness = WatchHarness(repository: try await fixture.repository())
        try await harness.ready()
        try Files.move(fixture.path, moved)
        let outcome = try await harness.outcome()
        guard case .failure(let error) = outcome, let syncError = error as? SyncError else {
            Issue.record("the watcher did not fail: \(outcome)")
            return
        }
        #expect(syncError.code == .rootGone)
        await harness.stop()
    }

    @Test("a fence: once it returns, every write made before it is in the change queue (what a commit after a writer's release relies on)")
    func fenceHoldsEveryEarlierWrite() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let watcher = Watcher(repository: try await fixture.repository())
        let running = Task { try await watcher.run() }
        defer { running.cancel() }
        try await waitUntil(.seconds(30), "watching") { watcher.statistics.ready }
        _ = watcher.changes.take()
        // A write, then at once a fence and a take, 300 times: the write must be there each time.
        var missing: [Int] = []
        for index in 0..<300 {
            try Files.write(fixture.file("f\(index)"))
            let passed = await watcher.fence(within: .seconds(30))
            #expect(passed)
            if !watcher.changes.take().changes.contains(where: { $0.path == RepoPath("f\(index)") }) { missing.append(index) }
        }
        #expect(missing.isEmpty, "\(missing.count) writes not yet in the queue after the fence")
    }
}
