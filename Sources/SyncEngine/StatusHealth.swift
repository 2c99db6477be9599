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
    public static func judge(running: Bool, state: StatusSnapshot) -> StatusHealth {
        guard running else { return StatusHealth(level: .notRunning, reasons: []) }
        var failing: [String] = []
        var degraded: [String] = []
        if state.phase == .failing { failing.append("commits failing") }
        if state.phase == .breakerOpen { failing.append("circuit breaker open") }
        if state.syncProblemKind == RemoteProblem.Kind.setup.rawValue {
            failing.append("setup problem with the remote")
        } else if !state.offlineSince.isEmpty {
            degraded.append("offline")
        }
        if !state.conflictBranch.isEmpty { degraded.append("conflict") }
        if state.emergencyStop || state.phase == .emergencyStop { degraded.append("emergency stop") }
        if state.paused || state.phase == .paused { degraded.append("paused") }
        if state.unwatchedDirectories > state.unreadableDirectories { degraded.append("directories not watched") }
        if state.unreadableDirectories + state.unreadableFiles > 0 { degraded.append("paths not readable") }
        if !state.slowGit.isEmpty { degraded.append("slow git call") }
        if !state.backupOffsiteError.isEmpty { degraded.append("off-site backup failing") }
        // Waiting for a person, not for a lock held a moment (those clear by themselves).
        if state.phase == .deferred, Self.personDeferrals.contains(state.reasonCode) {
            degraded.append("waiting: \(state.reasonCode)")
        }
        if !failing.isEmpty { return StatusHealth(level: .failing, reasons: failing + degraded) }
        if !degraded.isEmpty { return StatusHealth(level: .degraded, reasons: degraded) }
        return StatusHealth(level: .healthy, reasons: [])
    }
}
