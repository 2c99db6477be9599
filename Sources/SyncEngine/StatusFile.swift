import SyncCore
import SyncSystem
import SyncWatcher

/// What syncd is doing, for `syncctl status` and for people: `state.json` in the state directory,
/// replaced atomically (temp, fsync, rename, fsync of the directory) on every change of phase.
public struct StatusSnapshot: Sendable, Equatable {
    public enum Phase: String, Sendable {
        case starting, idle, pending, committing, deferred, failing
        case breakerOpen = "breaker-open"
        case paused
        case emergencyStop = "emergency-stop"
        case stopped
    }

    public var pid: Int32 = 0
    public var workspace = ""
    public var started = ""
    public var phase: Phase = .starting
    /// Why syncd waits or fails (a deferral or the last error), empty when all is well.
    public var reason = ""
    public var reasonCode = ""
    public var pendingPaths = 0
    /// A full scan is due (startup, lost events): changes beyond `pendingPaths` may be waiting.
    public var pendingScan = false
    public var lastBatch = 0
    public var lastCommit = ""
    public var lastCommitAt = ""
    public var lastCommitBatch = 0
    public var commits = 0
    public var unchangedBatches = 0
    public var deferrals = 0
    public var failures = 0
    public var lastError = ""
    public var lastErrorAt = ""
    public var breakerTrips = 0
    public var watchedDirectories = 0
    /// Directories without a watch: those the watch limit left (rescanned periodically) and the
    /// unreadable ones.
    public var unwatchedDirectories = 0
    /// Directories syncd cannot read (no permission): what they hold is not committed until it can.
    public var unreadableDirectories = 0
    public var unreadableDirectoryPaths: [String] = []
    /// Files git cannot read (no permission): not committed until it can. Counted as pending.
    public var unreadableFiles = 0
    public var unreadableFilePaths: [String] = []
    /// Nested clones and submodules whose files changed: their files are not committed here.
    public var nestedRepositories: [String] = []
    /// The `lastError` set for unreadable files (cleared with them), and every such file.
    private var unreadableError = ""
    private var unreadableKnown: Set<RepoPath> = []
    public var paused = false
    public var pausedReason = ""
    public var pausedBy = ""
    public var pausedUntil = ""
    public var emergencyStop = false
    public var emergencyReason = ""
    public var emergencySince = ""
    /// The newest `syncctl` request applied (its serial).
    public var controlSerial: UInt64 = 0
    /// The newest `syncctl sync` request finished, and how.
    public var syncSerialDone: UInt64 = 0
    public var syncOutcome = ""
    /// Since when writers holding the sync lock keep syncd from snapshotting ("" when they do not).
    public var writersBlockingSince = ""
    public var lockDirectory = ""
    /// Remote sync: the remote ("" when syncing is off), times, what is not pushed yet.
    public var remote = ""
    public var lastSyncAt = ""
    public var lastPushAt = ""
    public var unpushedCommits = 0
    public var offlineSince = ""
    public var syncError = ""
    /// `offline` (waiting fixes it) or `setup` (a person must: host key, credentials, URL), "" when fine.
    public var syncProblemKind = ""
    /// For a setup problem: what to do about it ("" otherwise).
    public var syncFix = ""
    public var conflictBranch = ""
    public var conflictFiles: [String] = []
    /// Paths the periodic reconcile found that no event had reported, since start; and in the last one.
    public var reconcileFound = 0
    public var lastReconcileFound = 0
    public var lastReconcileAt = ""
    /// Why the copy to `syncd.backupDir` fails ("" when it works or none is set).
    public var backupOffsiteError = ""
    /// `syncd.backupDir` as this syncd runs with it ("" = none).
    public var backupDir = ""
    /// Things found and repaired since start (a deleted state directory, …).
    public var recoveries = 0
    /// A git call running longer than `syncd.slowGitAfter` ("" when none): `git …`, since when
    /// (RFC 3339), and the working-tree file git has open ("" when none).
    public var slowGit = ""
    public var slowGitSince = ""
    public var slowGitPath = ""

    public init() {}

    public var json: String {
        var line = JSONLine()
        line.add("version", 1)
        line.add("pid", Int(pid))
        line.add("workspace", workspace)
        line.add("started", started)
        line.add("updated", WallClock.rfc3339())
        line.add("phase", phase.rawValue)
        line.add("reason", reason)
        line.add("reason_code", reasonCode)
        line.add("pending_paths", pendingPaths + unreadableFiles)
        line.add("pending_scan", pendingScan)
        line.add("last_batch", lastBatch)
        line.add("last_commit", lastCommit)
        line.add("last_commit_at", lastCommitAt)
        line.add("last_commit_batch", lastCommitBatch)
        line.add("commits", commits)
        line.add("unchanged_batches", unchangedBatches)
        line.add("deferrals", deferrals)
        line.add("failures", failures)
        line.add("last_error", lastError)
        line.add("last_error_at", lastErrorAt)
        line.add("breaker_trips", breakerTrips)
        line.add("watched_directories", watchedDirectories)
        line.add("unwatched_directories", unwatchedDirectories)
        line.add("unreadable_directories", unreadableDirectories)
        line.add("unreadable_files", unreadableFiles)
        // Directories end with a slash.
        line.add("unreadable_paths", Array((unreadableDirectoryPaths + unreadableFilePaths).prefix(WatcherStatistics.pathsShown)))
        line.add("nested_repositories", nestedRepositories)
        line.add("paused", paused)
        line.add("paused_reason", pausedReason)
        line.add("paused_by", pausedBy)
        line.add("paused_until", pausedUntil)
        line.add("emergency_stop", emergencyStop)
        line.add("emergency_reason", emergencyReason)
        line.add("emergency_since", emergencySince)
        line.add("control_serial", Int(truncatingIfNeeded: controlSerial))
        line.add("sync_serial_done", Int(truncatingIfNeeded: syncSerialDone))
        line.add("sync_outcome", syncOutcome)
        line.add("writers_blocking_since", writersBlockingSince)
        line.add("lock_directory", lockDirectory)
        line.add("remote", remote)
        line.add("last_sync_at", lastSyncAt)
        line.add("last_push_at", lastPushAt)
        line.add("unpushed_commits", unpushedCommits)
        line.add("offline_since", offlineSince)
        line.add("sync_error", syncError)
        line.add("sync_problem", syncProblemKind)
        line.add("sync_fix", syncFix)
        line.add("conflict_branch", conflictBranch)
        line.add("conflict_files", conflictFiles)
        line.add("reconcile_found", reconcileFound)
        line.add("last_reconcile_found", lastReconcileFound)
        line.add("last_reconcile_at", lastReconcileAt)
        line.add("backup_offsite_error", backupOffsiteError)
        line.add("backup_dir", backupDir)
        line.add("recoveries", recoveries)
        line.add("slow_git", slowGit)
        line.add("slow_git_since", slowGitSince)
        line.add("slow_git_path", slowGitPath)
        return line.text + "\n"
    }

    /// Takes the watcher's counts; true when they changed (state.json is then due).
    mutating func apply(_ statistics: WatcherStatistics) -> Bool {
        let before = (watchedDirectories, unwatchedDirectories, unreadableDirectories, unreadableDirectoryPaths)
        watchedDirectories = statistics.watched
        unwatchedDirectories = statistics.unwatched
        unreadableDirectories = statistics.unreadable
        unreadableDirectoryPaths = statistics.unreadablePaths.map { $0.description + "/" }
        return before != (watchedDirectories, unwatchedDirectories, unreadableDirectories, unreadableDirectoryPaths)
    }

    /// Takes what the committer left out; true when it changed. A newly unreadable file becomes
    /// the last error, cleared again once no file is left out.
    mutating func apply(_ findings: CommitterFindings) -> Bool {
        let files = findings.unreadable.keys.sorted()
        let shown = files.prefix(WatcherStatistics.pathsShown).map(\.description)
        let nested = findings.nestedRepositories.sorted().map(\.description)
        let before = (unreadableFiles, unreadableFilePaths, nestedRepositories, lastError)
        defer { unreadableKnown = Set(files) }
        if let new = files.first(where: { !unreadableKnown.contains($0) }) {
            let reason = findings.unreadable[new].map { " (\($0))" } ?? ""
            let others = files.count > 1 ? " and \(files.count - 1) more" : ""
            unreadableError = "git cannot read \(new)\(reason)\(others): not committed until syncd can read it; fix the permissions"
            lastError = unreadableError
            lastErrorAt = WallClock.rfc3339()
        } else if files.isEmpty, !unreadableError.isEmpty {
            if lastError == unreadableError {
                lastError = ""
                lastErrorAt = ""
            }
            unreadableError = ""
        }
        unreadableFiles = files.count
        unreadableFilePaths = shown
        nestedRepositories = nested
        return before != (unreadableFiles, unreadableFilePaths, nestedRepositories, lastError)
    }

    func write(to path: [UInt8]) throws(SyscallError) {
        try AtomicFile.write(path, Array(json.utf8))
    }
}
