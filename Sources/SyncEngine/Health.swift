import Glibc
import Logging
import Subprocess
import SyncCore
import SyncSystem

/// Incidents that deserve a person's attention, found in the status snapshot, and the alert
/// command run once per incident (not in a storm): again only after the incident has cleared.
struct Incidents {
    struct Incident: Equatable {
        var name: String
        var message: String
    }

    private var active: Set<String> = []
    private var firstSeen: [String: ContinuousClock.Instant] = [:]

    /// When a delayed incident (seen, not yet alerted) becomes alert-worthy, if one is waiting.
    func nextCheck(now: ContinuousClock.Instant, alertAfter: Duration) -> ContinuousClock.Instant? {
        firstSeen.filter { !active.contains($0.key) }.map { $0.value.advanced(by: alertAfter) }.filter { $0 > now }.min()
    }

    /// The incidents that just became alert-worthy (each returned once per occurrence).
    mutating func update(_ status: StatusSnapshot, now: ContinuousClock.Instant, alertAfter: Duration) -> [Incident] {
        var current: [Incident] = []
        if !status.offlineSince.isEmpty {
            if status.syncProblemKind == RemoteProblem.Kind.setup.rawValue {
                // Waiting never fixes a host key, a credential or a URL: a person must, now.
                current.append(Incident(name: "sync-setup", message: "cannot sync with \(status.remote) since \(status.offlineSince), a setup problem that waiting will not fix: \(status.syncError); \(status.unpushedCommits) commit(s) not pushed"))
            } else {
                current.append(Incident(name: "push-failing", message: "cannot sync with \(status.remote) since \(status.offlineSince): \(status.syncError); \(status.unpushedCommits) commit(s) not pushed"))
            }
        }
        if status.phase == .failing {
            current.append(Incident(name: "commit-failing", message: "commits are failing: \(status.lastError)"))
        }
        if !status.conflictBranch.isEmpty {
            current.append(Incident(name: "conflict", message: "conflict with \(status.remote) in \(status.conflictFiles.joined(separator: ", ")); the local side is on \(status.conflictBranch)"))
        }
        if status.phase == .breakerOpen {
            current.append(Incident(name: "circuit-breaker", message: status.reason))
        }
        let overLimit = status.unwatchedDirectories - status.unreadableDirectories
        if overLimit > 0 {
            current.append(Incident(name: "watch-limit", message: "\(overLimit) directories are not watched (inotify watch limit); they are rescanned periodically"))
        }
        if status.unreadableDirectories + status.unreadableFiles > 0 {
            let paths = (status.unreadableDirectoryPaths + status.unreadableFilePaths).prefix(5).joined(separator: ", ")
            current.append(Incident(name: "unreadable", message: "syncd cannot read \(status.unreadableDirectories) director(ies) and \(status.unreadableFiles) file(s) (\(paths)): they are not committed until their permissions let it"))
        }
        if status.lastReconcileFound > 0 {
            current.append(Incident(name: "missed-changes", message: "the periodic reconcile found \(status.lastReconcileFound) changed path(s) no event had reported (committed now); the file system may not deliver inotify events for all of the tree (a network or bind mount, mmap writes)"))
        }
        if !status.backupOffsiteError.isEmpty {
            current.append(Incident(name: "backup-offsite", message: status.backupOffsiteError))
        }
        if status.emergencyStop {
            current.append(Incident(name: "emergency-stop", message: "emergency stop: \(status.emergencyReason)"))
        }
        let names = Set(current.map(\.name))
        for gone in active.subtracting(names) { active.remove(gone) }
        for name in Set(firstSeen.keys).subtracting(names) { firstSeen[name] = nil }
        var fire: [Incident] = []
        for incident in current where !active.contains(incident.name) {
            let since = firstSeen[incident.name] ?? now
            firstSeen[incident.name] = since
            // Failures that may heal by themselves wait `alertAfter`; the others alert at once.
            // A path unreadable for a moment (a chmod 000 while a program rewrites it) is not one.
            let delayed = ["push-failing", "commit-failing", "unreadable", "backup-offsite"].contains(incident.name)
            if !delayed || now - since >= alertAfter {
                active.insert(incident.name)
                fire.append(incident)
            }
        }
        return fire
    }
}

enum AlertHook {
    /// Runs `command` with `/bin/sh -c`, the JSON description on stdin and in SYNCD_ALERT, and
    /// a 60 s limit. Never throws: an alert that fails is logged.
    static func run(_ command: String, incident: Incidents.Incident, workspace: String, log: Logger) async {
        var line = JSONLine()
        line.add("incident", incident.name)
        line.add("message", incident.message)
        line.add("workspace", workspace)
        line.add("host", ProcessTable.hostName)
        line.add("time", WallClock.rfc3339())
        let json = line.text
        do {
            let result = try await withTimeout(.seconds(60)) { () async throws -> Int32 in
                let outcome = try await Subprocess.run(
                    .path("/bin/sh"), arguments: ["-c", command],
                    environment: .inherit.updating(["SYNCD_ALERT": json, "SYNCD_INCIDENT": incident.name]),
                    input: .array(Array((json + "\n").utf8)), output: .discarded, error: .string(limit: 4096))
                if case .exited(let code) = outcome.terminationStatus { return code }
                return -1
            }
            if result != 0 {
                log.warning("the alert command for \(incident.name) \(result.map { "exited \($0)" } ?? "timed out after 60 s")")
            }
        } catch {
            log.warning("cannot run the alert command for \(incident.name): \(error)")
        }
    }
}

enum Metrics {
    /// The Prometheus text exposition of `status`.
    static func text(_ status: StatusSnapshot) -> String {
        let label = "{workspace=\"\(status.workspace.replacing("\\", with: "\\\\").replacing("\"", with: "\\\""))\"}"
        let setup = !status.offlineSince.isEmpty && status.syncProblemKind == RemoteProblem.Kind.setup.rawValue
        let offline = !status.offlineSince.isEmpty && !setup
        func seconds(_ rfc3339: String) -> String {
            WallClock.seconds(rfc3339: rfc3339).map { String(Int($0)) } ?? "0"
        }
        let rows: [(String, String, String, String)] = [
            ("syncd_commits_total", "counter", "Commits made since start.", String(status.commits)),
            ("syncd_failures_total", "counter", "Batches that failed since start.", String(status.failures)),
            ("syncd_breaker_trips_total", "counter", "Circuit breaker openings since start.", String(status.breakerTrips)),
            ("syncd_last_commit_timestamp_seconds", "gauge", "Time of the last commit (0: none since start).", seconds(status.lastCommitAt)),
            ("syncd_last_push_timestamp_seconds", "gauge", "Time of the last push (0: none since start).", seconds(status.lastPushAt)),
            ("syncd_pending_paths", "gauge", "Changed paths not committed yet.", String(status.pendingPaths + status.unreadableFiles)),
            ("syncd_unpushed_commits", "gauge", "Commits the remote does not have.", String(status.unpushedCommits)),
            ("syncd_offline", "gauge", "1 while the remote cannot be reached (the network or the server is down).", offline ? "1" : "0"),
            ("syncd_sync_setup_problem", "gauge", "1 while a setup problem (host key, credentials, URL) stops syncing.", setup ? "1" : "0"),
            ("syncd_conflict", "gauge", "1 while the histories conflict.", status.conflictBranch.isEmpty ? "0" : "1"),
            ("syncd_paused", "gauge", "1 while paused.", status.paused ? "1" : "0"),
            ("syncd_emergency_stop", "gauge", "1 while an emergency stop holds.", status.emergencyStop ? "1" : "0"),
            ("syncd_watched_directories", "gauge", "Directories with an inotify watch.", String(status.watchedDirectories)),
            ("syncd_unwatched_directories", "gauge", "Directories without a watch (the watch limit, or unreadable).", String(status.unwatchedDirectories)),
            ("syncd_unreadable_paths", "gauge", "Directories and files syncd cannot read (not committed).", String(status.unreadableDirectories + status.unreadableFiles)),
            ("syncd_reconcile_found_total", "counter", "Changed paths the periodic reconcile found that no event had reported (should stay 0).", String(status.reconcileFound)),
            ("syncd_recoveries_total", "counter", "Problems found and repaired since start (a deleted state directory, a stale lock, …).", String(status.recoveries)),
            ("syncd_backup_offsite_failing", "gauge", "1 while copying backups to syncd.backupDir fails.", status.backupOffsiteError.isEmpty ? "0" : "1"),
        ]
        return rows.map { name, type, help, value in "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name)\(label) \(value)" }
            .joined(separator: "\n") + "\n"
    }
}
