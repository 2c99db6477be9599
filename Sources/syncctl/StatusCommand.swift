import ArgumentParser
import FoundationEssentials
import SyncCore
import SyncEngine
import SyncSystem

/// `syncctl status [--json]`: state.json as syncd last wrote it (with the control files on disk
/// when it does not run), the lock's holders, and the health its exit status reports.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What syncd is doing (for people, or --json for programs); the exit status says how healthy it is.",
        discussion: """
            Exit status, for monitoring: 0 healthy; 1 degraded (offline, a conflict, paused, an emergency stop, \
            directories the watch limit left unwatched, directories or files syncd cannot read, commits waiting for a person's rebase, merge, unmerged paths \
            or detached HEAD); 2 failing (commits failing, the circuit breaker open, \
            a setup problem with the remote: host key, credentials, URL); 3 no syncd runs for the workspace \
            (or there is no workspace there). With --json, `health` and `health_reasons` say the same.
            """)
    @OptionGroup var options: WorkspaceOptions
    @Flag(help: "Print one JSON object: state.json plus running, pid, ages, lock holders and health.")
    var json = false

    func run() async throws {
        let client: ControlClient
        do {
            client = try await ControlClient.open(at: options.workspace)
        } catch let error as SyncError {
            throw Failure(error.description, code: StatusHealth.Level.notRunning.rawValue)
        }
        let pid = client.runningPid()
        let saved = client.state()
        var state = saved ?? StatusSnapshot()
        if pid == nil {
            // state.json is from the last run; the control files on disk are what applies next.
            let pause: DaemonPause? = if case .value(let value) = ControlFile.read(DaemonPause.self, at: client.lockDirectory.daemonPause) { value } else { nil }
            let stop: SyncEngine.EmergencyStop? = if case .value(let value) = ControlFile.read(SyncEngine.EmergencyStop.self, at: client.lockDirectory.emergencyStop) { value } else { nil }
            state.paused = pause != nil || Syscall.exists(client.lockDirectory.daemonPause)
            state.pausedReason = pause?.reason ?? ""
            state.pausedBy = pause?.by ?? ""
            state.pausedUntil = pause?.until.map { WallClock.rfc3339(seconds: $0) } ?? ""
            state.emergencyStop = stop != nil || Syscall.exists(client.lockDirectory.emergencyStop)
            state.emergencyReason = stop?.reason ?? ""
            state.emergencySince = stop.map { WallClock.rfc3339(seconds: $0.since) } ?? ""
            state.reason = ""
        }
        let holders = ProcessTable.processesHolding(client.lockDirectory.syncLock).filter { $0 != pid }
        let lease = WriterTurn.activeLease(client.lockDirectory)
        let health = StatusHealth.judge(running: pid != nil, state: state)
        if json {
            let report = StatusReport(
                state: state, pid: pid, workspace: client.repository.workTreeDisplay,
                phase: pid == nil ? "not-running" : saved == nil ? "unknown" : state.phase.rawValue,
                health: health, syncLockHolders: holders, writerLease: lease, lastCommitAge: age(state.lastCommitAt))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            say(String(decoding: try encoder.encode(report), as: UTF8.self))
            throw ExitCode(health.code)
        }
        let phase = saved?.phase.rawValue ?? "unknown"
        say("syncd for \(client.repository.workTreeDisplay): " + (pid.map { "running (pid \($0)), \(phase)" } ?? "not running"))
        if !state.reason.isEmpty { say("  why: \(state.reason)") }
        if !state.lastCommit.isEmpty {
            let when = age(state.lastCommitAt) ?? ""
            say("  last commit: \(state.lastCommit.prefix(12)) \(when) (batch \(state.lastCommitBatch))")
        } else {
            say("  last commit: none since start")
        }
        say("  health: \(health.level.name)" + (health.reasons.isEmpty ? "" : " (\(health.reasons.joined(separator: ", ")))"))
        say("  pending: \(state.pendingPathsTotal) path(s)"
            + (state.pendingScan ? ", and a full scan (changes made while syncd was not running, or events lost) for the next batch" : ""))
        for line in CoverageLines.lines(state) { say(line) }
        if !state.backupOffsiteError.isEmpty { say("  OFF-SITE BACKUP FAILING: \(state.backupOffsiteError)") }
        if !state.slowGit.isEmpty {
            let since = state.slowGitSince
            let path = state.slowGitPath
            say("  SLOW GIT: `\(state.slowGit)`" + (path.isEmpty ? "" : " on \(path)") + " running since \(since)" + (age(since).map { " (\($0))" } ?? "")
                + ": syncd waits for it (a clean filter or hook that never returns? a slow disk?)")
        }
        if state.paused {
            let until = state.pausedUntil
            say("  PAUSED by \(state.pausedBy)\(until.isEmpty ? "" : " until \(until)"): \(state.pausedReason)")
        }
        if state.emergencyStop {
            say("  EMERGENCY STOP since \(state.emergencySince): \(state.emergencyReason) — clear with `syncctl resume --clear-emergency`")
        }
        if !holders.isEmpty { say("  writers holding the sync lock: " + holders.map { "pid \($0)" }.joined(separator: ", ")) }
        if let lease { say("  writers asked to pause until \(WallClock.rfc3339(seconds: lease.expiresAt)): \(lease.reason)") }
        if !state.remote.isEmpty {
            let remote = state.remote
            let last = age(state.lastSyncAt).map { "last synced \($0)" } ?? "not synced yet"
            say("  remote: \(remote), \(last), \(state.unpushedCommits) commit(s) not pushed")
            if !state.offlineSince.isEmpty {
                let since = state.offlineSince
                let error = state.syncError
                if state.syncProblemKind == RemoteProblem.Kind.setup.rawValue {
                    // Not an outage: waiting does not fix it, a person must.
                    let fix = state.syncFix
                    let suffix = " (setup problem: \(fix))"
                    let message = !fix.isEmpty && error.hasSuffix(suffix) ? String(error.dropLast(suffix.count)) : error
                    say("  SETUP PROBLEM with \(remote) since \(since) (not offline: retrying will not fix it): \(message)")
                    if !fix.isEmpty { say("    to fix: \(fix)") }
                } else {
                    say("  OFFLINE since \(since): \(error)")
                }
            }
            if !state.conflictBranch.isEmpty {
                let files = state.conflictFiles.joined(separator: ", ")
                say("  CONFLICT with \(remote) in \(files): the local side is on \(state.conflictBranch); merge \(remote) by hand, fix the files, commit")
            }
        }
        if !state.lastError.isEmpty {
            say("  last error (\(state.lastErrorAt)): \(state.lastError)")
        }
        throw ExitCode(health.code)
    }

    func age(_ rfc3339: String) -> String? {
        guard let then = WallClock.seconds(rfc3339: rfc3339) else { return nil }
        let seconds = max(0, Int(ControlFile.now() - then))
        if seconds < 120 { return "\(seconds) s ago" }
        if seconds < 7200 { return "\(seconds / 60) min ago" }
        return "\(seconds / 3600) h ago"
    }
}

/// `syncctl status --json`: every key of state.json, with `pid`, `workspace` and `phase` as
/// syncctl sees them (`pid` null and `phase` "not-running" when no syncd runs), and what syncctl
/// adds: `running`, `health`, `health_reasons`, `sync_lock_holders`, `writer_lease`,
/// `last_commit_age` (when there is a last commit).
struct StatusReport: Encodable {
    var state: StatusSnapshot
    var pid: Int32?
    var workspace: String
    var phase: String
    var health: StatusHealth
    var syncLockHolders: [Int32]
    var writerLease: WriterLease?
    var lastCommitAge: String?

    struct Lease: Encodable {
        var pid: Int32
        var reason: String
        var expiresAt: String
        enum CodingKeys: String, CodingKey {
            case pid, reason
            case expiresAt = "expires_at"
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: StatusSnapshot.Key.self)
        try state.encodeFields(into: &container, omitting: ["pid", "workspace", "phase"])
        if let pid { try container.encode(pid, forKey: "pid") } else { try container.encodeNil(forKey: "pid") }
        try container.encode(workspace, forKey: "workspace")
        try container.encode(phase, forKey: "phase")
        try container.encode(pid != nil, forKey: "running")
        try container.encode(health.level.name, forKey: "health")
        try container.encode(health.reasons, forKey: "health_reasons")
        try container.encode(syncLockHolders, forKey: "sync_lock_holders")
        if let writerLease {
            let lease = Lease(pid: writerLease.holder.pid, reason: writerLease.reason, expiresAt: WallClock.rfc3339(seconds: writerLease.expiresAt))
            try container.encode(lease, forKey: "writer_lease")
        } else {
            try container.encodeNil(forKey: "writer_lease")
        }
        try container.encodeIfPresent(lastCommitAge, forKey: "last_commit_age")
    }
}
