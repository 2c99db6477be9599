import SyncSystem

/// The message for ENOSPC from inotify_add_watch: the limit in force, how many directories this
/// workspace needs, and the exact sysctl line that fixes it.
enum WatchLimitMessage {
    static func text(
        workspace: String,
        limits: InotifyLimits,
        watched: Int,
        needed: Int,
        rescanInterval: Duration
    ) -> String {
        let limitText = limits.effectiveMaxWatches.map(String.init) ?? "unknown"
        // Room for this workspace twice over plus what other programs of this user already hold.
        let suggested = max((limits.effectiveMaxWatches ?? 8192) * 2, needed * 2 + 65_536)
        let namespaceBinds = (limits.namespaceMaxWatches ?? Int.max) < (limits.maxUserWatches ?? Int.max)
        var text =
            "inotify watch limit reached in \(workspace): the limit is \(limitText) watches per user "
            + "(fs.inotify.max_user_watches=\(limits.maxUserWatches.map(String.init) ?? "unknown")"
        if namespaceBinds, let namespace = limits.namespaceMaxWatches {
            text += ", user.max_inotify_watches=\(namespace) in this user namespace"
        }
        text +=
            "), shared with every other program of this user; this workspace needs \(needed) directories watched "
            + "and \(watched) are. Fix: "
        if namespaceBinds {
            text += "sysctl user.max_inotify_watches=\(suggested) in the user namespace (container) syncd runs in. "
        } else {
            text +=
                "sudo sysctl fs.inotify.max_user_watches=\(suggested) (persist it with: "
                + "echo fs.inotify.max_user_watches=\(suggested) | sudo tee /etc/sysctl.d/90-syncd.conf). "
        }
        text +=
            "Until then syncd rescans the \(needed - watched) unwatched directories every "
            + "\(rescanInterval.components.seconds)s, so no change is lost, only seen later."
        return text
    }
}
