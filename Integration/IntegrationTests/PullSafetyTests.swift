import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Synchronization
import Testing

/// Pulling never loses a file and never stalls commits: plain writers (no lock protocol) beside
/// integrations, a remote that hangs, many workspaces through one remote, kill -9 in each phase.
@Suite("pulling never loses a file (real remotes, plain writers)", .serialized)
struct PullSafetyTests {
    typealias Remote = RemoteSyncTests.Remote

    /// B, a plain git user, commits a change to its own file and pushes every `period` until
    /// `total` is over (rebasing when the remote moved: B has no writer of its own).
    static func pushOnce(_ b: GitFixture, _ index: Int) async throws {
        try Files.write(b.file("from-b.txt"), "b \(index)\n")
        try await b.run(["add", "from-b.txt"])
        try await b.run(["commit", "-q", "-m", "B \(index)"])
        for _ in 0..<5 {
            if try await b.git.run(["push", "-q", "origin", "main"], acceptedExitCodes: Set(0...255)).exitCode == 0 { return }
            try await b.run(["pull", "-q", "--rebase", "origin", "main"])
        }
        throw TestFailure("B could not push")
    }

    /// A flag set once, read from other tasks.
    final class Flag: Sendable {
        private let state = Mutex(false)
        var value: Bool { state.withLock { $0 } }
        func set() { state.withLock { $0 = true } }
    }

    static func integrations(_ harness: SyncdHarness) -> Int {
        harness.journal().filter { $0["event"] as? String == "integrated" }.count
    }

    @Test("a plain writer creates a new file every 20 ms for 30 s while the remote keeps moving: every file is in the tree and committed")
    func newFilesSurviveIntegration() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let b = try await remote.clone("b")
        let syncA = SyncdHarness(a, ["--quiet-period", "200ms", "--max-latency", "1s", "--sync-interval", "1s", "--breaker-max-commits", "100000"])
        try await syncA.ready()
        try Files.mkdirs(a.file("notes"))
        // 30 s, and on (at most 90 s) until A has integrated B's commits 20 times: on a loaded
        // machine a round takes longer, and the point is many integrations beside the writer.
        let done = Flag()
        let pushes = Task {
            try await Pace.every(.milliseconds(400), while: { _ in !done.value }) { index in try await Self.pushOnce(b, index) }
        }
        // The plain writer: open, write, close; it knows nothing of syncd.
        let written = try await Pace.every(.milliseconds(20), while: { elapsed in
            elapsed < .seconds(90) && (elapsed < .seconds(30) || Self.integrations(syncA) < 20)
        }) { index in
            try Files.write(a.file("notes/n-\(index).txt"), "note \(index)\n")
        }
        done.set()
        _ = try await pushes.value
        try await waitUntil(.seconds(90), interval: .milliseconds(200), "A committed everything and has B's last commit") {
            guard try await a.statusLines().isEmpty else { return false }
            let remoteHead = try await remote.remoteHead()
            return try await a.git.run(["merge-base", "--is-ancestor", GitArgument(remoteHead ?? "HEAD"), "HEAD"], acceptedExitCodes: [0, 1, 128]).exitCode == 0
        }
        let tree = try await a.headTree()
        var lost: [Int] = []
        for index in 0..<written {
            let name = "notes/n-\(index).txt"
            if tree[Array(name.utf8)] == nil || !FileManager.default.fileExists(atPath: a.file(name)) { lost.append(index) }
        }
        #expect(lost.isEmpty, "\(lost.count) of \(written) files lost: \(lost.prefix(20))")
        #expect(Self.integrations(syncA) >= 20, "only \(Self.integrations(syncA)) integrations")
        #expect(try await a.run(["stash", "list"]).isEmpty)
        try await a.fsck()
        #expect(try await syncA.stop() == .exited(0))
    }

    @Test("a plain writer modifies files the remote also modifies: its last version stays in the tree, the remote's survives in history")
    func modifiedFilesKeepBothSides() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        // Shared files of 12 lines: A's writer rewrites line 1, B line 12, so git merges them cleanly.
        @Sendable func content(first: String, last: String) -> String {
            ([first] + (2...11).map { "line \($0)" } + [last]).joined(separator: "\n") + "\n"
        }
        let seed = try await remote.clone("seeder")
        for file in 0..<4 { try Files.write(seed.file("shared-\(file).txt"), content(first: "base", last: "base")) }
        try await seed.run(["add", "-A"])
        try await seed.run(["commit", "-q", "-m", "shared files"])
        try await seed.run(["push", "-q", "origin", "main"])
        let a = try await remote.clone("a")
        let b = try await remote.clone("b")
        let syncA = SyncdHarness(a, ["--quiet-period", "200ms", "--max-latency", "1s", "--sync-interval", "1s", "--breaker-max-commits", "100000"])
        try await syncA.ready()
        let bWriter = Task {
            try await Pace.every(.milliseconds(500), for: .seconds(20)) { index in
                let file = index % 4
                // B's line 12, on top of whatever B has (A's line 1 included once pulled).
                try await b.run(["pull", "-q", "--rebase", "origin", "main"])
                let current = try String(contentsOfFile: b.file("shared-\(file).txt"), encoding: .utf8).split(separator: "\n").map(String.init)
                try Files.write(b.file("shared-\(file).txt"), content(first: current[0], last: "B \(index)"))
                try await b.run(["commit", "-q", "-am", "B \(index)"])
                _ = try await b.git.run(["push", "-q", "origin", "main"], acceptedExitCodes: Set(0...255))
            }
        }
        let count = try await Pace.every(.milliseconds(50), for: .seconds(20)) { index in
            let file = index % 4
            // A plain writer reads the file and rewrites it whole with its own line 1.
            let path = a.file("shared-\(file).txt")
            let current = (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
            let last = current.count == 12 ? current[11] : "base"
            try Files.write(path, content(first: "A \(index)", last: last))
        }
        _ = try await bWriter.value
        // B's last commits reach the remote (its pushes in the loop may have lost a race with A's).
        try await waitUntil(.seconds(30), interval: .milliseconds(200), "B's history on the remote") {
            _ = try await b.git.run(["pull", "-q", "--rebase", "origin", "main"], acceptedExitCodes: Set(0...255))
            return try await b.git.run(["push", "-q", "origin", "main"], acceptedExitCodes: Set(0...255)).exitCode == 0
        }
        let bHead = try #require(try await b.head())
        try await waitUntil(.seconds(90), interval: .milliseconds(200), "A settled with B's last commit: everything committed") {
            guard try await a.statusLines().isEmpty, syncA.state()?["phase"] as? String == "idle" else { return false }
            return try await a.git.run(["merge-base", "--is-ancestor", GitArgument(bHead), "HEAD"], acceptedExitCodes: [0, 1, 128]).exitCode == 0
        }
        // A's writer's last version of each file is in A's tree (line 1), committed.
        for file in 0..<4 {
            let lastIndex = (0..<count).last { $0 % 4 == file } ?? 0
            let text = try String(contentsOfFile: a.file("shared-\(file).txt"), encoding: .utf8)
            #expect(text.hasPrefix("A \(lastIndex)\n"), "shared-\(file).txt lost the writer's last version: \(text.prefix(20))")
        }
        // B's versions are all in A's repository: in history (merged or on origin/main) or a conflict branch.
        let bLog = try await b.run(["log", "--format=%H", "main"]).split(separator: "\n").map(String.init)
        for commit in bLog.prefix(10) {
            let known = try await a.git.run(["cat-file", "-e", GitArgument("\(commit)^{commit}")], acceptedExitCodes: [0, 1, 128]).exitCode == 0
            #expect(known, "B's commit \(commit) is not in A's repository")
        }
        try await a.fsck()
        #expect(try await syncA.stop() == .exited(0))
    }

    @Test("a remote that accepts and never answers: commits go on every maxLatency, writers never wait on the network")
    func hangingRemoteDoesNotStallCommits() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let hole = try Blackhole()
        defer { hole.close() }
        let a = try await remote.clone("a")
        try await a.run(["remote", "set-url", "origin", GitArgument("git://127.0.0.1:\(hole.port)/remote.git")])
        let syncA = SyncdHarness(a, ["--quiet-period", "1500ms", "--max-latency", "1500ms", "--network-timeout", "1h", "--sync-interval", "1s"])
        try await syncA.ready()
        let syncctl = ProcessHarness.product("syncctl")
        // One write a second for 20 s, each a new line of one file (the quiet period never
        // passes: only maxLatency commits).
        try await Pace.every(.seconds(1), for: .seconds(20)) { index in
            try Files.write(a.file("ticks.txt"), (0...index).map { "tick \($0)" }.joined(separator: "\n") + "\n")
            if index % 5 == 2 {
                // A writer through the protocol gets the lock at once: nothing holds it across the hang.
                let writer = ProcessHarness(syncctl, ["as-writer", "-C", a.path, "--wait", "10s", "--", "sh", "-c", "echo \(index) > by-writer.txt"], workingDirectory: a.path)
                #expect(try await writer.exit() == .exited(0), "as-writer: \(writer.stderr)")
            }
        }
        // The last write is committed within maxLatency and a bit.
        try await waitUntil(.seconds(3), interval: .milliseconds(50), "the last write committed within 3 s") {
            try await a.run(["show", "HEAD:ticks.txt"], accepting: [0, 128]).contains("tick 19\n")
        }
        // At least one commit every 3 s while writing: the journal's commit times.
        let commits = syncA.journal().filter { $0["event"] as? String == "commit" }.compactMap { $0["time"] as? String }
        let times = commits.compactMap(Self.seconds)
        #expect(times.count >= 7, "only \(times.count) commits in 20 s")
        let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
        #expect((gaps.max() ?? 99) <= 3.0, "longest gap between commits \(gaps.max() ?? -1) s")
        // The hung fetch does not hold the stop: the round in flight is given a short grace, then cancelled.
        #expect(try await syncA.process.terminate(within: .seconds(60)) == .exited(0))
    }

    /// Seconds since the epoch of an RFC 3339 UTC time ("2026-12-03T10:11:12.345Z").
    static func seconds(_ text: String) -> Double? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)?.timeIntervalSince1970
    }

    @Test("six workspaces through one bare remote, each writing its own files for 60 s: all converge, nothing lost, fsck clean")
    func sixWorkspacesConverge() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        var workspaces: [GitFixture] = []
        var daemons: [SyncdHarness] = []
        for index in 0..<6 {
            let workspace = try await remote.clone("w\(index)")
            workspaces.append(workspace)
            let harness = SyncdHarness(workspace, ["--quiet-period", "300ms", "--max-latency", "2s", "--sync-interval", "2s", "--breaker-max-commits", "100000"])
            daemons.append(harness)
        }
        for harness in daemons { try await harness.ready() }
        let snapshot = workspaces
        let written = try await Pace.every(.milliseconds(500), for: .seconds(60)) { tick in
            for (index, workspace) in snapshot.enumerated() {
                try Files.write(workspace.file("w\(index)-\(tick).txt"), "workspace \(index) tick \(tick)\n")
            }
        }
        try await waitUntil(.seconds(90), interval: .milliseconds(500), "all six converge to the remote's head") {
            let remoteHead = try await remote.remoteHead()
            for workspace in snapshot {
                guard try await workspace.statusLines().isEmpty, try await workspace.head() == remoteHead else { return false }
            }
            return true
        }
        let tree = try await workspaces[0].headTree()
        var lost = 0
        for index in 0..<6 {
            for tick in 0..<written where tree[Array("w\(index)-\(tick).txt".utf8)] == nil { lost += 1 }
        }
        #expect(lost == 0, "\(lost) files lost")
        for workspace in workspaces {
            try await workspace.fsck()
            #expect(try await workspace.headTree() == tree)
        }
        for harness in daemons { #expect(try await harness.stop() == .exited(0)) }
    }

    @Test("kill -9 in each phase of an integration (before the fetch, before the commit that precedes it, before the fast-forward, before the push), then a restart: nothing lost, fsck clean")
    func killDuringIntegrationPhases() async throws {
        for failpoint in ["before-fetch", "before-integration-commit", "before-merge", "before-push"] {
            let remote = try await Remote()
            defer { remote.remove() }
            let a = try await remote.clone("a")
            let doomed = SyncdHarness(a, RemoteSyncTests.slowCommits, environment: ["SYNCD_FAILPOINT": failpoint])
            try await doomed.ready()
            try await RemoteSyncTests.divergeWithWork(remote, a, readme: false)
            try await doomed.process.waitForStderr("failpoint \(failpoint) reached")
            // A plain writer's file created while syncd is stuck mid-integration.
            try Files.write(a.file("during.txt"), "written mid-integration\n")
            try await doomed.kill9()
            let restarted = SyncdHarness(a, RemoteSyncTests.fast)
            try await restarted.ready()
            try await waitUntil(.seconds(60), interval: .milliseconds(100), "\(failpoint): converged after the restart") {
                guard try await a.statusLines().isEmpty else { return false }
                let tree = try await a.headTree()
                for name in ["a.txt", "b.txt", "wip.txt", "during.txt"] where tree[Array(name.utf8)] == nil { return false }
                let remoteHead = try await remote.remoteHead()
                return try await remoteHead == a.head()
            }
            #expect(try String(contentsOfFile: a.file("wip.txt"), encoding: .utf8) == "uncommitted in a\n", "\(failpoint)")
            #expect(try String(contentsOfFile: a.file("during.txt"), encoding: .utf8) == "written mid-integration\n", "\(failpoint)")
            #expect(!FileManager.default.fileExists(atPath: a.path + "/.git/syncd/integration-in-flight.json"), "\(failpoint)")
            #expect(try await a.run(["stash", "list"]).isEmpty, "\(failpoint): a stash")
            try await a.fsck()
            #expect(try await restarted.stop() == .exited(0))
        }
    }

    @Test("with the default 5-minute interval a commit is on the remote seconds later; unpushed counted from the refs; sync waits for the push; SIGHUP reschedules")
    func pushSoonAndTruthfulCounts() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let syncA = SyncdHarness(a, ["--quiet-period", "200ms"])
        try await syncA.ready()
        // Pushed soon after the commit, not at the next 5-minute cycle.
        try Files.write(a.file("soon.txt"), "pushed soon\n")
        try await waitUntil(.seconds(15), interval: .milliseconds(100), "pushed within seconds of the commit") {
            guard try await a.headTree()[Array("soon.txt".utf8)] != nil else { return false }
            return try await remote.remoteHead() == a.head()
        }
        // `syncctl sync` returns only once the commit is on the remote.
        try Files.write(a.file("sync-now.txt"), "sync now\n")
        let sync = ProcessHarness(ProcessHarness.product("syncctl"), ["sync", "-C", a.path])
        #expect(try await sync.exit() == .exited(0), "\(sync.stderr)")
        #expect(sync.stdout.contains("on origin"))
        #expect(try await a.headTree()[Array("sync-now.txt".utf8)] != nil)
        #expect(try await remote.remoteHead() == a.head(), "syncctl sync returned before the push")

        // Offline (nothing listens on the port): commits counted exactly, from the refs.
        let closed = try Blackhole()
        let port = closed.port
        closed.close()
        try await a.run(["remote", "set-url", "origin", GitArgument("git://127.0.0.1:\(port)/remote.git")])
        for index in 0..<3 {
            try Files.write(a.file("offline-\(index).txt"), "\(index)\n")
            try await waitUntil(.seconds(30), "offline commit \(index)") { try await a.headTree()[Array("offline-\(index).txt".utf8)] != nil }
        }
        try await waitUntil(.seconds(30), "offline seen; stderr: \(syncA.process.stderr.suffix(1500))") { !((syncA.state()?["offline_since"] as? String) ?? "").isEmpty }
        let counted = try await a.run(["rev-list", "--count", "origin/main..main"]).filter { !$0.isWhitespace }
        #expect(counted == "3")
        #expect(syncA.state()?["unpushed_commits"] as? Int == 3)
        #expect(syncA.state()?["sync_problem"] as? String == "offline")
        // `syncctl sync` while offline says it only committed, and exits non-zero.
        let offlineSync = ProcessHarness(ProcessHarness.product("syncctl"), ["sync", "-C", a.path])
        #expect(try await offlineSync.exit() == .exited(1))
        #expect(offlineSync.stderr.contains("NOT pushed"), "\(offlineSync.stderr)")
        #expect(try await syncA.stop() == .exited(0))
    }

    @Test("SIGHUP with a new syncInterval takes effect at once: the remote's commit is pulled without waiting out the old interval")
    func reloadReschedules() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let syncA = SyncdHarness(a, ["--quiet-period", "200ms"])
        try await syncA.ready()
        try await waitUntil(.seconds(30), "the startup sync done") {
            syncA.journal().contains { $0["event"] as? String == "sync-done" }
        }
        let b = try await remote.clone("b")
        try Files.write(b.file("from-b.txt"), "b\n")
        try await b.run(["add", "from-b.txt"])
        try await b.run(["commit", "-q", "-m", "B"])
        try await b.run(["push", "-q", "origin", "main"])
        try await a.run(["config", "syncd.syncInterval", "2s"])
        syncA.process.signal(SIGHUP)
        try await syncA.process.waitForStderr("settings reloaded")
        try await waitUntil(.seconds(20), interval: .milliseconds(100), "B's commit pulled after the reload") {
            FileManager.default.fileExists(atPath: a.file("from-b.txt"))
        }
        #expect(try await syncA.stop() == .exited(0))
    }

    @Test("syncd.strategyOption ours with a modify/delete conflict while a plain writer appends to that file: no line is lost, no merge is left in progress")
    func strategyOptionNeverRollsBackWrites() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let seed = try await remote.clone("seeder")
        try Files.write(seed.file("lines.txt"), "l1\nl2\nl3\n")
        try await seed.run(["add", "lines.txt"])
        try await seed.run(["commit", "-q", "-m", "lines"])
        try await seed.run(["push", "-q", "origin", "main"])
        let a = try await remote.clone("a")
        let syncA = SyncdHarness(a, ["--quiet-period", "100ms", "--max-latency", "500ms", "--sync-interval", "1s", "--strategy-option", "ours",
                                     "--breaker-max-commits", "100000"])
        try await syncA.ready()
        try Files.write(a.file("lines.txt"), "l1\nl2\nl3\nlocal change\n")
        try await waitUntil(.seconds(30), "the local change committed") {
            guard try await a.statusLines().isEmpty else { return false }
            return try await a.run(["show", "HEAD:lines.txt"]).contains("local change")
        }
        let b = try await remote.clone("b")
        try await b.run(["pull", "-q", "origin", "main"])
        try await b.run(["rm", "-q", "lines.txt"])
        try await b.run(["commit", "-q", "-m", "B deletes lines.txt"])
        try await b.run(["push", "-q", "origin", "main"])
        // A plain writer appends a numbered line every 5 ms for 8 s while syncd integrates.
        let path = a.file("lines.txt")
        let appended = try await Pace.every(.milliseconds(5), for: .seconds(8)) { index in
            guard let handle = FileHandle(forWritingAtPath: path) else { throw TestFailure("lines.txt is gone at append \(index)") }
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: Data("append \(index)\n".utf8))
        }
        try await waitUntil(.seconds(60), interval: .milliseconds(200), "A settled with B's commit merged") {
            guard try await a.statusLines().isEmpty else { return false }
            return try await a.git.run(["merge-base", "--is-ancestor", "origin/main", "HEAD"], acceptedExitCodes: [0, 1]).exitCode == 0
        }
        #expect(!FileManager.default.fileExists(atPath: a.path + "/.git/MERGE_HEAD"), "a merge was left in progress")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let missing = (0..<appended).filter { !text.contains("append \($0)\n") }
        #expect(missing.isEmpty, "\(missing.count) of \(appended) appended lines lost: \(missing.prefix(10))")
        #expect(try await a.run(["show", "HEAD:lines.txt"]) == text)
        try await a.fsck()
        #expect(try await syncA.stop() == .exited(0))
    }

    @Test("the remote starts tracking a path that is ignored here (syncd.integrate rebase): the local file is never overwritten; status names a setup problem with the fix")
    func ignoredFileBlocksWithSetupProblem() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let seed = try await remote.clone("seeder")
        try Files.write(seed.file(".gitignore"), "*.log\n")
        try await seed.run(["add", ".gitignore"])
        try await seed.run(["commit", "-q", "-m", "ignore logs"])
        try await seed.run(["push", "-q", "origin", "main"])
        let a = try await remote.clone("a")
        try Files.write(a.file("app.log"), "precious local log\n")
        let syncA = SyncdHarness(a, ["--quiet-period", "100ms", "--sync-interval", "1s", "--push-delay", "1h", "--integrate", "rebase"])
        try await syncA.ready()
        // An unpushed commit of syncd's, so the rebase policy replays it.
        try Files.write(a.file("local.txt"), "local\n")
        try await waitUntil(.seconds(30), "committed") { try await a.headTree()[Array("local.txt".utf8)] != nil }
        let b = try await remote.clone("b")
        try Files.write(b.file("app.log"), "the remote's log\n")
        try await b.run(["add", "-f", "app.log"])
        try await b.run(["commit", "-q", "-m", "B tracks app.log"])
        try await b.run(["push", "-q", "origin", "main"])
        try await waitUntil(.seconds(60), "a setup problem reported; stderr: \(syncA.process.stderr.suffix(1000))") {
            syncA.state()?["sync_problem"] as? String == "setup"
        }
        let syncError = (syncA.state()?["sync_error"] as? String) ?? ""
        #expect(syncError.contains("app.log"))
        #expect(try String(contentsOfFile: a.file("app.log"), encoding: .utf8) == "precious local log\n")
        #expect(syncA.process.stderr.contains("SETUP PROBLEM"))
        // The fix the message gives works: move it aside, and syncd integrates by itself.
        try Files.move(a.file("app.log"), a.file("app.log.local"))
        try await waitUntil(.seconds(60), "integrated after the file was moved aside") {
            try await a.git.run(["merge-base", "--is-ancestor", "origin/main", "HEAD"], acceptedExitCodes: [0, 1]).exitCode == 0
        }
        #expect(try String(contentsOfFile: a.file("app.log.local"), encoding: .utf8) == "precious local log\n")
        #expect(try await syncA.stop() == .exited(0))
        try await a.fsck()
    }
}
