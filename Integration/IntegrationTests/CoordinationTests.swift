import Foundation
import Glibc
import SyncCore
import SyncEngine
import SyncSystem
import SyncTestKit
import Testing

/// The lockfile protocol with real processes: writers under `syncctl as-writer` and flock(1),
/// syncctl talking to a running syncd, and broken or hostile control files.
@Suite("writer coordination and syncctl (real processes)", .serialized)
struct CoordinationTests {
    let syncctl = ProcessHarness.product("syncctl")

    func ctl(_ fixture: GitFixture, _ arguments: [String]) -> ProcessHarness {
        ProcessHarness(syncctl, [arguments[0], "-C", fixture.path] + arguments.dropFirst())
    }

    func lockPath(_ fixture: GitFixture, _ name: String) -> String { fixture.path + "/.git/syncd/" + name }

    @Test("a writer rewriting two files that must agree, every 0.2 s for 30 s: every commit holds an agreeing pair; none after it stops")
    func agreeingPairs() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "30ms", "--max-latency", "150ms", "--breaker-max-commits", "100000"])
        try await syncd.ready()
        // Between the two writes the pair disagrees for 100 ms, longer than the quiet period: a
        // snapshot taken without the lock would commit it.
        let script = #"echo "$1" > a; sleep 0.1; echo "$(($1 * 2))" > b"#
        try await Pace.every(.milliseconds(200), for: .seconds(30)) { index in
            let writer = ProcessHarness(syncctl, ["as-writer", "-C", fixture.path, "--", "sh", "-c", script, "sh", "\(index + 1)"], workingDirectory: fixture.path)
            let exit = try await writer.exit()
            #expect(exit == .exited(0), "writer \(index): \(writer.stderr)")
        }
        try await syncd.settled()
        let commits = try await fixture.run(["rev-list", "HEAD"]).split(separator: "\n").map(String.init)
        #expect(commits.count >= 20, "only \(commits.count) commits")
        var query = ""
        for commit in commits { query += "\(commit):a\n\(commit):b\n" }
        let contents = try await fixture.git.run(["cat-file", "--batch"], input: Array(query.utf8), readOnly: true)
        let pairs = Self.parseBatch(String(decoding: contents.standardOutput, as: UTF8.self))
        #expect(pairs.count == commits.count * 2)
        for index in stride(from: 0, to: pairs.count - 1, by: 2) {
            guard let a = pairs[index].flatMap(Int.init), let b = pairs[index + 1].flatMap(Int.init) else {
                #expect(pairs[index] == nil && pairs[index + 1] == nil, "a commit with only one of the pair: \(String(describing: pairs[index])) \(String(describing: pairs[index + 1]))")
                continue
            }
            #expect(b == 2 * a, "commit \(commits[index / 2]) holds a=\(a) b=\(b)")
        }
        let head = try await fixture.head()
        try await Pace.holds(for: .seconds(5), "no commit once the writer stopped") { try await fixture.head() == head }
        #expect(try await syncd.stop() == .exited(0))
    }

    /// `git cat-file --batch` output: the contents of each object (trimmed), nil for "missing".
    static func parseBatch(_ output: String) -> [String?] {
        var values: [String?] = []
        var lines = output.split(separator: "\n", omittingEmptySubsequences: false)[...]
        while let header = lines.popFirst(), !header.isEmpty {
            if header.hasSuffix("missing") {
                values.append(nil)
                continue
            }
            let size = Int(header.split(separator: " ").last ?? "0") ?? 0
            var text = ""
            while text.utf8.count < size, let line = lines.popFirst() { text += line + "\n" }
            _ = lines.popFirst()  // cat-file ends each object with a newline of its own
            values.append(text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return values
    }

    @Test("a writer holding the shared lock forever: syncd waits, names it, commits nothing; kill -9 of the writer lets syncd proceed")
    func writerHoldsLockThenDies() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "50ms", "--writer-lock-timeout", "1s"])
        try await syncd.ready()
        let holder = ProcessHarness("/bin/sh", ["-c", #"exec 9>>"$0"; flock -s 9; echo held; exec tail -f /dev/null"#, lockPath(fixture, "sync.lock")])
        try await holder.waitForLine("writer holds the lock") { $0 == "held" }
        let head = try await fixture.head()
        try Files.write(fixture.file("during.txt"), "written while a writer holds the lock\n")
        try await syncd.process.waitForStderr("writers have held the sync lock")
        #expect(syncd.process.stderr.contains("pid \(holder.pid ?? -1)"))
        #expect(syncd.state()?["reason_code"] as? String == "writers-active")
        #expect(try await fixture.head() == head)
        // The lease asks new writers to pause while syncd waits.
        let waiting = ctl(fixture, ["as-writer", "--wait", "1s", "--", "true"])
        #expect(try await waiting.exit() == .exited(75))
        holder.signal(SIGKILL)
        _ = try await holder.exit()
        try await syncd.settled()
        #expect(try await fixture.headTree()[Array("during.txt".utf8)] != nil)
        #expect(!FileManager.default.fileExists(atPath: lockPath(fixture, "writer-pause.json")))
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("kill -9 of syncd while it holds the exclusive lock: the writer proceeds")
    func syncdDiesHoldingLock() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        for directory in 0..<40 {
            try Files.mkdirs(fixture.file("d\(directory)"))
            for file in 0..<100 { try Files.write(fixture.file("d\(directory)/f\(file)"), "\(directory) \(file)\n") }
        }
        // The startup batch of 4,000 files holds the exclusive lock for a while.
        let syncd = SyncdHarness(fixture)
        try await waitUntil(.seconds(60), interval: .milliseconds(5), "syncd committing under the lock") {
            syncd.state()?["phase"] as? String == "committing"
        }
        let held = try FileLock(path: Array(lockPath(fixture, "sync.lock").utf8))
        #expect(try held.tryLock(.shared) == false, "syncd should hold the sync lock while it commits")
        try await syncd.kill9()
        let writer = ctl(fixture, ["as-writer", "--wait", "5s", "--", "true"])
        #expect(try await writer.exit() == .exited(0), "\(writer.stderr)")
        #expect(try held.tryLock(.shared))
    }

    @Test("as-writer runs a command named by a path (`./regenerate.sh`, `/bin/sh`) as well as one found on PATH")
    func asWriterRunsPaths() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.write(fixture.file("regenerate.sh"), "#!/bin/sh\necho regenerated > out.txt\n")
        chmod(fixture.file("regenerate.sh"), 0o755)
        let relative = ProcessHarness(syncctl, ["as-writer", "-C", fixture.path, "--", "./regenerate.sh"], workingDirectory: fixture.path)
        #expect(try await relative.exit() == .exited(0), "\(relative.stderr)")
        #expect(try String(contentsOfFile: fixture.file("out.txt"), encoding: .utf8) == "regenerated\n")
        let absolute = ctl(fixture, ["as-writer", "--", "/bin/sh", "-c", "exit 3"])
        #expect(try await absolute.exit() == .exited(3), "\(absolute.stderr)")
        let missing = ctl(fixture, ["as-writer", "--", "./no-such-script"])
        #expect(try await missing.exit() == .exited(127))
        #expect(missing.stderr.contains("no-such-script"))
    }

    @Test("pause leases: expired, dead holder, garbage and truncated ones are ignored; a live one makes writers wait")
    func writerLeases() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.mkdirs(fixture.path + "/.git/syncd")
        let lease = Array(lockPath(fixture, "writer-pause.json").utf8)
        let now = ControlFile.now()
        let me = ProcessIdentity.current()
        let cases: [(String, String)] = [
            ("expired", try Self.json(WriterLease(holder: me, reason: "old", createdAt: now - 600, expiresAt: now - 1))),
            ("dead holder", try Self.json(WriterLease(holder: ProcessIdentity(pid: 999_999, startTime: 1, bootID: me.bootID), reason: "dead", createdAt: now, expiresAt: now + 600))),
            ("reused pid", try Self.json(WriterLease(holder: ProcessIdentity(pid: me.pid, startTime: me.startTime + 1, bootID: me.bootID), reason: "reused", createdAt: now, expiresAt: now + 600))),
            ("other boot", try Self.json(WriterLease(holder: ProcessIdentity(pid: me.pid, startTime: me.startTime, bootID: "another-boot"), reason: "reboot", createdAt: now, expiresAt: now + 600))),
            ("garbage", "\u{1}\u{2}not json at all"),
            ("truncated", String(try Self.json(WriterLease(holder: me, reason: "cut", createdAt: now, expiresAt: now + 600)).prefix(30))),
        ]
        for (name, contents) in cases {
            try AtomicFile.write(lease, Array(contents.utf8))
            let writer = ctl(fixture, ["as-writer", "--wait", "2s", "--", "true"])
            #expect(try await writer.exit() == .exited(0), "\(name) lease: \(writer.stderr)")
        }
        try AtomicFile.write(lease, Array(try Self.json(WriterLease(holder: me, reason: "syncd is pulling", createdAt: now, expiresAt: now + 600)).utf8))
        let writer = ctl(fixture, ["as-writer", "--wait", "500ms", "--", "true"])
        #expect(try await writer.exit() == .exited(75))
        #expect(writer.stderr.contains("syncd is pulling"))
        #expect(writer.stderr.contains("a pause lease is still in force"))
    }

    static func json(_ lease: WriterLease) throws -> String {
        String(decoding: try JSONEncoder().encode(lease), as: UTF8.self)
    }

    @Test("pause collects, resume commits in one batch; a pause expires; a pause survives a restart")
    func pauseAndResume() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        var syncd = SyncdHarness(fixture, ["--quiet-period", "50ms"])
        try await syncd.ready()
        let pause = ctl(fixture, ["pause", "--reason", "backup running"])
        #expect(try await pause.exit() == .exited(0), "\(pause.stderr)")
        #expect(pause.stdout.contains("until `syncctl resume`"))
        let head = try await fixture.head()
        for index in 0..<5 { try Files.write(fixture.file("p\(index)"), "\(index)\n") }
        try await Pace.holds(for: .seconds(1), "no commit while paused") { try await fixture.head() == head }
        #expect(syncd.state()?["phase"] as? String == "paused")
        let status = ctl(fixture, ["status"])
        #expect(try await status.exit() == .exited(1), "paused is degraded")
        #expect(status.stdout.contains("PAUSED by"))
        #expect(status.stdout.contains("backup running"))
        // A restart keeps the pause.
        #expect(try await syncd.stop() == .exited(0))
        #expect(try await fixture.head() == head)
        syncd = SyncdHarness(fixture, ["--quiet-period", "50ms"])
        let restarted = syncd
        try await restarted.process.waitForStderr("watching ")
        try await waitUntil(.seconds(30), "paused after restart") { restarted.state()?["phase"] as? String == "paused" }
        #expect(try await fixture.head() == head)
        let resume = ctl(fixture, ["resume"])
        #expect(try await resume.exit() == .exited(0), "\(resume.stderr)")
        try await syncd.settled()
        #expect(try await fixture.commitCount() == 1, "the paused changes land as one batch")
        // A pause with a deadline ends by itself.
        let timed = ctl(fixture, ["pause", "--for", "2s"])
        #expect(try await timed.exit() == .exited(0), "\(timed.stderr)")
        try Files.write(fixture.file("later"), "after the pause\n")
        try await syncd.settled(within: .seconds(30))
        #expect(try await fixture.headTree()[Array("later".utf8)] != nil)
        #expect(syncd.journal().contains { $0["event"] as? String == "resume" && $0["reason"] as? String == "expired" })
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("an emergency stop halts commits, persists across a restart, blocks writers, and is cleared only on purpose")
    func emergencyStop() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        var syncd = SyncdHarness(fixture, ["--quiet-period", "50ms"])
        try await syncd.ready()
        let stop = ctl(fixture, ["emergency-stop", "--reason", "repairing the repository"])
        #expect(try await stop.exit() == .exited(0), "\(stop.stderr)")
        #expect(stop.stdout.contains("emergency stop confirmed"))
        try Files.write(fixture.file("e"), "written during the stop\n")
        #expect(try await syncd.stop() == .exited(0))
        syncd = SyncdHarness(fixture, ["--quiet-period", "50ms"])
        let restarted = syncd
        try await restarted.process.waitForStderr("EMERGENCY STOP")
        try await waitUntil(.seconds(30), "stopped after restart") { restarted.state()?["phase"] as? String == "emergency-stop" }
        try await Pace.holds(for: .seconds(1), "no commit during the emergency stop") { try await fixture.commitCount() == 0 }
        let writer = ctl(fixture, ["as-writer", "--", "true"])
        #expect(try await writer.exit() == .exited(75))
        #expect(writer.stderr.contains("emergency stop is set"))
        let plainResume = ctl(fixture, ["resume"])
        #expect(try await plainResume.exit() == .exited(1))
        #expect(plainResume.stderr.contains("--clear-emergency"))
        let clear = ctl(fixture, ["resume", "--clear-emergency"])
        #expect(try await clear.exit() == .exited(0), "\(clear.stderr)")
        try await syncd.settled()
        #expect(try await fixture.headTree()[Array("e".utf8)] != nil)
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("syncctl sync commits now; with no syncd running, syncctl says so (exit 3)")
    func syncNowAndNotRunning() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "1h", "--max-latency", "2h"])
        try await syncd.ready()
        try Files.write(fixture.file("now.txt"), "commit me now\n")
        try await waitUntil(.seconds(30), "pending") { syncd.state()?["phase"] as? String == "pending" }
        let sync = ctl(fixture, ["sync"])
        #expect(try await sync.exit() == .exited(0), "\(sync.stderr)")
        #expect(try await fixture.headTree()[Array("now.txt".utf8)] != nil)
        #expect(try await syncd.stop() == .exited(0))
        for command in [["sync"], ["pause"], ["emergency-stop"]] {
            let process = ctl(fixture, command)
            #expect(try await process.exit() == .exited(3), "\(command): \(process.stderr)")
            #expect(process.stderr.contains("no syncd is running"))
        }
        let status = ctl(fixture, ["status", "--json"])
        #expect(try await status.exit() == .exited(3), "not running")
        let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        #expect(object?["running"] as? Bool == false)
        #expect(object?["paused"] as? Bool == true)
        #expect(object?["emergency_stop"] as? Bool == true)
    }

    @Test("hostile control files: a garbage pause file pauses loudly; a symlink where the sync lock belongs stops startup")
    func hostileFiles() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.mkdirs(fixture.path + "/.git/syncd")
        try Files.write(lockPath(fixture, "paused.json"), "{\"reason\": tru")
        let syncd = SyncdHarness(fixture, ["--quiet-period", "50ms"])
        try await syncd.process.waitForStderr("paused.json is not valid")
        #expect(syncd.process.stderr.contains("syncctl resume"))
        try await waitUntil(.seconds(30), "paused") { syncd.state()?["phase"] as? String == "paused" }
        let resume = ctl(fixture, ["resume"])
        #expect(try await resume.exit() == .exited(0), "\(resume.stderr)")
        try Files.write(fixture.file("x"), "x\n")
        try await syncd.settled()
        #expect(try await syncd.stop() == .exited(0))

        try FileManager.default.removeItem(atPath: lockPath(fixture, "sync.lock"))
        try Files.symlink("/etc/passwd", at: lockPath(fixture, "sync.lock"))
        let refused = SyncdHarness(fixture)
        #expect(try await refused.process.exit() == .exited(1))
        #expect(refused.process.stderr.contains("sync.lock"))
        #expect(refused.process.stderr.contains("symlink"))
    }

    @Test(
        "a lock directory that is not writable stops startup with the path and the fix",
        .enabled(if: getuid() == 0, "root ignores permissions: the test mounts a read-only filesystem (CI runs as root)")
    )
    func unwritableLockDirectory() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let readOnly = try TemporaryDirectory(prefix: "syncd-ro")
        defer { readOnly.remove() }
        let mount = ProcessHarness("/bin/mount", ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", readOnly.path])
        #expect(try await mount.exit() == .exited(0), "\(mount.stderr)")
        defer { _ = umount2(readOnly.path, Int32(MNT_DETACH)) }
        let syncd = SyncdHarness(fixture, ["--lock-dir", readOnly.path])
        #expect(try await syncd.process.exit() == .exited(1))
        #expect(syncd.process.stderr.contains(readOnly.path))
        #expect(syncd.process.stderr.contains("not writable"))
    }

    @Test("a lock directory inside the working tree is kept out of commits")
    func lockDirectoryInsideTree() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try await fixture.run(["config", "syncd.lockDir", ".sync-locks"])
        let syncd = SyncdHarness(fixture, ["--quiet-period", "50ms"])
        try await syncd.process.waitForStderr("watching ")
        try await waitUntil(.seconds(30), "ready") { FileManager.default.fileExists(atPath: fixture.path + "/.sync-locks/sync.lock") }
        let writer = ProcessHarness(syncctl, ["as-writer", "-C", fixture.path, "--", "sh", "-c", "echo data > data.txt"], workingDirectory: fixture.path)
        #expect(try await writer.exit() == .exited(0), "\(writer.stderr)")
        try await waitUntil(.seconds(30), "data committed") { try await fixture.headTree()[Array("data.txt".utf8)] != nil }
        #expect(try await fixture.headTree().keys.allSatisfy { !$0.starts(with: Array(".sync-locks".utf8)) })
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("the documented shell recipe (docs/examples/writer.sh) waits for a live lease, ignores a dead one, writes under the lock")
    func shellRecipe() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let recipe = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/examples/writer.sh").path
        try Files.mkdirs(fixture.path + "/.git/syncd")
        let lease = Array(lockPath(fixture, "writer-pause.json").utf8)
        let now = ControlFile.now()
        let me = ProcessIdentity.current()
        try AtomicFile.write(lease, Array(try Self.json(WriterLease(holder: ProcessIdentity(pid: 999_999, startTime: 1, bootID: me.bootID), reason: "dead", createdAt: now, expiresAt: now + 600)).utf8))
        let free = ProcessHarness(recipe, [fixture.path, "sh", "-c", "echo one > first"])
        #expect(try await free.exit() == .exited(0), "\(free.stderr)")
        #expect(FileManager.default.fileExists(atPath: fixture.file("first")))

        try AtomicFile.write(lease, Array(try Self.json(WriterLease(holder: me, reason: "live", createdAt: now, expiresAt: now + 600)).utf8))
        let waiting = ProcessHarness(recipe, [fixture.path, "sh", "-c", "echo two > second"])
        try await Pace.holds(for: .seconds(1), "the writer waits while the lease is in force") {
            !FileManager.default.fileExists(atPath: fixture.file("second")) && waiting.finished == nil
        }
        try FileManager.default.removeItem(atPath: lockPath(fixture, "writer-pause.json"))
        #expect(try await waiting.exit() == .exited(0), "\(waiting.stderr)")
        #expect(FileManager.default.fileExists(atPath: fixture.file("second")))

        // Under the shared lock: syncd's exclusive lock cannot be taken while the command runs.
        let holding = ProcessHarness(recipe, [fixture.path, "sh", "-c", "echo held; exec tail -f /dev/null"])
        try await holding.waitForLine("the recipe runs its command") { $0 == "held" }
        let exclusive = try FileLock(path: Array(lockPath(fixture, "sync.lock").utf8))
        #expect(try exclusive.tryLock(.exclusive) == false)
        holding.signal(SIGKILL)
        _ = try await holding.exit()
        try await waitUntil(.seconds(10), "the lock is free once the writer is gone") { try exclusive.tryLock(.exclusive) }
    }
}
