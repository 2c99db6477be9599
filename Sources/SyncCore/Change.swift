/// What happened to a path, as far as the watcher can tell. Events are hints; git decides later
/// what really changed, so the kind is informational and never trusted for correctness.
public enum ChangeKind: String, Sendable, Hashable, CaseIterable {
    case created
    case modified
    /// Metadata changed (the executable bit matters to git).
    case attributes
    case deleted
    case movedFrom = "moved-from"
    case movedTo = "moved-to"
    /// Listed by a crawl: a new or moved-in directory's contents, or a directory that stopped
    /// being ignored. The watcher reports it because no event will ever name it.
    case found
    /// Reported by `git status` during a reconcile after a rescan.
    case status
}

/// One change to one path.
public struct Change: Hashable, Sendable {
    public var path: RepoPath
    public var kind: ChangeKind
    public var isDirectory: Bool
    /// True when the change comes from a reconcile (a rescan) rather than from an event.
    public var fromRescan: Bool

    public init(path: RepoPath, kind: ChangeKind, isDirectory: Bool = false, fromRescan: Bool = false) {
        self.path = path
        self.kind = kind
        self.isDirectory = isDirectory
        self.fromRescan = fromRescan
    }
}

/// Why the watcher asks for a rescan: the events can no longer be trusted to be complete.
public enum RescanReason: String, Sendable, Hashable {
    /// The kernel dropped events (IN_Q_OVERFLOW).
    case kernelQueueOverflow = "kernel-queue-overflow"
    /// The pending change set hit its cap; it collapsed to "rescan".
    case pendingSetFull = "pending-set-full"
    /// The event queue between the reader thread and the processor hit its cap.
    case readerQueueFull = "reader-queue-full"
    /// An event named a watch descriptor the watcher does not know.
    case unknownWatch = "unknown-watch"
}
