import SyncSystem

/// The message for ENOSPC from inotify_add_watch: the limit in force, how many directories this
/// workspace needs, and the exact sysctl line that fixes it.
public enum WatchLimitMessage {
    static func text(
        workspace: String,
        limits: InotifyLimits,
        watched: Int,
        needed: Int,
        rescanInterval: Duration
    ) -> String {
        let limitText = limits.effectiveMaxWatches.map(String.init) ?? "unknown"
        var text =
            "inotify watch limit reached in \(workspace): the limit is \(limitText) watches per user "
            + "(fs.inotify.max_user_watches=\(limits.maxUserWatches.map(String.init) ?? "unknown")"
        if namespaceBinds(limits), let namespace = limits.namespaceMaxWatches {
            text += ", user.max_inotify_watches=\(namespace) in this user namespace"
        }
        text +=
            "), shared with every other program of this user; this workspace needs \(needed) directories watched "
            + "and \(watched) are. Fix: " + fix(limits: limits, needed: needed) + " "
        text +=
            "Until then syncd rescans the \(needed - watched) unwatched directories every "
            + "\(rescanInterval.components.seconds)s, so no change is lost, only seen later."
        return text
    }

    static func namespaceBinds(_ limits: InotifyLimits) -> Bool {
        (limits.namespaceMaxWatches ?? Int.max) < (limits.maxUserWatches ?? Int.max)
    }

    /// The sysctl line that gives `needed` watches room: twice the workspace plus what other
    /// programs of the user already hold.
    public static func fix(limits: InotifyLimits, needed: Int) -> String {
        let suggested = max((limits.effectiveMaxWatches ?? 8192) * 2, needed * 2 + 65_536)
        if namespaceBinds(limits) {
            return "sysctl user.max_inotify_watches=\(suggested) in the user namespace (container) syncd runs in."
        }
        return "sudo sysctl fs.inotify.max_user_watches=\(suggested) (persist it with: "
            + "echo fs.inotify.max_user_watches=\(suggested) | sudo tee /etc/sysctl.d/90-syncd.conf)."
    }
}
