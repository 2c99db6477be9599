import SyncCore

/// What one batch asks the committer to record.
public struct CommitRequest: Sendable {
    /// Paths the events named (hints: each is re-checked against the disk and git).
    public var paths: Set<RepoPath>
    /// Paths the events said were directories (a directory moved away leaves nothing to lstat).
    public var directoryHints: Set<RepoPath>
    /// Ask `git status` for every changed path as well (startup, after lost events).
    public var fullScan: Bool
    public var batch: Int
    public var trigger: String
    /// Who wrote the changes, when known.
    public var writer: String?
    /// Called once the snapshot is taken (the batch is staged in the index) and before the
    /// branch moves: the caller may let writers go on then (the sync lock). A compare-and-swap
    /// that fails after it is not redone here (the redo must snapshot again under the lock): the
    /// batch is deferred instead.
    public var snapshotTaken: (@Sendable () async -> Void)?

    public init(
        paths: Set<RepoPath>,
        directoryHints: Set<RepoPath> = [],
        fullScan: Bool = false,
        batch: Int,
        trigger: String,
        writer: String? = nil,
        snapshotTaken: (@Sendable () async -> Void)? = nil
    ) {
        self.paths = paths
        self.directoryHints = directoryHints
        self.fullScan = fullScan
        self.batch = batch
        self.trigger = trigger
        self.writer = writer
        self.snapshotTaken = snapshotTaken
    }
}

/// One file in a commit, as `git diff-tree --name-status` reports it.
public struct CommittedFile: Sendable, Equatable {
    public enum Status: String, Sendable {
        case added = "A", modified = "M", deleted = "D", typeChanged = "T"
    }
    public var status: Status
    public var path: RepoPath
}

public struct CommitSummary: Sendable {
    public var commit: String
    public var branch: String
    public var files: [CommittedFile]
    /// Compare-and-swap attempts (more than 1 when a person committed at the same time).
    public var attempts: Int
}

/// Why a batch waits instead of committing. It is not an error: the batch is retried.
public struct Deferral: Sendable, Equatable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public static let indexLocked = Code(rawValue: "index-locked")
        public static let refLocked = Code(rawValue: "ref-locked")
        public static let rebase = Code(rawValue: "rebase-in-progress")
        public static let merge = Code(rawValue: "merge-in-progress")
        public static let cherryPick = Code(rawValue: "cherry-pick-in-progress")
        public static let revert = Code(rawValue: "revert-in-progress")
        public static let bisect = Code(rawValue: "bisect-in-progress")
        public static let unmerged = Code(rawValue: "unmerged-paths")
        public static let detachedHead = Code(rawValue: "detached-head")
        public static let casContention = Code(rawValue: "branch-moving")
        public static let emergencyStop = Code(rawValue: "emergency-stop")
        public static let indexChanged = Code(rawValue: "index-changed")
    }

    public var code: Code
    public var message: String
    /// For a batch that asks git for every change (a full scan): how many paths git reports as
    /// changed, so status can say how much waits; nil when not counted.
    public var pendingPaths: Int?
    public var description: String { message }

    public init(code: Code, message: String, pendingPaths: Int? = nil) {
        self.code = code
        self.message = message
        self.pendingPaths = pendingPaths
    }

    /// The same reason to wait (the count may differ): one log line for the whole wait.
    public static func == (lhs: Deferral, rhs: Deferral) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }
}

/// What keeps files out of commits although they changed, for status: files git cannot read,
/// and nested repositories (their files belong to them).
public struct CommitterFindings: Sendable, Equatable {
    /// Files git could not read (no permission), with git's message. A file leaves the list once
    /// it is staged (an event follows a chmod) or is gone.
    public var unreadable: [RepoPath: String] = [:]
    /// Nested clones and submodule checkouts whose files changed: syncd leaves them to their own
    /// repository. One leaves the list when its `.git` is gone.
    public var nestedRepositories: Set<RepoPath> = []

    public init() {}
}

public enum CommitOutcome: Sendable {
    case committed(CommitSummary)
    /// The batch's paths match HEAD already: no commit.
    case unchanged
    case deferred(Deferral)
}

import Synchronization

/// Set when an emergency stop arrives while a commit runs: the committer checks it between its
/// steps (and between chunks of a big staging run) and sets the batch aside instead of going on.
public final class StopFlag: Sendable {
    private let value = Mutex(false)
    public init() {}
    public func set(_ stop: Bool) { value.withLock { $0 = stop } }
    public var isSet: Bool { value.withLock { $0 } }
}
