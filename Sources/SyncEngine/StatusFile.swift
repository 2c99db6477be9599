import FoundationEssentials
import SyncCore
import SyncSystem
import SyncWatcher

/// What syncd is doing, for `syncctl status` and for people: `state.json` in the state directory,
/// replaced atomically (temp, fsync, rename, fsync of the directory) on every change of phase.
public struct StatusSnapshot: Sendable, Equatable {
    public enum Phase: String, Sendable, Codable {
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

    /// The format of state.json; a syncd that changes a key's meaning raises it.
    public static let formatVersion = 1
    public var version = StatusSnapshot.formatVersion
    /// When the file was written (RFC 3339): `write(to:)` sets it.
    public var updated = ""

    public init() {}

    /// Everything pending: the paths waiting for a batch and the files git cannot read (the
    /// file's `pending_paths`).
    public var pendingPathsTotal: Int { pendingPaths + unreadableFiles }

    /// The unreadable paths shown: directories (with a trailing slash) first, at most
    /// `WatcherStatistics.pathsShown` (the file's `unreadable_paths`).
    public var unreadablePaths: [String] {
        Array((unreadableDirectoryPaths + unreadableFilePaths).prefix(WatcherStatistics.pathsShown))
    }

    /// state.json's text, one line, as written. (Strings, integers and booleans always encode:
    /// only a non-finite floating-point number could fail, and there is none.)
    public var json: String {
        (try? String(decoding: Self.fileEncoder.encode(self), as: UTF8.self) + "\n") ?? "{}\n"
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
        var stamped = self
        stamped.updated = WallClock.rfc3339()
        try AtomicFile.write(path, Array(stamped.json.utf8))
    }
}

/// state.json is this type, encoded: syncd writes it, `syncctl` and `syncd demo` read it back.
/// The keys are the file's (snake_case, docs and users' scripts read them), each named once in
/// `fields`. A key an older syncd did not write keeps its default; a key of the wrong type is
/// an error. Not in the file: the writer's bookkeeping of which unreadable files it has named.
extension StatusSnapshot: Codable {
    /// A key of state.json.
    public struct Key: CodingKey, Hashable, Sendable, ExpressibleByStringLiteral {
        public let stringValue: String
        public var intValue: Int? { nil }
        public init(stringValue: String) { self.stringValue = stringValue }
        public init?(intValue: Int) { nil }
        public init(stringLiteral value: String) { stringValue = value }
    }

    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: Key.self)
        for field in Self.fields { try field.decode(&self, container) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try encodeFields(into: &container)
    }

    /// Every field into `container` but those in `omitting`: `syncctl status --json` adds its
    /// own keys to the same object and says some differently (`pid` is null when none runs).
    public func encodeFields(into container: inout KeyedEncodingContainer<Key>, omitting: Set<Key> = []) throws {
        for field in Self.fields where !omitting.contains(field.key) { try field.encode(self, &container) }
    }

    /// Sorted keys: one text for one state. Slashes are not escaped (paths stay greppable).
    static var fileEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// One key and its property.
    private struct Field {
        let key: Key
        let encode: (StatusSnapshot, inout KeyedEncodingContainer<Key>) throws -> Void
        let decode: (inout StatusSnapshot, KeyedDecodingContainer<Key>) throws -> Void

        init<Value: Codable>(_ key: Key, _ path: WritableKeyPath<StatusSnapshot, Value>) {
            self.key = key
            encode = { status, container in try container.encode(status[keyPath: path], forKey: key) }
            decode = { status, container in
                if let value = try container.decodeIfPresent(Value.self, forKey: key) { status[keyPath: path] = value }
            }
        }
    }

    /// `pending_paths` counts the unreadable files too; decoded after `unreadable_files` (below).
    private var pendingPathsInFile: Int {
        get { pendingPathsTotal }
        set { pendingPaths = max(0, newValue - unreadableFiles) }
    }

    /// `unreadable_paths`: the directories end with a slash, which tells them from the files.
    private var unreadablePathsInFile: [String] {
        get { unreadablePaths }
        set {
            unreadableDirectoryPaths = newValue.filter { $0.hasSuffix("/") }
            unreadableFilePaths = newValue.filter { !$0.hasSuffix("/") }
        }
    }

    /// The keys of state.json, in the order older versions wrote them (except `pending_paths`,
    /// which needs `unreadable_files` decoded first).
    private static var fields: [Field] {
        [
            Field("version", \.version),
            Field("pid", \.pid),
            Field("workspace", \.workspace),
            Field("started", \.started),
            Field("updated", \.updated),
            Field("phase", \.phase),
            Field("reason", \.reason),
            Field("reason_code", \.reasonCode),
            Field("unreadable_files", \.unreadableFiles),
            Field("pending_paths", \.pendingPathsInFile),
            Field("pending_scan", \.pendingScan),
            Field("last_batch", \.lastBatch),
            Field("last_commit", \.lastCommit),
            Field("last_commit_at", \.lastCommitAt),
            Field("last_commit_batch", \.lastCommitBatch),
            Field("commits", \.commits),
            Field("unchanged_batches", \.unchangedBatches),
            Field("deferrals", \.deferrals),
            Field("failures", \.failures),
            Field("last_error", \.lastError),
            Field("last_error_at", \.lastErrorAt),
            Field("breaker_trips", \.breakerTrips),
            Field("watched_directories", \.watchedDirectories),
            Field("unwatched_directories", \.unwatchedDirectories),
            Field("unreadable_directories", \.unreadableDirectories),
            Field("unreadable_paths", \.unreadablePathsInFile),
            Field("nested_repositories", \.nestedRepositories),
            Field("paused", \.paused),
            Field("paused_reason", \.pausedReason),
            Field("paused_by", \.pausedBy),
            Field("paused_until", \.pausedUntil),
            Field("emergency_stop", \.emergencyStop),
            Field("emergency_reason", \.emergencyReason),
            Field("emergency_since", \.emergencySince),
            Field("control_serial", \.controlSerial),
            Field("sync_serial_done", \.syncSerialDone),
            Field("sync_outcome", \.syncOutcome),
            Field("writers_blocking_since", \.writersBlockingSince),
            Field("lock_directory", \.lockDirectory),
            Field("remote", \.remote),
            Field("last_sync_at", \.lastSyncAt),
            Field("last_push_at", \.lastPushAt),
            Field("unpushed_commits", \.unpushedCommits),
            Field("offline_since", \.offlineSince),
            Field("sync_error", \.syncError),
            Field("sync_problem", \.syncProblemKind),
            Field("sync_fix", \.syncFix),
            Field("conflict_branch", \.conflictBranch),
            Field("conflict_files", \.conflictFiles),
            Field("reconcile_found", \.reconcileFound),
            Field("last_reconcile_found", \.lastReconcileFound),
            Field("last_reconcile_at", \.lastReconcileAt),
            Field("backup_offsite_error", \.backupOffsiteError),
            Field("backup_dir", \.backupDir),
            Field("recoveries", \.recoveries),
            Field("slow_git", \.slowGit),
            Field("slow_git_since", \.slowGitSince),
            Field("slow_git_path", \.slowGitPath),
        ]
    }
}
