import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Testing

/// What a hostile trial of the service found (issue 12): syncd must never loop on its own writes,
/// never block on a file someone planted, never hide a person's files, and keep its one-instance
/// lock even when its directory is deleted. Each test fails (or hits its deadline) on the code
/// before the fix; none of them can hang.
@Suite("hostile inputs: own files, FIFOs, deleted state (real processes)", .serialized)
struct HostileInputTests {
    /// Runs syncctl and waits for it, killing it if it is still running after `limit`.
    static func syncctl(_ arguments: [String], within limit: Duration = .seconds(30)) async throws -> (exit: ProcessHarness.Exit, output: String) {
        let process = syncctlProcess(arguments)
        do {
            let exit = try await process.exit(within: limit)
            return (exit, process.stdout + process.stderr)
        } catch {
            process.signal(SIGKILL)
            throw TestFailure("syncctl \(arguments.joined(separator: " ")) did not finish within \(limit) (it blocked); output: \(process.stdout)\(process.stderr)")
        }
    }

    static func mkfifo(_ path: String) throws {
        guard Glibc.mkfifo(path, 0o644) == 0 else { throw TestFailure("mkfifo \(path): errno \(errno)") }
    }

    @Test("syncd.metricsFile inside the working tree is refused at start (exit 78, naming the key); outside it works and commits no loop")
    func metricsFileInsideTree() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let inside = SyncdHarness(fixture, ["--metrics-file", fixture.path + "/syncd.prom"])
        #expect(try await inside.process.exit(within: .seconds(30)) == .exited(78))
        #expect(inside.process.stderr.contains("syncd.metricsFile"))
        #expect(inside.process.stderr.contains("inside the working tree"))
        #expect(!FileManager.default.fileExists(atPath: fixture.path + "/syncd.prom"))

        // Through a symlinked path into the tree as well.
        let link = fixture.directory.path + "-link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: fixture.path)
        defer { try? FileManager.default.removeItem(atPath: link) }
        let viaLink = SyncdHarness(fixture, ["--metrics-file", link + "/syncd.prom"])
        #expect(try await viaLink.process.exit(within: .seconds(30)) == .exited(78))

        // In the git directory: allowed, and the commit count stays put while it is rewritten.
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms", "--metrics-file", fixture.path + "/.git/syncd.prom"])
        try await syncd.ready()
        try Files.write(fixture.file("a.txt"), "a\n")
        try await syncd.settled()
        let commits = try await fixture.commitCount()
        try await Pace.holds(for: .seconds(2), "no commit follows the metrics file's rewrite") {
            try await fixture.commitCount() == commits
        }
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("syncd.lockDir on tracked files, on a directory holding a person's files, or on the top of the tree is refused; a fresh in-tree one is excluded from git add -A")
    func lockDirectoryPlacement() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.mkdirs(fixture.file("docs"))
        try Files.write(fixture.file("docs/a.md"), "tracked\n")
        try await fixture.run(["add", "-A"])
        try await fixture.run(["commit", "-qm", "docs"])
        try Files.mkdirs(fixture.file("notes"))
        try Files.write(fixture.file("notes/untracked.md"), "a person's file\n")

        for (directory, needle) in [("docs", "holds tracked files"), (".", "top of the working tree"), ("notes", "not syncd's")] {
            let syncd = SyncdHarness(fixture, ["--lock-dir", directory])
            #expect(try await syncd.process.exit(within: .seconds(30)) == .exited(78), "lockDir \(directory)")
            #expect(syncd.process.stderr.contains("syncd.lockDir"), "\(syncd.process.stderr)")
            #expect(syncd.process.stderr.contains(needle), "\(syncd.process.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: fixture.file("docs/sync.lock")))

        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms", "--lock-dir", ".syncd-locks"])
        try await syncd.ready()
        try Files.write(fixture.file("notes/second.md"), "another\n")
        try await syncd.settled()
        #expect(try await fixture.headTree()[Array("notes/second.md".utf8)] != nil)
        #expect(try await fixture.headTree().keys.contains { $0.starts(with: Array(".syncd-locks".utf8)) } == false)
        // A person's git add -A does not pick the lock directory up either.
        let status = try await fixture.run(["status", "--porcelain", "--untracked-files=all"])
        #expect(!status.contains(".syncd-locks"), "\(status)")
        let exclude = try String(contentsOfFile: fixture.path + "/.git/info/exclude", encoding: .utf8)
        #expect(exclude.components(separatedBy: "\n").filter { $0 == "/.syncd-locks/" }.count == 1)
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("a FIFO at paused.json: syncd starts, says so, and treats it as a pause; syncctl status answers; resume removes it; SIGTERM stops syncd")
    func fifoControlFile() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.mkdirs(fixture.path + "/.git/syncd")
        try Self.mkfifo(fixture.path + "/.git/syncd/paused.json")
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.process.waitForStderr("is a FIFO", within: .seconds(30))
        try await waitUntil(.seconds(30), "state.json says paused") { syncd.state()?["paused"] as? Bool == true }
        let status = try await Self.syncctl(["status", "-C", fixture.path])
        #expect(status.output.contains("PAUSED"), "\(status.output)")

        try Files.write(fixture.file("while-fifo.txt"), "written while the FIFO sat there\n")
        let resume = try await Self.syncctl(["resume", "-C", fixture.path])
        #expect(resume.exit == .exited(0), "\(resume.output)")
        #expect(!FileManager.default.fileExists(atPath: fixture.path + "/.git/syncd/paused.json"))
        try await syncd.settled()
        #expect(try await fixture.headTree()[Array("while-fifo.txt".utf8)] != nil)
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("FIFOs at writer-pause.json, emergency-stop.json and control-request.json never block syncctl status, as-writer or pause")
    func fifoNeverBlocksSyncctl() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        let directory = fixture.path + "/.git/syncd/"
        try Self.mkfifo(directory + "writer-pause.json")
        // It answers (a blocked open would hit the deadline), and the lease it cannot read is no lease.
        let status = try await Self.syncctl(["status", "-C", fixture.path])
        #expect(!status.output.contains("writers asked to pause"), "\(status.output)")
        let writer = try await Self.syncctl(["as-writer", "-C", fixture.path, "--", "sh", "-c", "echo w > \(fixture.path)/by-writer.txt"])
        #expect(writer.exit == .exited(0), "\(writer.output)")
        try FileManager.default.removeItem(atPath: directory + "writer-pause.json")

        try Self.mkfifo(directory + "control-request.json")
        let pause = try await Self.syncctl(["pause", "-C", fixture.path, "--reason", "fifo check"])
        #expect(pause.exit == .exited(0), "\(pause.output)")
        let resume = try await Self.syncctl(["resume", "-C", fixture.path])
        #expect(resume.exit == .exited(0), "\(resume.output)")

        try Self.mkfifo(directory + "emergency-stop.json")
        kill(syncd.process.pid ?? 0, SIGUSR1)
        try await waitUntil(.seconds(30), "a FIFO emergency stop is read as an emergency stop") { syncd.state()?["emergency_stop"] as? Bool == true }
        try await syncd.process.waitForStderr("is a FIFO", within: .seconds(10))
        let clear = try await Self.syncctl(["resume", "-C", fixture.path, "--clear-emergency"])
        #expect(clear.exit == .exited(0), "\(clear.output)")
        try await syncd.settled()
        #expect(try await fixture.headTree()[Array("by-writer.txt".utf8)] != nil)
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("deleting .git/syncd while syncd runs: it is recreated with the instance lock, a second syncd is refused, commits go on")
    func deletedStateDirectory() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        try FileManager.default.removeItem(atPath: fixture.path + "/.git/syncd")
        try await syncd.process.waitForStderr("was deleted while syncd ran", within: .seconds(30))
        try await waitUntil(.seconds(30), "the instance lock is back") {
            FileManager.default.fileExists(atPath: fixture.path + "/.git/syncd/syncd.lock")
        }
        let second = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        #expect(try await second.process.exit(within: .seconds(30)) == .exited(75), "\(second.process.stderr)")
        #expect(second.process.stderr.contains("already running"))
        let status = try await Self.syncctl(["status", "-C", fixture.path])
        #expect(status.exit == .exited(0), "\(status.output)")
        let pause = try await Self.syncctl(["pause", "-C", fixture.path, "--reason", "after the deletion"])
        #expect(pause.exit == .exited(0), "\(pause.output)")
        let resume = try await Self.syncctl(["resume", "-C", fixture.path])
        #expect(resume.exit == .exited(0), "\(resume.output)")
        try Files.write(fixture.file("after-deletion.txt"), "still committed\n")
        try await syncd.settled()
        #expect(try await fixture.headTree()[Array("after-deletion.txt".utf8)] != nil)
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("before syncd ever ran: pause is recorded and as-writer runs its command (the directories are created)")
    func requestsBeforeFirstStart() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let pause = try await Self.syncctl(["pause", "-C", fixture.path, "--reason", "before the first start"])
        #expect(pause.exit == .exited(3), "\(pause.output)")
        #expect(pause.output.contains("recorded"))
        #expect(FileManager.default.fileExists(atPath: fixture.path + "/.git/syncd/paused.json"))
        let writer = try await Self.syncctl(["as-writer", "-C", fixture.path, "--", "sh", "-c", "echo w > \(fixture.path)/early.txt"])
        #expect(writer.exit == .exited(0), "\(writer.output)")
        #expect(FileManager.default.fileExists(atPath: fixture.file("early.txt")))
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        defer { syncd.process.signal(SIGKILL) }
        try await waitUntil(.seconds(30), "the recorded pause applies at start") { syncd.state()?["paused"] as? Bool == true }
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("reasons are bounded and printed as one escaped line; a directory at paused.json is cleared by resume; a directory at state.json is named")
    func reasonsAndDirectories() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let long = try await Self.syncctl(["pause", "-C", fixture.path, "--reason", String(repeating: "x", count: 70_000)])
        #expect(long.exit == .exited(64), "\(long.output.prefix(300))")
        #expect(long.output.contains("at most 1000"))
        let escape = try await Self.syncctl(["pause", "-C", fixture.path, "--reason", "two\nlines"])
        #expect(escape.exit == .exited(64))

        // A hand-written pause with an escape sequence and a newline: shown escaped, on one line.
        try Files.mkdirs(fixture.path + "/.git/syncd")
        let hostile = #"{"by":"someone","reason":"\u001b[2Jwiped\nsecond line","serial":1,"since":1}"#
        try Files.write(fixture.path + "/.git/syncd/paused.json", hostile)
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        defer { syncd.process.signal(SIGKILL) }
        try await waitUntil(.seconds(30), "paused") { syncd.state()?["paused"] as? Bool == true }
        let status = try await Self.syncctl(["status", "-C", fixture.path])
        #expect(!status.output.contains("\u{1b}"), "\(status.output)")
        #expect(status.output.contains(#"\u{1b}[2Jwiped\nsecond line"#), "\(status.output)")
        #expect(!syncd.process.stderr.contains("\u{1b}"))

        // paused.json as a directory: the log's advice (syncctl resume) works.
        try FileManager.default.removeItem(atPath: fixture.path + "/.git/syncd/paused.json")
        try Files.mkdirs(fixture.path + "/.git/syncd/paused.json")
        kill(syncd.process.pid ?? 0, SIGUSR1)
        try await syncd.process.waitForStderr("is a directory", within: .seconds(30))
        let resume = try await Self.syncctl(["resume", "-C", fixture.path])
        #expect(resume.exit == .exited(0), "\(resume.output)")
        #expect(!FileManager.default.fileExists(atPath: fixture.path + "/.git/syncd/paused.json"))

        // state.json as a directory: pause is applied but cannot be confirmed, and syncctl says why.
        // syncd rewrites state.json all the time: replace it with a directory until that sticks.
        let statePath = fixture.path + "/.git/syncd/state.json"
        try await waitUntil(.seconds(10), "state.json replaced by a directory") {
            try? FileManager.default.removeItem(atPath: statePath)
            return (try? FileManager.default.createDirectory(atPath: statePath + "/blocker", withIntermediateDirectories: true)) != nil
        }
        let pause = try await Self.syncctl(["pause", "-C", fixture.path, "--timeout", "2s"])
        #expect(pause.exit == .exited(4), "\(pause.output)")
        #expect(pause.output.contains("state.json is a directory"), "\(pause.output)")
        try FileManager.default.removeItem(atPath: fixture.path + "/.git/syncd/state.json")
        #expect(try await syncd.stop() == .exited(0))
    }
}
