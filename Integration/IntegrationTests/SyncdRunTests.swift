import Foundation
import Glibc
import SyncCore
import SyncTestKit
import Testing

/// `syncd run`, the real binary, on temporary repositories. After every workload HEAD's tree must
/// equal the working tree (ignored files aside) and `git fsck` must be clean.
@Suite("syncd run (the real binary)", .serialized)
struct SyncdRunTests {
    static func commits(in journal: [[String: Any]]) -> [[String: Any]] {
        journal.filter { $0["event"] as? String == "commit" }
    }

    static func time(_ record: [String: Any]) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return (record["time"] as? String).flatMap(formatter.date(from:))
    }

    @Test("changes made while syncd was down are committed at startup; later changes follow; SIGTERM exits 0")
    func startupAndFollow() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.write(fixture.file("before.txt"), "written while syncd was down\n")
        let syncd = SyncdHarness(fixture, ["--quiet-period", "200ms"])
        try await syncd.ready()
        try await syncd.settled()
        #expect(try await fixture.headTree()[Array("before.txt".utf8)] != nil)
        try Files.write(fixture.file("after.txt"), "written while syncd runs\n")
        try await syncd.settled()
        #expect(try await fixture.headTree()[Array("after.txt".utf8)] != nil)
        let message = try await fixture.run(["log", "-1", "--format=%B"])
        #expect(message.hasPrefix("syncd: add after.txt"))
        #expect(message.contains("Syncd-Trigger: quiet"))
        #expect(try await syncd.stop() == .exited(0))
        try await fixture.fsck()
    }

    @Test("SIGTERM with changes pending: they are committed before syncd exits 0")
    func shutdownCommitsPending() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        // A long quiet period: nothing would be committed for a minute without the shutdown.
        let syncd = SyncdHarness(fixture, ["--quiet-period", "60s", "--max-latency", "120s"])
        try await syncd.ready()
        try Files.write(fixture.file("pending.txt"), "not yet committed\n")
        try await waitUntil(.seconds(30), "the change is pending") { syncd.state()?["phase"] as? String == "pending" }
        #expect(try await syncd.stop() == .exited(0))
        #expect(try await fixture.headTree()[Array("pending.txt".utf8)] != nil)
        #expect(try await fixture.run(["log", "-1", "--format=%B"]).contains("Syncd-Trigger: shutdown"))
        #expect(syncd.state()?["phase"] as? String == "stopped")
        try await fixture.fsck()
    }

    @Test("10,000 files created in 100 directories in a burst land in a handful of commits")
    func burst() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "1s"])
        try await syncd.ready()
        let before = try await fixture.commitCount()
        for directory in 0..<100 {
            try Files.mkdirs(fixture.file("dir\(directory)"))
            for file in 0..<100 {
                try Files.write(fixture.file("dir\(directory)/file\(file).txt"), "\(directory)-\(file)\n")
            }
        }
        try await syncd.settled(within: .seconds(180))
        let made = try await fixture.commitCount() - before
        #expect(made >= 1 && made <= 5, "made \(made) commits")
        #expect(try await fixture.headTree().count == 10_000)
        try await fixture.fsck()
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("3,000 random operations with a fixed seed: everything committed, fsck clean")
    func randomOperations() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms", "--max-latency", "1s"])
        try await syncd.ready()
        var workload = RandomWorkload(root: fixture.path, seed: 20_261_122)
        var kinds: [String: Int] = [:]
        for _ in 0..<3000 { kinds[try workload.step(), default: 0] += 1 }
        for kind in ["create", "modify", "append", "delete", "rename-or-move-file", "mkdir", "rename-or-move-directory", "rmdir-recursive"] {
            #expect(kinds[kind, default: 0] > 0, "the workload never did \(kind)")
        }
        try await syncd.settled(within: .seconds(180))
        try await fixture.fsck()
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("a writer every 0.5 s for 20 s gets a commit at least every maxLatency; none in the 10 s after it stops")
    func writerThatNeverPauses() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        // maxLatency is 5 s here (default 20 s) so the 20 s run shows several max-latency commits.
        let syncd = SyncdHarness(fixture, ["--quiet-period", "2s", "--max-latency", "5s"])
        try await syncd.ready()
        let start = Date()
        try await Pace.every(.milliseconds(500), for: .seconds(20)) { index in
            try Files.write(fixture.file("status.json"), "{\"tick\": \(index)}\n")
        }
        let writerStopped = Date()
        try await syncd.settled()
        let commitTimes = Self.commits(in: syncd.journal()).compactMap(Self.time).filter { $0 > start }
        let duringWriter = commitTimes.filter { $0 <= writerStopped.addingTimeInterval(0.5) }
        #expect(duringWriter.count >= 3, "commits while writing: \(duringWriter.count)")
        // Each commit is due at most maxLatency after the first change it holds; allow 1.5 s for
        // the commit itself and the writer's 0.5 s period.
        var previous = start
        for time in duringWriter {
            #expect(time.timeIntervalSince(previous) <= 5 + 1.5, "gap of \(time.timeIntervalSince(previous)) s")
            previous = time
        }
        let settledHead = try await fixture.head()
        try await Pace.holds(for: .seconds(10), "no commit after the writer stopped") {
            try await fixture.head() == settledHead
        }
        #expect(try await syncd.stop() == .exited(0))
        try await fixture.fsck()
    }

    @Test("a person's git commits racing syncd's commits: both preserved")
    func personCommitsRacing() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "50ms", "--max-latency", "200ms"])
        try await syncd.ready()
        async let writer: Int = Pace.every(.milliseconds(20), for: .seconds(6)) { index in
            try Files.write(fixture.file("writer-\(index % 40).txt"), "tick \(index)\n")
        }
        var personCommits = 0
        for index in 0..<20 {
            try Files.write(fixture.file("person-\(index).txt"), "by hand \(index)\n")
            // A person retries when syncd holds the index for a moment, as git tells them to.
            try await waitUntil(.seconds(30), interval: .milliseconds(30), "person commit \(index)") {
                let add = try await fixture.git.run(["add", "person-\(index).txt"], acceptedExitCodes: [0, 128])
                guard add.exitCode == 0 else { return false }
                let commit = try await fixture.git.run(["commit", "-q", "-m", "person \(index)"], acceptedExitCodes: [0, 1, 128])
                if commit.exitCode == 0 { return true }
                return try await fixture.stagedPaths().isEmpty
            }
            personCommits += 1
        }
        let writes = try await writer
        try await syncd.settled()
        let subjects = try await fixture.run(["log", "--format=%s"])
        let tree = try await fixture.headTree()
        for index in 0..<20 {
            #expect(tree[Array("person-\(index).txt".utf8)] != nil, "person-\(index).txt lost")
        }
        #expect(subjects.contains("person 0") && subjects.contains("person 19") || personCommits == 20)
        #expect(writes > 100)
        let journal = syncd.journal()
        #expect(!Self.commits(in: journal).isEmpty)
        try await fixture.fsck()
        #expect(try await syncd.stop() == .exited(0))
    }

    /// A process that holds `.git/index.lock` open, as a git at work does, until it is ended.
    static func holdIndexLock(_ fixture: GitFixture) async throws -> ProcessHarness {
        let holder = ProcessHarness("/bin/sh", ["-c", "exec 3>>\"$0\"; echo held; exec tail -f /dev/null", fixture.path + "/.git/index.lock"])
        try await holder.waitForLine("lock held") { $0 == "held" }
        return holder
    }

    @Test("SIGTERM while the batch waits for another git's index.lock: exit 1 naming what stayed uncommitted and why, not 0; the next start commits it")
    func stopWhileWaitingExitsOne() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        try await syncd.ready()
        let holder = try await Self.holdIndexLock(fixture)
        try Files.write(fixture.file("waiting.txt"), "written while the index is locked\n")
        try await waitUntil(.seconds(30), "state.json says deferred/index-locked") {
            syncd.state()?["reason_code"] as? String == "index-locked"
        }
        #expect(try await syncd.stop() == .exited(1))
        #expect(syncd.process.stderr.contains("not committed"), "\(syncd.process.stderr.suffix(1500))")
        #expect(syncd.process.stderr.contains("waiting.txt"))
        _ = try await holder.terminate()
        try FileManager.default.removeItem(atPath: fixture.path + "/.git/index.lock")
        let again = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        try await again.ready()
        try await again.settled()
        #expect(try await fixture.headTree()[Array("waiting.txt".utf8)] != nil)
        #expect(try await again.stop() == .exited(0))
    }

    @Test("an index.lock held by another process: syncd waits (state says why), then commits after release")
    func waitsForIndexLock() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        try await syncd.ready()
        let holder = try await Self.holdIndexLock(fixture)
        let head = try await fixture.head()
        try Files.write(fixture.file("waiting.txt"), "written while the index is locked\n")
        try await waitUntil(.seconds(30), "state.json says deferred/index-locked") {
            syncd.state()?["reason_code"] as? String == "index-locked" && syncd.state()?["phase"] as? String == "deferred"
        }
        #expect((syncd.state()?["reason"] as? String)?.contains("held open by pid") == true)
        #expect(try await fixture.head() == head)
        _ = try await holder.terminate()
        try FileManager.default.removeItem(atPath: fixture.path + "/.git/index.lock")
        try await syncd.settled()
        #expect(try await fixture.headTree()[Array("waiting.txt".utf8)] != nil)
        #expect(syncd.process.stderr.contains("waits: another git process is using the index"))
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("an index.lock left by a git command that died before this start (no holder) is removed at once, not after staleLockAge")
    func leftoverIndexLockAtStart() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        // What a watchdog restart leaves: git's lock from the previous syncd's killed child, seconds old.
        try Files.write(fixture.path + "/.git/index.lock", "")
        let fiveSecondsAgo = Glibc.time(nil) - 5
        var past = [timespec(tv_sec: fiveSecondsAgo, tv_nsec: 0), timespec(tv_sec: fiveSecondsAgo, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, fixture.path + "/.git/index.lock", &past, 0) == 0)
        try Files.write(fixture.file("after-restart.txt"), "written while syncd was down\n")
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        try await syncd.ready()
        try await syncd.settled(within: .seconds(60))
        #expect(try await fixture.headTree()[Array("after-restart.txt".utf8)] != nil)
        #expect(syncd.process.stderr.contains("removed a stale"))
        #expect(syncd.process.stderr.contains("(it predates this start)"))
        #expect(try await syncd.stop() == .exited(0))

        // A restart within the second of the kill: the lock is milliseconds older than the
        // start, which a comparison in whole seconds took for "after" (11 s wait).
        try Files.write(fixture.path + "/.git/index.lock", "")
        try Files.write(fixture.file("same-second.txt"), "written in the second of the kill\n")
        let again = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        try await again.ready()
        try await again.process.waitForStderr("(it predates this start)")
        try await again.settled(within: .seconds(60))
        #expect(try await fixture.headTree()[Array("same-second.txt".utf8)] != nil)
        #expect(try await again.stop() == .exited(0))
    }

    @Test("a state.json.tmp-PID left by a syncd killed while writing state.json is removed at start; other temporaries are not")
    func staleStatusTemporaryRemovedAtStart() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let directory = fixture.path + "/.git/syncd"
        try Files.mkdirs(directory)
        try Files.write(directory + "/state.json.tmp-4000000", "{\"phase\":")
        // Not state.json's: syncctl writes its control files the same way.
        try Files.write(directory + "/pause.json.tmp-4000000", "{}")
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        try await syncd.ready()
        #expect(!FileManager.default.fileExists(atPath: directory + "/state.json.tmp-4000000"))
        #expect(FileManager.default.fileExists(atPath: directory + "/pause.json.tmp-4000000"))
        #expect(try await syncd.stop() == .exited(0))
        let left = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("state.json.tmp-") }
        #expect(left.isEmpty, "\(left)")
    }

    /// 20 in the suite; `scripts/stress-kill9.sh` runs many more through SYNCD_KILL9_TRIALS.
    static var killTrials: Int { Int(ProcessInfo.processInfo.environment["SYNCD_KILL9_TRIALS"] ?? "") ?? 20 }

    @Test("kill -9 at random moments of a busy workload, then a restart: nothing lost, fsck clean (20 trials)")
    func killNineTrials() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let seed = UInt64(ProcessInfo.processInfo.environment["SYNCD_KILL9_SEED"] ?? "") ?? 9
        var random = SeededRandom(seed: seed)
        var workload = RandomWorkload(root: fixture.path, seed: seed &* 11)
        var interruptedBatches = 0
        for trial in 0..<Self.killTrials {
            let syncd = SyncdHarness(fixture, ["--quiet-period", "20ms", "--max-latency", "100ms"])
            try await syncd.ready()
            // Busy: operations keep coming while syncd commits; the kill lands mid-batch at a
            // random moment.
            let steps = Int.random(in: 50...400, using: &random)
            for _ in 0..<steps { try workload.step() }
            try await Pace.wait(.milliseconds(Int.random(in: 0...150, using: &random)))
            try await syncd.kill9()
            if syncd.journal().last?["event"] as? String == "batch" { interruptedBatches += 1 }
            for _ in 0..<20 { try workload.step() }
            let restarted = SyncdHarness(fixture, ["--quiet-period", "20ms"])
            try await restarted.ready()
            try await restarted.settled()
            do {
                try await fixture.fsck()
            } catch {
                Issue.record("trial \(trial): \(error)")
                throw error
            }
            #expect(try await restarted.stop() == .exited(0))
        }
        print("kill -9 trials: \(Self.killTrials), killed in the middle of a batch: \(interruptedBatches)")
    }

    @Test("a second syncd for the same workspace exits 75 and names the running one")
    func oneInstancePerWorkspace() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let first = SyncdHarness(fixture)
        try await first.ready()
        let second = ProcessHarness(ProcessHarness.product("syncd"), ["run", fixture.path])
        #expect(try await second.exit() == .exited(75))
        #expect(second.stderr.contains("already running"))
        #expect(second.stderr.contains("pid \(first.process.pid ?? -1)"))
        #expect(try await first.stop() == .exited(0))
    }

    @Test("`--` ends the settings flags (the path after it is the workspace), and the help shows defaults as they are written")
    func pathAfterDoubleDash() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let first = SyncdHarness(fixture)
        try await first.ready()
        // Taken as the workspace: the same one, so exit 75 (a usage error would be 64).
        let second = ProcessHarness(ProcessHarness.product("syncd"), ["run", "--max-latency", "10s", "--", fixture.path])
        #expect(try await second.exit() == .exited(75))
        #expect(try await first.stop() == .exited(0))
        let help = ProcessHarness(ProcessHarness.product("syncd"), ["run", "--help"])
        #expect(try await help.exit() == .exited(0))
        let text = help.stdout.split(separator: "\n").joined(separator: " ")
        #expect(text.contains("default 8MiB"))
        #expect(text.contains("default .git/syncd"))
        #expect(text.contains("upstream remote, else origin"))
    }

    @Test("an invalid setting stops startup (exit 78) naming the key, the value and what is allowed")
    func invalidSetting() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try await fixture.run(["config", "syncd.maxLatency", "forever"])
        let process = ProcessHarness(ProcessHarness.product("syncd"), ["run", fixture.path])
        #expect(try await process.exit() == .exited(78))
        #expect(process.stderr.contains("syncd.maxLatency"))
        #expect(process.stderr.contains("\"forever\""))
        #expect(process.stderr.contains("a duration from 100ms to 24h"))
        try await fixture.run(["config", "--unset", "syncd.maxLatency"])
        let flag = ProcessHarness(ProcessHarness.product("syncd"), ["run", fixture.path, "--max-latency", "10s", "--quiet-period", "1x"])
        #expect(try await flag.exit() == .exited(78))
        #expect(flag.stderr.contains("--quiet-period 1x"))
    }

    @Test("the circuit breaker stops committing, loudly, when commits come too fast")
    func circuitBreaker() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, [
            "--quiet-period", "0s", "--max-latency", "1s", "--breaker-max-commits", "3", "--breaker-window", "10m",
        ])
        try await syncd.ready()
        let start = try await fixture.commitCount()
        try await Pace.every(.milliseconds(150), for: .seconds(3)) { index in
            try Files.write(fixture.file("loop.txt"), "\(index)\n")
        }
        try await waitUntil(.seconds(30), "breaker open in state.json") {
            syncd.state()?["phase"] as? String == "breaker-open"
        }
        #expect(syncd.process.stderr.contains("circuit breaker open"))
        let made = try await fixture.commitCount() - start
        #expect(made == 4, "commits before the breaker opened: \(made)")
        #expect(try await fixture.statusLines().isEmpty == false)  // collected, not committed
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test(
        "a full disk during a commit: syncd says so, retries, loses nothing and leaves no lock behind",
        .enabled(if: getuid() == 0, "mounting a small tmpfs needs root (CI runs as root)")
    )
    func fullDisk() async throws {
        let mountPoint = try TemporaryDirectory(prefix: "syncd-tmpfs")
        defer { mountPoint.remove() }
        let mount = ProcessHarness("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mountPoint.path])
        #expect(try await mount.exit() == .exited(0), "mount: \(mount.stderr)")
        defer { _ = Glibc.umount2(mountPoint.path, Int32(MNT_DETACH)) }
        let fixture = try await GitFixture(in: mountPoint.path + "/repo")
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        try await syncd.ready()
        // Fill the filesystem, leaving room for the file itself but not for git's copy of it.
        var info = statvfs()
        statvfs(mountPoint.path, &info)
        let free = Int(info.f_bavail) * Int(info.f_frsize)
        let payload = 600 * 1024
        try Files.write(mountPoint.sub("filler"), String(repeating: "f", count: max(0, free - payload - 200 * 1024)))
        var generator = SeededRandom(seed: 7)
        let random = (0..<payload).map { _ in Character(Unicode.Scalar(UInt8.random(in: 97...122, using: &generator))) }
        try Files.write(fixture.file("big.txt"), String(random))
        try await syncd.process.waitForStderr("the disk is full")
        #expect(syncd.process.stderr.contains("nothing is lost"))
        try await waitUntil(.seconds(30), "state.json says disk-full") {
            syncd.state()?["reason_code"] as? String == "disk-full"
        }
        #expect(!FileManager.default.fileExists(atPath: fixture.path + "/.git/index.lock"))
        #expect(try await fixture.headTree()[Array("big.txt".utf8)] == nil)
        try FileManager.default.removeItem(atPath: mountPoint.sub("filler"))
        try await syncd.settled(within: .seconds(120))
        #expect(try await fixture.headTree()[Array("big.txt".utf8)] != nil)
        #expect(!FileManager.default.fileExists(atPath: fixture.path + "/.git/index.lock"))
        try await fixture.fsck()
        #expect(try await syncd.stop() == .exited(0))
    }
}
