import Glibc
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem
import SyncTestKit
import Synchronization
import Testing

/// syncd's git calls under hostile repository settings (issue 12): filters that fail or never
/// return, hooks, branch switches in the middle of a commit, stale index locks.
@Suite("git calls")
struct GitCallTests {
    typealias Workspace = CommitterTests.Workspace

    /// A clean filter `hang` on `*.hang` that writes its pid to `.git/filter.pid`, then sleeps for
    /// ten minutes (`exec`: the pid stays the sleeping process's).
    static func hangingFilter(_ fixture: GitFixture) async throws {
        _ = try await fixture.git.run(["config", "filter.hang.clean", "echo $$ > .git/filter.pid; exec sleep 600"])
        try Files.write(fixture.file(".gitattributes"), "*.hang filter=hang\n")
        try Files.write(fixture.file("stuck.hang"), "x\n")
    }

    static func filterPid(_ fixture: GitFixture) -> Int32? {
        (try? Syscall.readSmallFile(fixture.path + "/.git/filter.pid")).flatMap { Int32(String(decoding: $0, as: UTF8.self).trimmed) }
    }

    @Test("a git that exits before reading its input (4 MiB it never reads) is an exit code, not a crash of the caller (EPIPE after swift-subprocess's failed write)")
    func gitExitsBeforeReadingInput() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let input = [UInt8](repeating: UInt8(ascii: "x"), count: 4 * 1024 * 1024)
        for _ in 0..<5 {
            let result = try await fixture.git.run(["rev-parse", "--verify", "-q", "no-such-ref"], input: input, acceptedExitCodes: [1, 128])
            #expect(result.exitCode != 0)
        }
    }

    @Test("git children keep their freed heap (GLIBC_TUNABLES trim_threshold), so object writes do not fault zlib's memory in each time")
    func mallocTunables() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let shown = try await fixture.git.run(["-c", "alias.tunables=!printenv GLIBC_TUNABLES", "tunables"], readOnly: true)
        #expect(shown.text.contains("glibc.malloc.trim_threshold=16777216"), "\(shown.text)")
    }

    @Test("a cancelled git call takes the processes it started along: the clean filter's sleep is not orphaned")
    func cancelledCallLeavesNoOrphan() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try await Self.hangingFilter(fixture)
        let git = fixture.git
        let call = Task { try await git.run(["update-index", "--add", "--", "stuck.hang"]) }
        try await waitUntil(.seconds(30), "the filter runs") { Self.filterPid(fixture).map(ProcessTable.running) ?? false }
        let filter = try #require(Self.filterPid(fixture))
        call.cancel()
        _ = try? await call.value
        try await waitUntil(.seconds(10), "the filter (pid \(filter)) ended with its git") { !ProcessTable.running(filter) }
    }

    @Test("a git call stuck in a clean filter is reported once as slow, with the file; at a deadline it is stopped, the filter with it")
    func stuckCallReportedAndStopped() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try await Self.hangingFilter(fixture)
        let events = Mutex<[GitMonitor.Event]>([])
        let monitor = GitMonitor(slowAfter: .milliseconds(300)) { event in events.withLock { $0.append(event) } }
        var git = fixture.git
        git.monitor = monitor
        let runner = git
        let call = Task { try await runner.run(["-c", "core.fsync=all", "update-index", "--add", "--", "stuck.hang"]) }
        // Slow after 300 ms; the file is named once git has it open (at once, or at the next look).
        try await waitUntil(.seconds(30), "the slow call is reported with its file") { monitor.slowCalls.first?.path == "stuck.hang" }
        let slow = try #require(monitor.slowCalls.first)
        #expect(slow.command == "git update-index --add -- stuck.hang")
        #expect(events.withLock { $0.filter { $0.logLine != nil }.count } == 1)
        try await waitUntil(.seconds(30), "the filter runs") { Self.filterPid(fixture).map(ProcessTable.running) ?? false }
        let filter = try #require(Self.filterPid(fixture))
        monitor.stopCalls(at: ContinuousClock.now, reason: "the test stops it")
        do {
            _ = try await withDeadline(.seconds(30), "the stopped call returns") { try await call.value }
            Issue.record("the stuck call succeeded")
        } catch let error as SyncError {
            #expect(error.message.contains("was stopped"))
            #expect(error.message.contains("stuck.hang"))
            #expect(error.message.contains("the test stops it"))
        }
        #expect(!ProcessTable.running(filter))
        #expect(monitor.slowCalls.isEmpty)
        let stopped = events.withLock { $0.compactMap { event -> GitMonitor.Call? in if case .stopped(let call, _, _) = event { call } else { nil } } }
        #expect(stopped.map(\.path) == ["stuck.hang"])
        // After the deadline, a new call does not even get to run.
        await #expect(throws: SyncError.self) { try await runner.run(["status", "--porcelain"], readOnly: true) }
        monitor.stopCalls(at: nil)
        _ = try await runner.run(["status", "--porcelain"], readOnly: true)
    }

    @Test("a required clean filter failing on one file: the other files are committed, the warning names the file")
    func failingRequiredFilter() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        _ = try await workspace.fixture.git.run(["config", "filter.bad.clean", "false"])
        _ = try await workspace.fixture.git.run(["config", "filter.bad.required", "true"])
        try Files.write(workspace.file(".gitattributes"), "*.bad filter=bad\n")
        try Files.write(workspace.file("broken.bad"), "x\n")
        try Files.write(workspace.file("fine.txt"), "y\n")
        let summary = try #require(CommitterTests.committed(try await workspace.commit([".gitattributes", "broken.bad", "fine.txt"])))
        #expect(Set(summary.files.map(\.path.description)) == [".gitattributes", "fine.txt"])
        #expect(workspace.logged.warnings.contains { $0.contains("broken.bad") && $0.contains("clean filter bad") })
    }

    @Test("no hook runs for syncd's git calls: a failing reference-transaction hook blocks nothing, post-index-change never runs")
    func noHooks() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        let marker = workspace.fixture.path + "/.git/hook-ran"
        for (hook, exit) in [("reference-transaction", 1), ("post-index-change", 0), ("pre-auto-gc", 1)] {
            let path = workspace.fixture.path + "/.git/hooks/" + hook
            try Files.write(path, "#!/bin/sh\necho \(hook) >> '\(marker)'\nexit \(exit)\n")
            #expect(chmod(path, 0o755) == 0)
        }
        try Files.write(workspace.file("a.txt"), "one\n")
        #expect(CommitterTests.committed(try await workspace.commit(["a.txt"])) != nil)
        try Files.write(workspace.file("a.txt"), "two\n")
        #expect(CommitterTests.committed(try await workspace.commit(["a.txt"])) != nil)
        #expect(try await workspace.fixture.statusLines().isEmpty)
        #expect(!Syscall.exists(Array(marker.utf8)), "hooks ran: \((try? String(contentsOfFile: marker, encoding: .utf8)) ?? "")")
    }

    /// A fixture with one commit on main, for branch switches.
    static func fixtureWithBase() async throws -> (GitFixture, String) {
        let fixture = try await GitFixture()
        try Files.write(fixture.file("base.txt"), "base\n")
        _ = try await fixture.git.run(["add", "base.txt"])
        _ = try await fixture.git.run(["commit", "-q", "-m", "base"])
        return (fixture, try #require(try await fixture.head()))
    }

    @Test("a person switches to a new branch while syncd commits: the batch lands on the branch checked out, not the one left")
    func branchSwitchDuringCommit() async throws {
        let (fixture, base) = try await Self.fixtureWithBase()
        let person: @Sendable (Int) async throws -> Void = { attempt in
            guard attempt == 1 else { return }
            _ = try await fixture.git.run(["switch", "-q", "-c", "b2"])
        }
        var workspace = try await Workspace(fixture: fixture, beforeSwap: person)
        defer { workspace.remove() }
        try Files.write(workspace.file("writer.txt"), "from a writer\n")
        let summary = try #require(CommitterTests.committed(try await workspace.commit(["writer.txt"])))
        #expect(summary.branch == "refs/heads/b2")
        #expect(try await fixture.run(["rev-parse", "refs/heads/main"]).trimmed == base)
        #expect(try await fixture.run(["rev-parse", "refs/heads/b2"]).trimmed == summary.commit)
        #expect(try await fixture.headTree()[Array("writer.txt".utf8)] != nil)
        #expect(try await fixture.statusLines().isEmpty)
    }

    @Test("HEAD detached while syncd commits: no commit is left on the detached HEAD; the batch waits for a branch")
    func detachDuringCommit() async throws {
        let (fixture, base) = try await Self.fixtureWithBase()
        let once = Mutex(true)
        let person: @Sendable (Int) async throws -> Void = { _ in
            guard once.withLock({ first in defer { first = false }; return first }) else { return }
            _ = try await fixture.git.run(["switch", "-q", "--detach"])
        }
        var workspace = try await Workspace(fixture: fixture, beforeSwap: person)
        defer { workspace.remove() }
        try Files.write(workspace.file("writer.txt"), "from a writer\n")
        #expect(CommitterTests.deferral(try await workspace.commit(["writer.txt"]))?.code == .detachedHead)
        #expect(try await fixture.head() == base)
        #expect(try await fixture.run(["rev-parse", "refs/heads/main"]).trimmed == base)
        _ = try await fixture.git.run(["switch", "-q", "main"])
        #expect(CommitterTests.committed(try await workspace.commit(["writer.txt"]))?.branch == "refs/heads/main")
    }

    /// An index.lock written `age` seconds ago, by no process.
    static func oldIndexLock(_ workspace: Workspace, age: Int) throws -> String {
        let lock = Syscall.display(workspace.repository.gitDir) + "/index.lock"
        try Files.write(lock, "")
        var old = [timespec(tv_sec: Glibc.time(nil) - age, tv_nsec: 0), timespec(tv_sec: Glibc.time(nil) - age, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, lock, &old, 0) == 0)
        return lock
    }

    @Test("an index.lock nobody holds, with no git process in the tree, is removed after seconds, not after staleLockAge")
    func unheldLockWithoutGit() async throws {
        var workspace = try await Workspace(staleLockAge: .seconds(600))
        defer { workspace.remove() }
        let lock = try Self.oldIndexLock(workspace, age: 30)
        try Files.write(workspace.file("a"), "x\n")
        #expect(CommitterTests.committed(try await workspace.commit(["a"])) != nil)
        #expect(!Syscall.exists(Array(lock.utf8)))
        #expect(workspace.logged.warnings.contains { $0.contains("removed a stale") })
    }

    @Test("a git process that started after the index.lock was written is not named as its holder, nor does a full scan that waits say 0 pending")
    func youngerGitIsNoHolder() async throws {
        var workspace = try await Workspace(staleLockAge: .seconds(600))
        defer { workspace.remove() }
        let lock = try Self.oldIndexLock(workspace, age: 30)
        // A git process working in the tree (a `git cat-file --batch` reading a FIFO it also
        // holds for writing: it waits forever), started now, long after the lock.
        let fifo = Syscall.display(workspace.repository.gitDir) + "/reader.fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        let reader = ProcessHarness(
            "/bin/sh", ["-c", "cd \"$0\" && git cat-file --batch <>\"$1\" & echo $!; wait", workspace.fixture.path, fifo])
        let line = try await reader.waitForLine("the reader's pid") { Int32($0) != nil }
        let gitPid = try #require(Int32(line))
        defer { kill(gitPid, SIGTERM) }
        let workTree = workspace.repository.workTree
        try await waitUntil(.seconds(10), "git runs in the tree") { ProcessTable.gitProcesses(within: workTree).contains(gitPid) }
        for name in ["a", "b", "c"] { try Files.write(workspace.file(name), "x\n") }
        let deferral = try #require(CommitterTests.deferral(try await workspace.commit([], fullScan: true)))
        #expect(deferral.code == .indexLocked)
        #expect(!deferral.message.contains("pid \(gitPid)"), "named as holder: \(deferral.message)")
        #expect(deferral.message.contains("no process holds it open"))
        #expect(deferral.pendingPaths == 3)
        #expect(Syscall.exists(Array(lock.utf8)))
        kill(gitPid, SIGTERM)
        _ = try await reader.exit(within: .seconds(10))
        try await waitUntil(.seconds(10), "no git in the tree") { ProcessTable.gitProcesses(within: workTree).isEmpty }
        #expect(CommitterTests.committed(try await workspace.commit([], fullScan: true))?.files.count == 3)
    }
}
