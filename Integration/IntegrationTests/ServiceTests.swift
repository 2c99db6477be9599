import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Testing

/// syncd as a systemd service: sd_notify, the watchdog, SIGHUP.
@Suite("syncd under systemd (notify socket, watchdog, signals)", .serialized)
struct ServiceTests {
    @Test("READY after the initial reconcile, STATUS lines, WATCHDOG pings at half the interval, STOPPING on SIGTERM")
    func notifyProtocol() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let directory = try TemporaryDirectory(prefix: "syncd-notify")
        defer { directory.remove() }
        let notify = try NotifySocket(path: directory.sub("notify"))
        try Files.write(fixture.file("before.txt"), "made while syncd was down\n")
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"], environment: ["NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "1000000"])
        try await waitUntil(.seconds(30), "READY=1") { notify.messages.contains { $0.contains("READY=1") } }
        // READY comes after the startup batch: what changed while syncd was down is committed.
        #expect(try await fixture.headTree()[Array("before.txt".utf8)] != nil)
        #expect(notify.messages.contains { $0.contains("STATUS=") && $0.contains("watching") })
        try await waitUntil(.seconds(10), "three watchdog pings") { notify.messages.filter { $0 == "WATCHDOG=1" }.count >= 3 }
        #expect(try await syncd.stop() == .exited(0))
        #expect(notify.messages.contains { $0.hasPrefix("STOPPING=1") })
    }

    @Test("an abstract notify socket (@name) works; a watchdog meant for another pid is not pinged")
    func abstractSocketAndForeignWatchdog() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let notify = try NotifySocket(abstractName: "syncd-test-\(getpid())-\(Int.random(in: 0..<1_000_000))")
        let syncd = SyncdHarness(fixture, [], environment: [
            "NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1",
        ])
        try await waitUntil(.seconds(30), "READY=1 on the abstract socket") { notify.messages.contains { $0.contains("READY=1") } }
        try await Pace.holds(for: .seconds(1), "no watchdog pings for another pid's watchdog") {
            !notify.messages.contains("WATCHDOG=1")
        }
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("SIGHUP reloads settings from git config; a bad value keeps the running ones")
    func reloadOnSIGHUP() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--max-latency", "10m"], environment: [:])
        try await fixture.run(["config", "syncd.quietPeriod", "5m"])
        try await syncd.ready()
        try Files.write(fixture.file("waiting.txt"), "pending for five minutes\n")
        try await waitUntil(.seconds(30), "pending") { syncd.state()?["phase"] as? String == "pending" }
        try await fixture.run(["config", "syncd.quietPeriod", "100ms"])
        syncd.process.signal(SIGHUP)
        try await syncd.process.waitForStderr("settings reloaded: quietPeriod 100ms")
        try await syncd.settled()
        try await fixture.run(["config", "syncd.quietPeriod", "soon"])
        syncd.process.signal(SIGHUP)
        try await syncd.process.waitForStderr("settings not reloaded")
        #expect(syncd.process.stderr.contains("syncd.quietPeriod"))
        try Files.write(fixture.file("after.txt"), "still committed with the running settings\n")
        try await syncd.settled()
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("a push that keeps failing fires the alert hook once, not in a storm; the metrics file follows the state")
    func alertOnceAndMetrics() async throws {
        let root = try TemporaryDirectory(prefix: "syncd-alert")
        defer { root.remove() }
        let fixture = try await GitFixture(in: root.path + "/work")
        // A remote nothing listens on: every push fails, and waiting might fix it (offline, not a
        // setup problem, which alerts at once: StatusTests.setupProblem).
        let closed = try Blackhole()
        let port = closed.port
        closed.close()
        try await fixture.run(["remote", "add", "origin", GitArgument("git://127.0.0.1:\(port)/remote.git")])
        let alerts = root.path + "/alerts.jsonl"
        let metrics = root.path + "/syncd.prom"
        let syncd = SyncdHarness(fixture, [
            "--quiet-period", "100ms", "--sync-interval", "1s", "--alert-after", "1s",
            "--alert-command", "cat >> \(alerts)", "--metrics-file", metrics,
        ])
        try await syncd.ready()
        try Files.write(fixture.file("a.txt"), "never pushed\n")
        try await waitUntil(.seconds(30), "the alert ran") { FileManager.default.fileExists(atPath: alerts) }
        // Many failed cycles later (every 1 to 5 s), still exactly one alert.
        try await Pace.wait(.seconds(6))
        let lines = try String(contentsOfFile: alerts, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1, "alerts: \(lines)")
        let alert = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
        #expect(alert?["incident"] as? String == "push-failing", "\(alert ?? [:])")
        #expect((alert?["workspace"] as? String) == fixture.path)
        let text = try String(contentsOfFile: metrics, encoding: .utf8)
        #expect(text.contains("# TYPE syncd_commits_total counter"))
        #expect(text.contains("syncd_offline{workspace=\"\(fixture.path)\"} 1"))
        #expect(text.contains("syncd_unpushed_commits{workspace=\"\(fixture.path)\"} 1"))
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("under the journal (JOURNAL_STREAM set) log lines carry syslog priorities")
    func journalPriorities() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, [], environment: ["JOURNAL_STREAM": "8:1234"])
        try await syncd.process.waitForStderr("<6>info: watching ")
        #expect(try await syncd.stop() == .exited(0))
        #expect(!syncd.process.stderr.contains("syncd: info"))
    }

    @Test("syncctl doctor: one line per check; a low watch limit is a FAIL with the fix, and exits 1")
    func doctor() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        for index in 0..<30 { try Files.mkdirs(fixture.file("d\(index)")) }
        let syncctl = ProcessHarness.product("syncctl")
        let healthy = ProcessHarness(syncctl, ["doctor", "-C", fixture.path])
        #expect(try await healthy.exit() == .exited(0), "\(healthy.stdout)")
        for name in ["git", "repository", "remote", "inotify", "disk", "locks", "service"] {
            #expect(healthy.stdout.split(separator: "\n").contains { $0.contains(" \(name) ") || $0.dropFirst(5).hasPrefix(name) }, "no \(name) line")
        }
        #expect(healthy.stdout.contains("OK   inotify    31 directories to watch"))
        // A user namespace with a watch limit of 8: the kernel limit the workspace cannot fit.
        let script = #"echo 8 > /proc/sys/user/max_inotify_watches && exec "$0" doctor -C "$1""#
        let low = ProcessHarness("/usr/bin/unshare", ["--user", "--map-root-user", "sh", "-c", script, syncctl, fixture.path])
        #expect(try await low.exit() == .exited(1))
        let line = low.stdout.split(separator: "\n").first { $0.hasPrefix("FAIL inotify") }.map(String.init) ?? ""
        #expect(line.contains("needs 31 watches and the limit is 8"), "\(low.stdout)")
        #expect(line.contains("sysctl user.max_inotify_watches="))
    }

    @Test("a second SIGTERM during the shutdown corrupts nothing: fsck clean, and the next start commits whatever was left")
    func secondSIGTERM() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        for directory in 0..<20 {
            try Files.mkdirs(fixture.file("d\(directory)"))
        }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "1h", "--max-latency", "2h"])
        try await syncd.ready()
        for directory in 0..<20 {
            for file in 0..<100 { try Files.write(fixture.file("d\(directory)/f\(file)"), "\(directory) \(file)\n") }
        }
        try await waitUntil(.seconds(30), "pending") { (syncd.state()?["pending_paths"] as? Int ?? 0) > 0 }
        syncd.process.signal(SIGTERM)
        try await waitUntil(.seconds(30), "the shutdown commit started") { syncd.state()?["phase"] as? String == "committing" }
        syncd.process.signal(SIGTERM)
        _ = try await syncd.process.exit(within: .seconds(60))
        try await fixture.fsck()
        let again = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        try await again.ready()
        try await again.settled()
        #expect(try await fixture.headTree().count == 2000)
        #expect(try await again.stop() == .exited(0))
        try await fixture.fsck()
    }

    @Test("SIGTERM during a commit is a graceful stop: the commit in flight finishes (git is not torn down, nothing fails), then syncd exits 0")
    func gracefulStopFinishesTheCommit() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        for directory in 0..<50 { try Files.mkdirs(fixture.file("d\(directory)")) }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "200ms", "--max-latency", "1s"])
        try await syncd.ready()
        for directory in 0..<50 {
            for file in 0..<100 { try Files.write(fixture.file("d\(directory)/f\(file)"), "\(directory) \(file)\n") }
        }
        try await waitUntil(.seconds(60), interval: .milliseconds(5), "a commit in flight") { syncd.state()?["phase"] as? String == "committing" }
        syncd.process.signal(SIGTERM)
        #expect(try await syncd.process.exit(within: .seconds(120)) == .exited(0))
        #expect(!syncd.journal().contains { $0["event"] as? String == "failed" }, "a batch failed during the stop: \(syncd.process.stderr.suffix(800))")
        #expect(!syncd.process.stderr.contains("error:"), "\(syncd.process.stderr.suffix(800))")
        #expect(try await fixture.statusLines().isEmpty)
        #expect(try await fixture.headTree().count == 5000)
        try await fixture.fsck()
    }
}
