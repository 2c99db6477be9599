import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Testing

/// Two workspaces syncing through a bare repository over file://, each with its own syncd.
@Suite("remote sync (real remotes)", .serialized)
struct RemoteSyncTests {
    /// A bare remote with one commit on main, and workspaces cloned from it.
    struct Remote {
        let root: TemporaryDirectory
        var url: String { root.path + "/remote.git" }

        init() async throws {
            root = try TemporaryDirectory(prefix: "syncd-remote")
            let seed = try await GitFixture(in: root.path + "/seed")
            try await seed.run(["init", "-q", "--bare", "-b", "main", GitArgument(root.path + "/remote.git")])
            try Files.write(seed.file("README"), "shared\n")
            try await seed.run(["add", "README"])
            try await seed.run(["commit", "-q", "-m", "seed"])
            try await seed.run(["push", "-q", GitArgument(url), "main"])
        }

        func clone(_ name: String) async throws -> GitFixture {
            let fixture = try await GitFixture(in: root.path + "/" + name + "-tmp")
            fixture.remove()
            let cloner = try await GitFixture(in: root.path + "/cloner")
            try await cloner.run(["clone", "-q", GitArgument(url), GitArgument(root.path + "/" + name)])
            let clone = try await GitFixture(in: root.path + "/" + name)
            try await clone.run(["config", "user.name", "syncd \(name)"])
            try await clone.run(["config", "user.email", "\(name)@syncd.invalid"])
            return clone
        }

        func remoteHead(_ branch: String = "main") async throws -> String? {
            let probe = try await GitFixture(in: root.path + "/probe")
            let result = try await probe.git.run(["ls-remote", GitArgument(url), GitArgument("refs/heads/\(branch)")], readOnly: true)
            return String(decoding: result.standardOutput, as: UTF8.self).split(separator: "\t").first.map(String.init)
        }

        func remoteBranches() async throws -> [String] {
            let probe = try await GitFixture(in: root.path + "/probe")
            let result = try await probe.git.run(["ls-remote", "--heads", GitArgument(url)], readOnly: true)
            return String(decoding: result.standardOutput, as: UTF8.self).split(separator: "\n").compactMap { $0.split(separator: "\t").last.map(String.init) }
        }

        func remove() { root.remove() }
    }

    static let fast = ["--quiet-period", "100ms", "--max-latency", "1s", "--sync-interval", "1s"]

    @Test("two workspaces editing different files concurrently converge to the same tree; nothing is lost")
    func converge() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let b = try await remote.clone("b")
        // The writers make about 4 commits a second each, above the default circuit breaker rate.
        let syncA = SyncdHarness(a, Self.fast + ["--breaker-max-commits", "100000"])
        let syncB = SyncdHarness(b, Self.fast + ["--breaker-max-commits", "100000"])
        try await syncA.ready()
        try await syncB.ready()
        // 60 s of two writers, 4 writes a second each.
        try await Pace.every(.milliseconds(250), for: .seconds(60)) { index in
            try Files.write(a.file("a-\(index % 10).txt"), "a \(index)\n")
            try Files.write(b.file("b-\(index % 10).txt"), "b \(index)\n")
        }
        try await waitUntil(.seconds(120), interval: .milliseconds(200), "both workspaces and the remote agree") {
            guard try await a.statusLines().isEmpty, try await b.statusLines().isEmpty else { return false }
            let treeA = try await a.headTree()
            let treeB = try await b.headTree()
            guard treeA == treeB else { return false }
            let remoteHead = try await remote.remoteHead()
            let headA = try await a.head()
            let headB = try await b.head()
            return remoteHead == headA && remoteHead == headB
        }
        let tree = try await a.headTree()
        for index in 0..<10 {
            #expect(tree[Array("a-\(index).txt".utf8)] != nil && tree[Array("b-\(index).txt".utf8)] != nil)
        }
        let lastA = try String(contentsOfFile: b.file("a-9.txt"), encoding: .utf8)
        #expect(lastA.hasPrefix("a "))
        try await a.fsck()
        try await b.fsck()
        #expect(try await syncA.stop() == .exited(0))
        #expect(try await syncB.stop() == .exited(0))
    }

    @Test("both editing the same line: a conflict branch holds the local side, both versions recoverable, status says so, local commits go on")
    func conflict() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let b = try await remote.clone("b")
        // B's version reaches the remote first.
        try Files.write(b.file("README"), "B's line\n")
        try await b.run(["commit", "-q", "-am", "B edits"])
        try await b.run(["push", "-q", "origin", "main"])
        let syncA = SyncdHarness(a, Self.fast)
        try Files.write(a.file("README"), "A's line\n")
        try await syncA.ready()
        try await waitUntil(.seconds(60), "conflict in state.json") {
            !((syncA.state()?["conflict_branch"] as? String) ?? "").isEmpty
        }
        let state = try #require(syncA.state())
        let side = try #require(state["conflict_branch"] as? String)
        #expect(side.hasPrefix("syncd/conflict/"))
        #expect(state["conflict_files"] as? [String] == ["README"])
        #expect(syncA.process.stderr.contains("CONFLICT with origin in README"))
        // Nothing changed here: A's line is still in A's tree; the remote still has B's.
        #expect(try String(contentsOfFile: a.file("README"), encoding: .utf8) == "A's line\n")
        #expect(try await remote.remoteBranches().contains("refs/heads/\(side)"))
        let recovered = try await a.run(["show", GitArgument("origin/main:README")])
        #expect(recovered == "B's line\n")
        let local = try await a.run(["show", GitArgument("\(side):README")])
        #expect(local == "A's line\n")
        // Local commits continue.
        try Files.write(a.file("more.txt"), "after the conflict\n")
        try await waitUntil(.seconds(30), "local commit") { try await a.headTree()[Array("more.txt".utf8)] != nil }
        let status = ProcessHarness(ProcessHarness.product("syncctl"), ["status", "-C", a.path])
        #expect(try await status.exit() == .exited(1), "a conflict is degraded")
        #expect(status.stdout.contains("CONFLICT") && status.stdout.contains("README"))
        // A person resolves it the way the log says; syncing resumes by itself.
        _ = try await a.git.run(["merge", "-q", "origin/main"], acceptedExitCodes: [0, 1])
        try Files.write(a.file("README"), "A's line and B's line\n")
        try await a.run(["add", "README"])
        try await a.run(["commit", "-q", "--no-edit"])
        try await waitUntil(.seconds(60), "pushed after the resolution") { try await remote.remoteHead() == a.head() }
        try await waitUntil(.seconds(10), "conflict cleared") { (syncA.state()?["conflict_branch"] as? String) == "" }
        #expect(try await syncA.stop() == .exited(0))
        try await a.fsck()
    }

    @Test("the remote starts tracking a file that is ignored and present locally: the local file is untouched")
    func ignoredLocalFileKept() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let b = try await remote.clone("b")
        try Files.write(a.file(".git/info/exclude"), "keep.log\n")
        try Files.write(a.file("keep.log"), "LOCAL PRECIOUS\n")
        try Files.write(b.file("keep.log"), "remote content\n")
        try await b.run(["add", "keep.log"])
        try await b.run(["commit", "-q", "-m", "track keep.log"])
        try await b.run(["push", "-q", "origin", "main"])
        let syncA = SyncdHarness(a, Self.fast)
        try await syncA.ready()
        try await waitUntil(.seconds(60), "the sync refused") { !((syncA.state()?["sync_error"] as? String) ?? "").isEmpty }
        #expect(try String(contentsOfFile: a.file("keep.log"), encoding: .utf8) == "LOCAL PRECIOUS\n")
        let syncError = syncA.state()?["sync_error"] as? String ?? ""
        #expect(syncA.process.stderr.contains("keep.log") || syncError.contains("overwritten"))
        #expect(try await syncA.stop() == .exited(0))
        #expect(try String(contentsOfFile: a.file("keep.log"), encoding: .utf8) == "LOCAL PRECIOUS\n")
    }

    @Test("offline: no error storm, unpushed commits counted, pushed when the remote is back; bundles restore into a fresh repository")
    func offlineAndBackups() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let syncA = SyncdHarness(a, Self.fast)
        try await syncA.ready()
        try Files.write(a.file("first.txt"), "1\n")
        try await waitUntil(.seconds(60), "first push") { try await remote.remoteHead() == a.head() }
        try Files.move(remote.url, remote.url + ".away")
        for index in 0..<5 {
            try Files.write(a.file("offline-\(index).txt"), "\(index)\n")
            try await waitUntil(.seconds(30), "offline commit \(index)") { try await a.headTree()[Array("offline-\(index).txt".utf8)] != nil }
        }
        try await waitUntil(.seconds(30), "unpushed counted") { (syncA.state()?["unpushed_commits"] as? Int ?? 0) >= 5 }
        try await waitUntil(.seconds(30), "the failing push seen") { !((syncA.state()?["offline_since"] as? String) ?? "").isEmpty }
        try await Pace.wait(.seconds(4))
        let warnings = syncA.process.stderr.components(separatedBy: "cannot sync with").count - 1
        #expect(warnings >= 1 && warnings <= 2, "warnings while offline: \(warnings)")
        try Files.move(remote.url + ".away", remote.url)
        try await waitUntil(.seconds(60), "pushed after the remote is back") { try await remote.remoteHead() == a.head() }
        try await waitUntil(.seconds(10), "offline cleared") { (syncA.state()?["offline_since"] as? String) == "" }
        #expect(try await syncA.stop() == .exited(0))

        // The bundles, applied oldest first to an empty repository, hold everything that was pushed.
        let backups = a.path + "/.git/syncd/backups"
        let bundles = try FileManager.default.contentsOfDirectory(atPath: backups).filter { $0.hasSuffix(".bundle") }.sorted()
        #expect(bundles.count >= 2)
        let scratch = try await GitFixture(in: remote.root.path + "/scratch")
        var last = ""
        for bundle in bundles {
            let output = try await scratch.run(["bundle", "unbundle", GitArgument(backups + "/" + bundle)])
            last = output.split(separator: " ").first.map(String.init) ?? last
        }
        try await scratch.run(["update-ref", "refs/heads/restored", GitArgument(last)])
        let restored = try await scratch.run(["rev-parse", "restored"]).filter { !$0.isWhitespace }
        #expect(restored == (try await a.head()))
        try await scratch.fsck()

        // The same with syncctl: list, restore into a new directory, restore as a new branch.
        let syncctl = ProcessHarness.product("syncctl")
        let list = ProcessHarness(syncctl, ["backups", "-C", a.path])
        #expect(try await list.exit() == .exited(0))
        #expect(list.stdout.contains("full") && list.stdout.contains("incremental"))
        let newest = try #require(bundles.last)
        let into = remote.root.path + "/restored-copy"
        let restoreCopy = ProcessHarness(syncctl, ["restore", "-C", a.path, newest, "--into", into])
        #expect(try await restoreCopy.exit() == .exited(0), "\(restoreCopy.stderr)")
        #expect(FileManager.default.fileExists(atPath: into + "/offline-4.txt"))
        let copy = try await GitFixture(in: into)
        #expect(try await copy.head() == (try await a.head()))
        let statusBefore = try await a.statusLines()
        let restoreBranch = ProcessHarness(syncctl, ["restore", "-C", a.path, newest, "--branch", "rollback"])
        #expect(try await restoreBranch.exit() == .exited(0), "\(restoreBranch.stderr)")
        #expect(try await a.run(["rev-parse", "rollback"]).filter { !$0.isWhitespace } == (try await a.head()))
        #expect(try await a.statusLines() == statusBefore)
        let again = ProcessHarness(syncctl, ["restore", "-C", a.path, newest, "--branch", "rollback"])
        #expect(try await again.exit() == .exited(1))
        #expect(again.stderr.contains("exists already"))
    }

    /// `git daemon` serving the remote's directory on 127.0.0.1, pushes allowed.
    static func startDaemon(root: String, port: Int) async throws -> ProcessHarness {
        // git-daemon itself (not the `git daemon` wrapper, which would survive as its parent's
        // orphan when the test kills the wrapper).
        let probe = try await GitFixture(in: root + "/daemon-probe")
        let execPath = try await probe.run(["--exec-path"]).filter { $0 != "\n" }
        let daemon = ProcessHarness(execPath + "/git-daemon", [
            "--reuseaddr", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1",
            "--port=\(port)", "--base-path=\(root)", root,
        ])
        try await waitUntil(.seconds(20), "git daemon answering on port \(port); stderr: \(daemon.stderr)") {
            let result = try await probe.git.run(["ls-remote", GitArgument("git://127.0.0.1:\(port)/remote.git")], readOnly: true, acceptedExitCodes: Set(0...255))
            if daemon.finished != nil { throw TestFailure("git daemon exited: \(daemon.stderr)") }
            return result.exitCode == 0
        }
        return daemon
    }

    @Test("the remote stopped (git daemon killed): no error storm, unpushed commits grow, the push succeeds once it is back")
    func daemonStopped() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let port = Int.random(in: 20_000..<60_000)
        var daemon = try await Self.startDaemon(root: remote.root.path, port: port)
        let a = try await remote.clone("a")
        try await a.run(["remote", "set-url", "origin", GitArgument("git://127.0.0.1:\(port)/remote.git")])
        let syncA = SyncdHarness(a, Self.fast + ["--network-timeout", "5s"])
        try await syncA.ready()
        try Files.write(a.file("online.txt"), "pushed over git://\n")
        try await waitUntil(.seconds(60), "pushed through the daemon") {
            guard try await a.headTree()[Array("online.txt".utf8)] != nil else { return false }
            let remoteHead = try await remote.remoteHead()
            return try await remoteHead == a.head()
        }
        daemon.signal(SIGKILL)
        _ = try await daemon.exit()
        for index in 0..<3 {
            try Files.write(a.file("while-down-\(index).txt"), "\(index)\n")
            try await waitUntil(.seconds(30), "committed while the remote is down") {
                try await a.headTree()[Array("while-down-\(index).txt".utf8)] != nil
            }
        }
        try await waitUntil(.seconds(30), "unpushed commits counted") { (syncA.state()?["unpushed_commits"] as? Int ?? 0) >= 3 }
        try await Pace.wait(.seconds(5))
        let warnings = syncA.process.stderr.components(separatedBy: "cannot sync with").count - 1
        #expect(warnings >= 1 && warnings <= 2, "warnings while the remote was down: \(warnings)")
        daemon = try await Self.startDaemon(root: remote.root.path, port: port)
        try await waitUntil(.seconds(90), "pushed after the daemon is back") { try await remote.remoteHead() == a.head() }
        try await waitUntil(.seconds(10), "state.json shows nothing unpushed") { syncA.state()?["unpushed_commits"] as? Int == 0 }
        #expect(try await syncA.stop() == .exited(0))
        daemon.signal(SIGTERM)
        _ = try await daemon.exit()
    }

    /// A (syncd running, quiet period of an hour so nothing commits by itself) gets a hand-made
    /// commit and an uncommitted change; then B pushes, so A's next cycle must integrate.
    static func divergeWithWork(_ remote: Remote, _ a: GitFixture, readme: Bool) async throws {
        // An emergency stop holds A's syncd still while both sides move, so its next cycle
        // surely finds them diverged with uncommitted work (no race with its 1 s interval).
        let syncctl = ProcessHarness.product("syncctl")
        let stop = ProcessHarness(syncctl, ["emergency-stop", "-C", a.path])
        guard try await stop.exit() == .exited(0) else { throw TestFailure("emergency-stop: \(stop.stderr)") }
        let b = try await remote.clone("b")
        try Files.write(b.file("b.txt"), "from b\n")
        if readme { try Files.write(b.file("README"), "remote version\n") }
        try await b.run(["add", "-A"])
        try await b.run(["commit", "-q", "-m", "B"])
        try await b.run(["push", "-q", "origin", "main"])
        try Files.write(a.file("a.txt"), "committed in a\n")
        try await a.run(["add", "a.txt"])
        try await a.run(["commit", "-q", "-m", "A"])
        try Files.write(a.file("wip.txt"), "uncommitted in a\n")
        if readme { try Files.write(a.file("README"), "local edit, not committed\n") }
        let resume = ProcessHarness(syncctl, ["resume", "--clear-emergency", "-C", a.path])
        guard try await resume.exit() == .exited(0) else { throw TestFailure("resume: \(resume.stderr)") }
    }

    static let slowCommits = ["--quiet-period", "1h", "--max-latency", "2h", "--sync-interval", "1s"]

    @Test("uncommitted changes are never stashed: they are committed before the integration; a file both sides changed goes to a conflict branch, both versions kept")
    func noStashAroundIntegration() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let syncA = SyncdHarness(a, Self.slowCommits)
        try await syncA.ready()
        try await Self.divergeWithWork(remote, a, readme: true)
        try await waitUntil(.seconds(60), "conflict reported") { !((syncA.state()?["conflict_branch"] as? String) ?? "").isEmpty }
        // What was pending was committed first (wip.txt and the local README), nothing stashed,
        // nothing in the tree changed; the local side is on the conflict branch, the remote's
        // README on origin/main.
        #expect(try await a.run(["stash", "list"]).isEmpty)
        #expect(try String(contentsOfFile: a.file("wip.txt"), encoding: .utf8) == "uncommitted in a\n")
        #expect(try String(contentsOfFile: a.file("README"), encoding: .utf8) == "local edit, not committed\n")
        #expect(try await a.headTree()[Array("wip.txt".utf8)] != nil)
        let side = try #require(syncA.state()?["conflict_branch"] as? String)
        #expect(try await a.run(["show", GitArgument("\(side):README")]) == "local edit, not committed\n")
        #expect(try await a.run(["show", "origin/main:README"]) == "remote version\n")
        #expect(try await remote.remoteBranches().contains("refs/heads/\(side)"))
        #expect(!syncA.process.stderr.contains("stash"))
        #expect(try await syncA.stop() == .exited(0))
        try await a.fsck()
    }

    @Test("a stash record left by an older syncd that crashed mid-integration is still restored at startup")
    func oldStashRecordRestored() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        try Files.write(a.file("set-aside.txt"), "set aside by an older syncd\n")
        try await a.run(["stash", "push", "--include-untracked", "-q", "-m", "syncd: set aside"])
        #expect(!FileManager.default.fileExists(atPath: a.file("set-aside.txt")))
        let hash = try await a.run(["rev-parse", "refs/stash"]).filter { !$0.isWhitespace }
        try Files.mkdirs(a.path + "/.git/syncd")
        try Files.write(a.path + "/.git/syncd/stash-in-flight.json", "{\"hash\":\"\(hash)\",\"message\":\"syncd: set aside\"}\n")
        let syncA = SyncdHarness(a, Self.fast)
        try await syncA.ready()
        try await waitUntil(.seconds(30), "restored and committed") { try await a.headTree()[Array("set-aside.txt".utf8)] != nil }
        #expect(try await a.run(["stash", "list"]).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: a.path + "/.git/syncd/stash-in-flight.json"))
        #expect(try await syncA.stop() == .exited(0))
    }

    /// A's syncd (syncing only at start and on `syncctl sync`) commits a change after B pushed one.
    static func divergedBySyncd(_ remote: Remote, policy: [String], local: (String, String), remoteSide: (String, String)) async throws -> (GitFixture, SyncdHarness) {
        let a = try await remote.clone("a")
        let syncA = SyncdHarness(a, ["--quiet-period", "100ms", "--sync-interval", "1h", "--push-delay", "1h"] + policy)
        try await syncA.ready()
        let b = try await remote.clone("b")
        try Files.write(b.file(remoteSide.0), remoteSide.1)
        try await b.run(["add", "-A"])
        try await b.run(["commit", "-q", "-m", "B"])
        try await b.run(["push", "-q", "origin", "main"])
        try Files.write(a.file(local.0), local.1)
        try await waitUntil(.seconds(30), "A's syncd committed") {
            guard try await a.statusLines().isEmpty else { return false }
            return try await a.run(["log", "-1", "--format=%s"]).hasPrefix("syncd:")
        }
        let sync = ProcessHarness(ProcessHarness.product("syncctl"), ["sync", "-C", a.path])
        #expect(try await sync.exit() == .exited(0), "\(sync.stderr)")
        try await waitUntil(.seconds(60), "A synced") { try await remote.remoteHead() == a.head() }
        return (a, syncA)
    }

    @Test("syncd.integrate rebase: syncd's own unpushed commits are replayed on top of the remote, no merge commit")
    func rebasePolicy() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let (a, syncA) = try await Self.divergedBySyncd(
            remote, policy: ["--integrate", "rebase"], local: ("a.txt", "from a\n"), remoteSide: ("b.txt", "from b\n"))
        #expect(try await a.run(["rev-list", "--merges", "HEAD"]).isEmpty)
        let tree = try await a.headTree()
        #expect(tree[Array("a.txt".utf8)] != nil && tree[Array("b.txt".utf8)] != nil)
        #expect(try await a.run(["log", "-1", "--format=%B"]).contains("Syncd-Batch:"))
        #expect(syncA.process.stderr.contains("replayed syncd's 1 unpushed commit(s)"))
        #expect(try await syncA.stop() == .exited(0))
        try await a.fsck()
    }

    @Test("syncd.strategyOption ours: a conflicting merge keeps the local side, the remote version stays in history")
    func oursStrategy() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let (a, syncA) = try await Self.divergedBySyncd(
            remote, policy: ["--strategy-option", "ours"], local: ("README", "A's line\n"), remoteSide: ("README", "B's line\n"))
        #expect(try String(contentsOfFile: a.file("README"), encoding: .utf8) == "A's line\n")
        #expect(try await a.run(["rev-list", "--merges", "HEAD"]).split(separator: "\n").count == 1)
        #expect(try await a.run(["show", "HEAD^2:README"]) == "B's line\n")
        #expect(syncA.state()?["conflict_branch"] as? String == "")
        #expect(try await syncA.stop() == .exited(0))
        try await a.fsck()
    }

    @Test("syncd.integrate rebase with a conflicting path: no rebase runs in the working tree; the conflict branch keeps the local side")
    func rebaseConflictTouchesNothing() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let syncA = SyncdHarness(a, ["--quiet-period", "100ms", "--sync-interval", "1h", "--push-delay", "1h", "--integrate", "rebase"])
        try await syncA.ready()
        let b = try await remote.clone("b")
        try Files.write(b.file("README"), "B's line\n")
        try await b.run(["commit", "-q", "-am", "B"])
        try await b.run(["push", "-q", "origin", "main"])
        try Files.write(a.file("README"), "A's line\n")
        try await waitUntil(.seconds(30), "A's syncd committed") {
            guard try await a.statusLines().isEmpty else { return false }
            return try await a.run(["log", "-1", "--format=%s"]).hasPrefix("syncd:")
        }
        let localCommit = try #require(try await a.head())
        let sync = ProcessHarness(ProcessHarness.product("syncctl"), ["sync", "-C", a.path, "--timeout", "30s"])
        #expect(try await sync.exit() == .exited(1))
        #expect(sync.stderr.contains("conflict"), "\(sync.stderr)")
        #expect(!FileManager.default.fileExists(atPath: a.path + "/.git/rebase-merge"))
        let side = (syncA.state()?["conflict_branch"] as? String) ?? ""
        #expect(!side.isEmpty)
        #expect(try await a.head() == localCommit)
        #expect(try String(contentsOfFile: a.file("README"), encoding: .utf8) == "A's line\n")
        try await a.fsck()
        #expect(try await syncA.stop() == .exited(0))
    }

    @Test("while syncd changes the working tree (lease and exclusive lock held), writers wait; a dead syncd releases them")
    func writersWaitDuringIntegration() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let doomed = SyncdHarness(a, Self.slowCommits, environment: ["SYNCD_FAILPOINT": "before-merge"])
        try await doomed.ready()
        try await Self.divergeWithWork(remote, a, readme: false)
        try await doomed.process.waitForStderr("failpoint before-merge reached")
        let syncctl = ProcessHarness.product("syncctl")
        let blocked = ProcessHarness(syncctl, ["as-writer", "-C", a.path, "--wait", "1s", "--", "sh", "-c", "echo written > writer.txt"])
        #expect(try await blocked.exit() == .exited(75))
        #expect(blocked.stderr.contains("syncd is integrating origin"))
        #expect(!FileManager.default.fileExists(atPath: a.file("writer.txt")), "a writer wrote during the working-tree change")
        try await doomed.kill9()
        let free = ProcessHarness(syncctl, ["as-writer", "-C", a.path, "--wait", "5s", "--", "sh", "-c", "echo written > writer.txt"], workingDirectory: a.path)
        #expect(try await free.exit() == .exited(0), "\(free.stderr)")
        #expect(FileManager.default.fileExists(atPath: a.file("writer.txt")))
    }

    @Test("SIGTERM with a commit not pushed yet: syncd pushes it before it exits")
    func shutdownPushes() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let syncA = SyncdHarness(a, ["--quiet-period", "100ms", "--sync-interval", "1h", "--push-delay", "1h"])
        try await syncA.ready()
        try Files.write(a.file("late.txt"), "committed, not pushed\n")
        try await waitUntil(.seconds(30), "committed") { try await a.headTree()[Array("late.txt".utf8)] != nil }
        #expect(try await remote.remoteHead() != a.head())
        #expect(try await syncA.stop() == .exited(0))
        #expect(try await remote.remoteHead() == a.head())
    }

    @Test("restore --into rebuilds a history that mixes remote and local commits: the remote's part comes from the remote, the rest from the bundles")
    func restoreMixedHistory() async throws {
        let remote = try await Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let syncA = SyncdHarness(a, Self.fast)
        try await syncA.ready()
        let b = try await remote.clone("b")
        try Files.write(b.file("r.txt"), "remote commit\n")
        try await b.run(["add", "r.txt"])
        try await b.run(["commit", "-q", "-m", "R"])
        try await b.run(["push", "-q", "origin", "main"])
        try await waitUntil(.seconds(30), "A fast-forwarded to R") { try await a.headTree()[Array("r.txt".utf8)] != nil }
        try Files.write(a.file("l.txt"), "local commit\n")
        try await waitUntil(.seconds(30), "L pushed") {
            guard try await a.headTree()[Array("l.txt".utf8)] != nil else { return false }
            let remoteHead = try await remote.remoteHead()
            return try await remoteHead == a.head()
        }
        #expect(try await syncA.stop() == .exited(0))
        let bundles = try FileManager.default.contentsOfDirectory(atPath: a.path + "/.git/syncd/backups").filter { $0.hasSuffix(".bundle") }.sorted()
        let newest = try #require(bundles.last)
        let into = remote.root.path + "/mixed-restore"
        let restore = ProcessHarness(ProcessHarness.product("syncctl"), ["restore", "-C", a.path, newest, "--into", into])
        #expect(try await restore.exit() == .exited(0), "\(restore.stderr)")
        #expect(restore.stdout.contains("with the history of origin"))
        #expect(FileManager.default.fileExists(atPath: into + "/l.txt") && FileManager.default.fileExists(atPath: into + "/r.txt"))
        let copy = try await GitFixture(in: into)
        try await copy.fsck()
    }
}
