/// How healthy a workspace's syncd is, for monitoring: `syncctl status` exits with `code`
/// (README, "syncctl status for monitoring"). The worst finding wins.
public struct StatusHealth: Sendable, Equatable {
    public enum Level: Int32, Sendable, Comparable {
        /// Committing and, with a remote, syncing.
        case healthy = 0
        /// Working, but not everything reaches the remote or gets committed by itself: offline, a
        /// conflict, paused, an emergency stop, directories left unwatched by the watch limit,
        /// directories or files syncd cannot read (no permission),
        /// commits waiting for a person's git operation (a rebase, a merge, unmerged paths, a
        /// detached HEAD), a git call running far longer than expected.
        case degraded = 1
        /// Needs a person: commits failing, the circuit breaker open, a setup problem with the
        /// remote (host key, credentials, URL).
        case failing = 2
        /// No syncd runs for the workspace.
        case notRunning = 3

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }

        public var name: String {
            switch self {
            case .healthy: "healthy"
            case .degraded: "degraded"
            case .failing: "failing"
            case .notRunning: "not-running"
            }
        }
    }

    public var level: Level
    /// What made it so, in a few words each ("offline", "paused", …); empty when healthy.
    public var reasons: [String]

    public var code: Int32 { level.rawValue }

    /// Deferrals that last until a person acts.
    static let personDeferrals: Set<String> = Set([
        Deferral.Code.rebase, .merge, .cherryPick, .revert, .bisect, .unmerged, .detachedHead,
    ].map(\.rawValue))

    /// Judges `state` (state.json, with the control files applied when syncd is not running).
    public static func judge(running: Bool, state: [String: JSONValue]) -> StatusHealth {
        guard running else { return StatusHealth(level: .notRunning, reasons: []) }
        var failing: [String] = []
        var degraded: [String] = []
        let phase = state["phase"]?.string ?? ""
        if phase == StatusSnapshot.Phase.failing.rawValue { failing.append("commits failing") }
        if phase == StatusSnapshot.Phase.breakerOpen.rawValue { failing.append("circuit breaker open") }
        let offline = !(state["offline_since"]?.string ?? "").isEmpty
        if state["sync_problem"]?.string == RemoteProblem.Kind.setup.rawValue {
            failing.append("setup problem with the remote")
        } else if offline {
            degraded.append("offline")
        }
        if !(state["conflict_branch"]?.string ?? "").isEmpty { degraded.append("conflict") }
        if state["emergency_stop"]?.bool == true || phase == StatusSnapshot.Phase.emergencyStop.rawValue {
            degraded.append("emergency stop")
        }
        if state["paused"]?.bool == true || phase == StatusSnapshot.Phase.paused.rawValue { degraded.append("paused") }
        let unreadableDirectories = state["unreadable_directories"]?.number ?? 0
        if (state["unwatched_directories"]?.number ?? 0) > unreadableDirectories { degraded.append("directories not watched") }
        if unreadableDirectories + (state["unreadable_files"]?.number ?? 0) > 0 { degraded.append("paths not readable") }
        if !(state["slow_git"]?.string ?? "").isEmpty { degraded.append("slow git call") }
        if !(state["backup_offsite_error"]?.string ?? "").isEmpty { degraded.append("off-site backup failing") }
        // Waiting for a person, not for a lock held a moment (those clear by themselves).
        let code = state["reason_code"]?.string ?? ""
        if phase == StatusSnapshot.Phase.deferred.rawValue, Self.personDeferrals.contains(code) {
            degraded.append("waiting: \(code)")
        }
        if !failing.isEmpty { return StatusHealth(level: .failing, reasons: failing + degraded) }
        if !degraded.isEmpty { return StatusHealth(level: .degraded, reasons: degraded) }
        return StatusHealth(level: .healthy, reasons: [])
    }
}
