import SyncCore

/// The inotify limits that apply to this process, read from /proc (man inotify(7) "/proc interfaces").
public struct InotifyLimits: Sendable, Equatable {
    /// fs.inotify.max_user_watches (the sysctl an administrator raises).
    public var maxUserWatches: Int?
    /// user.max_inotify_watches of this user namespace (lower inside containers and test namespaces).
    public var namespaceMaxWatches: Int?
    /// fs.inotify.max_queued_events: events the kernel queues per instance before IN_Q_OVERFLOW.
    public var maxQueuedEvents: Int?

    public init(maxUserWatches: Int?, namespaceMaxWatches: Int?, maxQueuedEvents: Int?) {
        self.maxUserWatches = maxUserWatches
        self.namespaceMaxWatches = namespaceMaxWatches
        self.maxQueuedEvents = maxQueuedEvents
    }

    /// The limit in force: the smaller of the two watch limits.
    public var effectiveMaxWatches: Int? {
        switch (maxUserWatches, namespaceMaxWatches) {
        case let (a?, b?): return min(a, b)
        case let (a?, nil): return a
        case let (nil, b?): return b
        case (nil, nil): return nil
        }
    }

    public static func read() -> InotifyLimits {
        InotifyLimits(
            maxUserWatches: readInt("/proc/sys/fs/inotify/max_user_watches"),
            namespaceMaxWatches: readInt("/proc/sys/user/max_inotify_watches"),
            maxQueuedEvents: readInt("/proc/sys/fs/inotify/max_queued_events")
        )
    }

    static func readInt(_ path: String) -> Int? {
        guard let bytes = try? Syscall.readSmallFile(path) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self).trimmed
        return Int(text)
    }
}

