import Foundation
import Glibc
import SyncCore
import SyncSystem
import SyncTestKit
import Testing

/// `syncd run`, the real binary, against git that hangs or waits (issue 12): what the log, the
/// status and the exit say, and that a stop stays bounded.
@Suite("syncd run: git calls that hang or wait (the real binary)", .serialized)
struct GitCallIntegrationTests {
    /// `*.hang` files get a clean filter that writes its pid to .git/filter.pid, then sleeps ten
    /// minutes in that same process (committed .gitattributes).
    static func hangingFilter(_ fixture: GitFixture) async throws {
        _ = try await fixture.git.run(["config", "filter.hang.clean", "echo $$ > .git/filter.pid; exec sleep 600"])
        try Files.write(fixture.file(".gitattributes"), "*.hang filter=hang\n")
        _ = try await fixture.run(["add", ".gitattributes"])
        _ = try await fixture.run(["commit", "-q", "-m", "attributes"])
    }

    @Test("a clean filter that never returns: logged and shown in status; SIGTERM ends syncd within its stop timeout, exit 1 naming what stayed uncommitted, no filter left; the next start commits it")
    func hangingCleanFilter() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try await Self.hangingFilter(fixture)
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms", "--remote", "none", "--slow-git-after", "1s", "--stop-timeout", "2s"])
        try await syncd.ready()
        try Files.write(fixture.file("stuck.hang"), "x\n")
        try Files.write(fixture.file("other.txt"), "y\n")
        try await waitUntil(.seconds(30), "state.json names the slow git call and its file; stderr: \(syncd.process.stderr.suffix(1500))") {
            (syncd.state()?["slow_git"] as? String)?.contains("update-index") == true && syncd.state()?["slow_git_path"] as? String == "stuck.hang"
        }
        let since = syncd.state()?["slow_git_since"] as? String
        #expect(since?.isEmpty == false)
        try await syncd.process.waitForStderr("git has been running for")
        let status = ProcessHarness(ProcessHarness.product("syncctl"), ["status", "-C", fixture.path])
        _ = try await status.exit(within: .seconds(30))
        #expect(status.stdout.contains("SLOW GIT") && status.stdout.contains("stuck.hang"), "syncctl status: \(status.stdout)")
        let pidFile = fixture.path + "/.git/filter.pid"
        let readPid: @Sendable () -> Int32? = { (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { Int32($0.filter(\.isNumber)) } }
        try await waitUntil(.seconds(30), "the filter wrote its pid") { readPid() != nil }
        let filter = try #require(readPid())
        #expect(try await syncd.process.terminate(within: .seconds(60)) == .exited(1))
        let stderr = syncd.process.stderr
        #expect(stderr.contains("not committed") && stderr.contains("syncd.stopTimeout"), "stderr: \(stderr.suffix(2000))")
        #expect(!ProcessTable.running(filter), "the filter (pid \(filter)) outlived syncd")
        #expect(syncd.state()?["phase"] as? String == "stopped")
        // Nothing was lost: with the filter gone, the next start commits both files.
        _ = try await fixture.run(["config", "--unset", "filter.hang.clean"])
        let restarted = SyncdHarness(fixture, ["--quiet-period", "100ms", "--remote", "none"])
        try await restarted.ready()
        try await restarted.settled()
        let tree = try await fixture.headTree()
        #expect(tree[Array("stuck.hang".utf8)] != nil && tree[Array("other.txt".utf8)] != nil)
        #expect(try await restarted.stop() == .exited(0))
    }

    @Test("a second SIGTERM during the final commit: exit 1 with one line naming what stayed uncommitted and that the next start commits it; no 'batch failed' or fence message")
    func secondSignalCancelsTheFinalCommit() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        // The clean filter keeps the final batch in flight until the second signal.
        try await Self.hangingFilter(fixture)
        // No batch before the stop: the files are committed by the final batch.
        let syncd = SyncdHarness(
            fixture, ["--quiet-period", "1h", "--max-latency", "2h", "--remote", "none", "--stop-timeout", "2m"])
        try await syncd.ready()
        try Files.write(fixture.file("stuck.hang"), "x\n")
        try Files.write(fixture.file("other.txt"), "y\n")
        try await waitUntil(.seconds(30), "2 paths pending; state: \(String(describing: syncd.state()))") {
            syncd.state()?["pending_paths"] as? Int == 2
        }
        syncd.process.signal(SIGTERM)
        try await syncd.process.waitForStderr("stopping: committing 2 pending path(s) first")
        let pidFile = fixture.path + "/.git/filter.pid"
        try await waitUntil(.seconds(30), "the final batch reached the filter") { FileManager.default.fileExists(atPath: pidFile) }
        syncd.process.signal(SIGTERM)
        #expect(try await syncd.process.exit(within: .seconds(30)) == .exited(1))
        let stderr = syncd.process.stderr
        let said = stderr.split(separator: "\n").filter { $0.contains("not committed") }
        #expect(said.count == 1, "stderr: \(stderr.suffix(2000))")
        #expect(said.first?.contains("2 path(s) (other.txt, stuck.hang)") == true, "stderr: \(stderr.suffix(2000))")
        #expect(said.first?.contains("second stop signal") == true && said.first?.contains("committed at the next start") == true)
        for misleading in ["did not pass a fence", "exit code 143", "batch 1 failed", "batch failed"] {
            #expect(!stderr.contains(misleading), "\(misleading) in stderr: \(stderr.suffix(2000))")
        }
        // Nothing was lost: the next start commits both files.
        _ = try await fixture.run(["config", "--unset", "filter.hang.clean"])
        let restarted = SyncdHarness(fixture, ["--quiet-period", "100ms", "--remote", "none"])
        try await restarted.ready()
        try await restarted.settled()
        let tree = try await fixture.headTree()
        #expect(tree[Array("stuck.hang".utf8)] != nil && tree[Array("other.txt".utf8)] != nil)
        #expect(try await restarted.stop() == .exited(0))
    }

    @Test("a full scan waiting behind a held index.lock counts what waits: pending is not 0")
    func pendingCountedWhileDeferred() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        for name in ["one", "two", "three"] { try Files.write(fixture.file(name), "written while syncd was down\n") }
        let lock = fixture.path + "/.git/index.lock"
        let holder = ProcessHarness("/bin/sh", ["-c", "exec 3>>\"$0\"; echo held; exec tail -f /dev/null", lock])
        try await holder.waitForLine("lock held") { $0 == "held" }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms", "--remote", "none"])
        try await syncd.process.waitForStderr("watching ")
        try await waitUntil(.seconds(30), "state.json: deferred on the lock with 3 pending; state: \(String(describing: syncd.state()))") {
            let state = syncd.state()
            return state?["reason_code"] as? String == "index-locked" && state?["pending_paths"] as? Int == 3
        }
        _ = try await holder.terminate()
        try FileManager.default.removeItem(atPath: lock)
        try await syncd.settled()
        #expect(syncd.state()?["pending_paths"] as? Int == 0)
        #expect(try await syncd.stop() == .exited(0))
    }
}
