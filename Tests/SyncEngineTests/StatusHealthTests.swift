import FoundationEssentials
import SyncCore
import Testing

@testable import SyncEngine

@Suite("Status health, incidents and remote problems")
struct StatusHealthTests {
    static let idle: [String: JSONValue] = [
        "phase": .string("idle"), "paused": .bool(false), "emergency_stop": .bool(false), "offline_since": .string(""),
        "sync_problem": .string(""), "conflict_branch": .string(""), "unwatched_directories": .number(0),
    ]

    /// The state.json of `idle` with `changes`, read as syncctl reads it (the keys left out keep
    /// their defaults, as in a file from an older syncd).
    static func with(_ changes: [String: JSONValue]) throws -> StatusSnapshot {
        let object = idle.merging(changes) { $1 }
        return try JSONDecoder().decode(StatusSnapshot.self, from: JSONEncoder().encode(object))
    }

    @Test("exit codes for monitoring: 0 healthy, 1 degraded, 2 failing, 3 not running; the worst finding wins")
    func levels() throws {
        let idle = try Self.with([:])
        #expect(StatusHealth.judge(running: true, state: idle) == StatusHealth(level: .healthy, reasons: []))
        #expect(StatusHealth.judge(running: true, state: idle).code == 0)
        #expect(StatusHealth.judge(running: false, state: idle).code == 3)
        // A stale state.json of a stopped syncd does not hide that none runs.
        let stale = try Self.with(["phase": .string("failing")])
        #expect(StatusHealth.judge(running: false, state: stale).code == 3)

        let degraded: [([String: JSONValue], String)] = [
            (["offline_since": .string("2026-12-03T10:00:00.000Z"), "sync_problem": .string("offline")], "offline"),
            (["conflict_branch": .string("syncd/conflict/h/20261203T100000-000Z")], "conflict"),
            (["paused": .bool(true), "phase": .string("paused")], "paused"),
            (["emergency_stop": .bool(true), "phase": .string("emergency-stop")], "emergency stop"),
            (["unwatched_directories": .number(3)], "directories not watched"),
            // Unreadable directories count as unwatched, but they are not the watch limit.
            (["unwatched_directories": .number(1), "unreadable_directories": .number(1)], "paths not readable"),
            (["unreadable_files": .number(1)], "paths not readable"),
            (["slow_git": .string("git update-index --add --remove --replace -z --stdin")], "slow git call"),
            (["phase": .string("deferred"), "reason_code": .string("rebase-in-progress")], "waiting: rebase-in-progress"),
        ]
        for (changes, reason) in degraded {
            let health = StatusHealth.judge(running: true, state: try Self.with(changes))
            #expect(health.code == 1, "\(changes)")
            #expect(health.reasons == [reason])
        }

        let failing: [([String: JSONValue], String)] = [
            (["phase": .string("failing")], "commits failing"),
            (["phase": .string("breaker-open")], "circuit breaker open"),
            (["offline_since": .string("2026-12-03T10:00:00.000Z"), "sync_problem": .string("setup")], "setup problem with the remote"),
        ]
        for (changes, reason) in failing {
            let health = StatusHealth.judge(running: true, state: try Self.with(changes))
            #expect(health.code == 2, "\(changes)")
            #expect(health.reasons == [reason])
        }
        // A lock held a moment is not worth a page.
        for code in ["writers-active", "index-locked"] {
            let waiting = try Self.with(["phase": .string("deferred"), "reason_code": .string(code)])
            #expect(StatusHealth.judge(running: true, state: waiting).code == 0)
        }
        // A setup problem is never also called offline; a paused, failing syncd is failing.
        let both = StatusHealth.judge(running: true, state: try Self.with([
            "phase": .string("failing"), "paused": .bool(true),
            "offline_since": .string("2026-12-03T10:00:00.000Z"), "sync_problem": .string("setup"),
        ]))
        #expect(both.level == .failing)
        #expect(both.reasons == ["commits failing", "setup problem with the remote", "paused"])
    }

    static func offline(_ kind: RemoteProblem.Kind) -> StatusSnapshot {
        var status = StatusSnapshot()
        status.phase = .idle
        status.remote = "origin"
        status.offlineSince = "2026-12-03T10:00:00.000Z"
        status.syncError = "fatal: '/tmp/x' does not appear to be a git repository"
        status.syncProblemKind = kind.rawValue
        return status
    }

    @Test("a setup problem alerts at once; being offline alerts only after alertAfter; each once per incident")
    func setupAlertsAtOnce() {
        let start = ContinuousClock.now
        let alertAfter = Duration.seconds(600)
        var incidents = Incidents()
        let setup = incidents.update(Self.offline(.setup), now: start, alertAfter: alertAfter)
        #expect(setup.map(\.name) == ["sync-setup"])
        #expect(setup.first?.message.contains("does not appear to be a git repository") == true)
        #expect(incidents.update(Self.offline(.setup), now: start.advanced(by: .seconds(1)), alertAfter: alertAfter).isEmpty)

        var waiting = Incidents()
        #expect(waiting.update(Self.offline(.offline), now: start, alertAfter: alertAfter).isEmpty)
        #expect(waiting.nextCheck(now: start, alertAfter: alertAfter) == start.advanced(by: alertAfter))
        #expect(waiting.update(Self.offline(.offline), now: start.advanced(by: .seconds(599)), alertAfter: alertAfter).isEmpty)
        #expect(waiting.update(Self.offline(.offline), now: start.advanced(by: alertAfter), alertAfter: alertAfter).map(\.name) == ["push-failing"])
    }

    @Test("metrics: a setup problem is not counted as offline")
    func metricsSetupVersusOffline() {
        let setup = Metrics.text(Self.offline(.setup))
        #expect(setup.contains("syncd_sync_setup_problem{workspace=\"\"} 1"))
        #expect(setup.contains("syncd_offline{workspace=\"\"} 0"))
        let offline = Metrics.text(Self.offline(.offline))
        #expect(offline.contains("syncd_sync_setup_problem{workspace=\"\"} 0"))
        #expect(offline.contains("syncd_offline{workspace=\"\"} 1"))
    }

    @Test("git's words sorted: a path that is no repository is setup, a refused connection is offline; one line always")
    func remoteProblems() {
        let notRepository = RemoteProblem(
            gitOutput: "fatal: '/tmp/nothing' does not appear to be a git repository\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n",
            exitCode: 128, remote: "origin", operation: "fetch")
        #expect(notRepository.kind == .setup)
        #expect(notRepository.message == "fatal: '/tmp/nothing' does not appear to be a git repository")
        #expect(notRepository.fix.contains("git remote set-url origin"))
        let refused = RemoteProblem(
            gitOutput: "ssh: connect to host 127.0.0.1 port 1: Connection refused\r\nfatal: Could not read from remote repository.\n",
            exitCode: 128, remote: "origin", operation: "fetch")
        #expect(refused.kind == .offline)
        #expect(refused.fix.isEmpty)
        #expect(!refused.message.contains("\n") && !refused.message.contains("\r"))
        let hostKey = RemoteProblem(gitOutput: "Host key verification failed.\r\nfatal: Could not read from remote repository.\n", exitCode: 128, remote: "origin", operation: "push")
        #expect(hostKey.kind == .setup)
        #expect(hostKey.fix.contains("ssh-keyscan"))
    }

    @Test("a conflict branch's age comes from the time in its name")
    func conflictBranchTime() throws {
        let name = "syncd/conflict/host-1/" + Syncer.compactTime()
        let parsed = try #require(Syncer.conflictBranchTime(name))
        #expect(abs(parsed - ControlFile.now()) < 5)
        #expect(Syncer.conflictBranchTime("syncd/conflict/h/20260101T000000-250Z") == 1_767_225_600.25)
        #expect(Syncer.conflictBranchTime("syncd/conflict/h/20260101T000000Z") == 1_767_225_600)
        #expect(Syncer.conflictBranchTime("syncd/conflict/h/not-a-time") == nil)
        #expect(Syncer.conflictBranchTime("syncd/conflict/h/2026XX01T000000-000Z") == nil)
    }
}
