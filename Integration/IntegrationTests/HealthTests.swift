import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Testing

/// `syncctl ARGUMENTS...` as a child process (in `directory` when given).
func syncctlProcess(_ arguments: [String], in directory: String? = nil) -> ProcessHarness {
    ProcessHarness(ProcessHarness.product("syncctl"), arguments, workingDirectory: directory)
}

/// A workspace whose remote names a directory that is no repository: a setup problem, which
/// waiting never fixes (git says "does not appear to be a git repository").
func workspaceWithSetupProblem(_ root: TemporaryDirectory) async throws -> GitFixture {
    let fixture = try await GitFixture(in: root.path + "/work")
    try Files.mkdirs(root.path + "/not-a-repository")
    try await fixture.run(["remote", "add", "origin", GitArgument(root.path + "/not-a-repository")])
    return fixture
}

/// `syncctl status` tells the truth, and says it in its exit status.
@Suite("syncctl status: truthful health and exit codes (real processes)", .serialized)
struct StatusTests {
    @Test("paused with a changed file: pending counts it; status exits 1 (degraded) while paused, 0 when healthy, 3 when syncd is not running")
    func pendingWhilePausedAndExitCodes() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "50ms"])
        try await syncd.ready()
        let healthy = syncctlProcess(["status", "-C", fixture.path])
        #expect(try await healthy.exit() == .exited(0), "\(healthy.stdout)\(healthy.stderr)")
        #expect(healthy.stdout.contains("health: healthy"))

        let pause = syncctlProcess(["pause", "-C", fixture.path, "--reason", "checking the count"])
        #expect(try await pause.exit() == .exited(0), "\(pause.stderr)")
        let head = try await fixture.head()
        try Files.write(fixture.file("while-paused.txt"), "changed while paused\n")
        try Files.write(fixture.file("also-while-paused.txt"), "changed while paused\n")
        try await waitUntil(.seconds(10), "state.json counts the two changes made while paused") {
            syncd.state()?["pending_paths"] as? Int == 2
        }
        #expect(try await fixture.head() == head, "nothing is committed while paused")
        let paused = syncctlProcess(["status", "-C", fixture.path])
        #expect(try await paused.exit() == .exited(1), "\(paused.stdout)\(paused.stderr)")
        #expect(paused.stdout.contains("pending: 2 path(s)"), "\(paused.stdout)")
        #expect(paused.stdout.contains("health: degraded (paused)"), "\(paused.stdout)")
        let pausedJSON = syncctlProcess(["status", "-C", fixture.path, "--json"])
        #expect(try await pausedJSON.exit() == .exited(1))
        let object = try JSONSerialization.jsonObject(with: Data(pausedJSON.stdout.utf8)) as? [String: Any]
        #expect(object?["health"] as? String == "degraded")
        #expect(object?["health_reasons"] as? [String] == ["paused"])
        #expect(object?["pending_paths"] as? Int == 2)

        let resume = syncctlProcess(["resume", "-C", fixture.path])
        #expect(try await resume.exit() == .exited(0), "\(resume.stderr)")
        try await syncd.settled()
        #expect(syncd.state()?["pending_paths"] as? Int == 0)
        let again = syncctlProcess(["status", "-C", fixture.path])
        #expect(try await again.exit() == .exited(0), "\(again.stdout)")
        #expect(again.stdout.contains("pending: 0 path(s)"))

        #expect(try await syncd.stop() == .exited(0))
        let stopped = syncctlProcess(["status", "-C", fixture.path])
        #expect(try await stopped.exit() == .exited(3))
        #expect(stopped.stdout.contains("not running"))
    }

    @Test("a setup problem (the remote names no repository): status says so with the fix and exits 2, never OFFLINE; the alert fires at once; doctor FAILs")
    func setupProblem() async throws {
        let root = try TemporaryDirectory(prefix: "syncd-setup")
        defer { root.remove() }
        let fixture = try await workspaceWithSetupProblem(root)
        let alerts = root.path + "/alerts.jsonl"
        // syncd.alertAfter stays at its default (10 minutes): a setup problem must not wait for it.
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms", "--alert-command", "cat >> \(alerts)"])
        try await syncd.ready()
        try Files.write(fixture.file("a.txt"), "committed, never pushed\n")
        try await waitUntil(.seconds(30), "a setup problem in state.json; stderr: \(syncd.process.stderr.suffix(1500))") {
            syncd.state()?["sync_problem"] as? String == "setup"
        }
        let fix = syncd.state()?["sync_fix"] as? String ?? ""
        #expect(fix.contains("git remote set-url origin"), "sync_fix: \(fix)")
        try await waitUntil(.seconds(30), "the alert ran at once") {
            ((try? String(contentsOfFile: alerts, encoding: .utf8)) ?? "").contains("\n")
        }
        let lines = try String(contentsOfFile: alerts, encoding: .utf8).split(separator: "\n")
        let alert = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
        #expect(alert?["incident"] as? String == "sync-setup")

        let status = syncctlProcess(["status", "-C", fixture.path])
        #expect(try await status.exit() == .exited(2), "\(status.stdout)\(status.stderr)")
        #expect(status.stdout.contains("SETUP PROBLEM with origin"), "\(status.stdout)")
        // Never "last synced 0 s ago" while nothing reaches the remote.
        #expect(status.stdout.contains("not synced yet, never pushed by this syncd"), "\(status.stdout)")
        #expect(status.stdout.contains("does not appear to be a git repository"))
        #expect(status.stdout.contains("to fix: the URL of origin does not name a repository"))
        #expect(!status.stdout.contains("OFFLINE"))
        #expect(status.stdout.contains("health: failing (setup problem with the remote)"))

        let doctor = syncctlProcess(["doctor", "-C", fixture.path])
        #expect(try await doctor.exit() == .exited(1), "\(doctor.stdout)")
        let remoteLine = doctor.stdout.split(separator: "\n").first { $0.hasPrefix("FAIL remote") }.map(String.init) ?? ""
        #expect(remoteLine.contains("setup problem") && remoteLine.contains("git remote set-url origin"), "\(doctor.stdout)")
        #expect(doctor.stdout.split(separator: "\n").contains { $0.hasPrefix("FAIL sync") }, "\(doctor.stdout)")
        #expect(try await syncd.stop() == .exited(0))
    }
}

/// `syncctl doctor` FAILs on what stops or breaks syncd, and only WARNs on what heals by itself.
@Suite("syncctl doctor: settings, remote, conflicts (real processes)", .serialized)
struct DoctorTests {
    func line(_ doctor: ProcessHarness, _ prefix: String) -> String {
        doctor.stdout.split(separator: "\n").first { $0.hasPrefix(prefix) }.map(String.init) ?? ""
    }

    @Test("an invalid setting is a FAIL with the key, the value and the fix (syncd would exit 78); so is syncd.remote naming no remote")
    func invalidSettings() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let healthy = syncctlProcess(["doctor", "-C", fixture.path])
        #expect(try await healthy.exit() == .exited(0), "\(healthy.stdout)")
        #expect(line(healthy, "OK   settings").contains("valid"))
        try await fixture.run(["config", "syncd.quietPeriod", "banana"])
        let banana = syncctlProcess(["doctor", "-C", fixture.path])
        #expect(try await banana.exit() == .exited(1))
        let failed = line(banana, "FAIL settings")
        #expect(failed.contains("syncd.quietPeriod") && failed.contains("banana") && failed.contains("git config"), "\(banana.stdout)")
        // syncd itself refuses the same setting with exit 78.
        let syncd = SyncdHarness(fixture)
        #expect(try await syncd.process.exit() == .exited(78))
        try await fixture.run(["config", "--unset", "syncd.quietPeriod"])
        try await fixture.run(["config", "syncd.remote", "nowhere"])
        let noRemote = syncctlProcess(["doctor", "-C", fixture.path])
        #expect(try await noRemote.exit() == .exited(1))
        #expect(line(noRemote, "FAIL settings").contains("\"nowhere\", which is not a remote"), "\(noRemote.stdout)")
    }

    @Test("a remote that names no repository is a setup FAIL with the fix; one that cannot be reached is only a WARN")
    func setupVersusOffline() async throws {
        let root = try TemporaryDirectory(prefix: "syncd-doctor")
        defer { root.remove() }
        let fixture = try await workspaceWithSetupProblem(root)
        let setup = syncctlProcess(["doctor", "-C", fixture.path])
        #expect(try await setup.exit() == .exited(1))
        let failed = line(setup, "FAIL remote")
        #expect(failed.contains("a setup problem, not an outage") && failed.contains("git remote set-url origin"), "\(setup.stdout)")
        // Nothing listens on the port: the network's problem, not the setup's.
        let closed = try Blackhole()
        let port = closed.port
        closed.close()
        try await fixture.run(["remote", "set-url", "origin", GitArgument("git://127.0.0.1:\(port)/remote.git")])
        let offline = syncctlProcess(["doctor", "-C", fixture.path])
        #expect(try await offline.exit() == .exited(0), "\(offline.stdout)")
        #expect(line(offline, "WARN remote").contains("not reachable"), "\(offline.stdout)")
    }

    @Test("a conflict syncd reported in state.json is a FAIL with what to do; merged by hand, it is OK")
    func conflictInState() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.write(fixture.file("README"), "local\n")
        try await fixture.run(["add", "README"])
        try await fixture.run(["commit", "-q", "-m", "local"])
        try Files.mkdirs(fixture.path + "/.git/syncd")
        let state = #"{"version":1,"phase":"stopped","remote":"origin","conflict_branch":"syncd/conflict/h/20261203T100000-000Z","conflict_files":["README"]}"#
        try Files.write(fixture.path + "/.git/syncd/state.json", state + "\n")
        let conflict = syncctlProcess(["doctor", "-C", fixture.path])
        #expect(try await conflict.exit() == .exited(1))
        let failed = line(conflict, "FAIL conflict")
        #expect(failed.contains("README") && failed.contains("git merge origin/main") && failed.contains("syncd/conflict/h/"), "\(conflict.stdout)")
        // The remote's branch is in the local one: merged, pushed at syncd's next sync.
        try await fixture.run(["update-ref", "refs/remotes/origin/main", "HEAD"])
        let merged = syncctlProcess(["doctor", "-C", fixture.path])
        #expect(try await merged.exit() == .exited(0), "\(merged.stdout)")
        #expect(line(merged, "OK   conflict").contains("merged here"))
    }
}

/// The command line: `-C` before the command, `--version`, usage errors.
@Suite("syncctl and syncd command lines (real processes)")
struct ControlCommandLineTests {
    @Test("syncctl -C DIR COMMAND works like git's, in every spelling; a missing DIR is named")
    func directoryBeforeCommand() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        for spelling in [["-C", fixture.path], ["-C" + fixture.path], ["--workspace", fixture.path], ["--workspace=\(fixture.path)"]] {
            let status = syncctlProcess(spelling + ["status", "--json"], in: "/")
            #expect(try await status.exit() == .exited(3), "\(spelling): \(status.stderr)")
            let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
            #expect(object?["running"] as? Bool == false)
            #expect(object?["health"] as? String == "not-running")
        }
        // As git: the second -C is relative to the first; the command's own -C still works.
        let parent = URL(fileURLWithPath: fixture.path).deletingLastPathComponent().path
        let name = URL(fileURLWithPath: fixture.path).lastPathComponent
        let relative = syncctlProcess(["-C", parent, "-C", name, "doctor"], in: "/")
        #expect(try await relative.exit() == .exited(0), "\(relative.stdout)\(relative.stderr)")
        #expect(relative.stdout.contains(fixture.path))
        let both = syncctlProcess(["-C", parent, "status", "-C", name], in: "/")
        #expect(try await both.exit() == .exited(3), "\(both.stderr)")
        #expect(both.stdout.contains("syncd for \(fixture.path): not running"))
        let missing = syncctlProcess(["-C", fixture.path + "/nothing-here", "status"])
        #expect(try await missing.exit() == .exited(3))
        #expect(missing.stderr.contains(fixture.path + "/nothing-here") && missing.stderr.contains("cannot change to"))
    }

    @Test("--version on both commands, from the one version constant")
    func version() async throws {
        let syncctlVersion = syncctlProcess(["--version"])
        #expect(try await syncctlVersion.exit() == .exited(0))
        #expect(syncctlVersion.stdout == "syncctl \(SyncdVersion.current)\n")
        let syncdVersion = ProcessHarness(ProcessHarness.product("syncd"), ["--version"])
        #expect(try await syncdVersion.exit() == .exited(0))
        #expect(syncdVersion.stdout == "syncd \(SyncdVersion.current)\n")
    }

    @Test("a usage error inside a command prints that command's usage, not the top-level one (exit 64)")
    func subcommandUsage() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let cases: [([String], String)] = [
            (["pause", "-C", fixture.path, "--for", "banana"], "--for banana"),
            (["sync", "-C", fixture.path, "--timeout", "soon"], "--timeout soon"),
            (["as-writer", "-C", fixture.path, "--"], "name the command"),
            (["conflicts", "-C", fixture.path, "--network-timeout", "0s"], "--network-timeout 0s"),
        ]
        for (arguments, message) in cases {
            let process = syncctlProcess(arguments)
            #expect(try await process.exit() == .exited(64), "\(arguments): \(process.stderr)")
            #expect(process.stderr.contains(message), "\(arguments): \(process.stderr)")
            #expect(process.stderr.contains("Usage: syncctl \(arguments[0])"), "\(arguments): \(process.stderr)")
            #expect(!process.stderr.contains("SUBCOMMANDS") && !process.stderr.contains("<subcommand>"), "\(arguments): \(process.stderr)")
        }
    }
}
