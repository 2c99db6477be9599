import FoundationEssentials
import SyncCore
import SyncSystem
import SyncTestKit
import Testing

@testable import SyncEngine

/// state.json is `StatusSnapshot` encoded: syncd writes it, syncctl reads it back with the same type.
@Suite("Status file: the keys on disk, files from older versions, the round trip")
struct StatusFileTests {
    /// Written by syncd 0.12.0 before state.json was Codable (`syncd run` on a scratch repository
    /// with a nested clone), verbatim: the keys and their order as that encoder wrote them.
    static let written = #"{"version":1,"pid":31733,"workspace":"/tmp/scratch-old","started":"2026-12-03T15:07:11.796Z","updated":"2026-12-03T15:07:11.866Z","phase":"idle","reason":"","reason_code":"","pending_paths":0,"pending_scan":false,"last_batch":2,"last_commit":"","last_commit_at":"","last_commit_batch":0,"commits":0,"unchanged_batches":1,"deferrals":0,"failures":0,"last_error":"","last_error_at":"","breaker_trips":0,"watched_directories":3,"unwatched_directories":0,"unreadable_directories":0,"unreadable_files":0,"unreadable_paths":[],"nested_repositories":["sub/nested"],"paused":false,"paused_reason":"","paused_by":"","paused_until":"","emergency_stop":false,"emergency_reason":"","emergency_since":"","control_serial":0,"sync_serial_done":0,"sync_outcome":"","writers_blocking_since":"","lock_directory":"/tmp/scratch-old/.git/syncd","remote":"","last_sync_at":"","last_push_at":"","unpushed_commits":0,"offline_since":"","sync_error":"","sync_problem":"","sync_fix":"","conflict_branch":"","conflict_files":[],"reconcile_found":0,"last_reconcile_found":0,"last_reconcile_at":"","backup_offsite_error":"","backup_dir":"","recoveries":0,"slow_git":"","slow_git_since":"","slow_git_path":""}"#

    @Test("a state.json written by the previous syncd decodes, and encodes again with the same keys")
    func previousFormat() throws {
        let state = try JSONDecoder().decode(StatusSnapshot.self, from: Data(Self.written.utf8))
        #expect(state.version == 1)
        #expect(state.pid == 31733)
        #expect(state.workspace == "/tmp/scratch-old")
        #expect(state.phase == .idle)
        #expect(state.lastBatch == 2)
        #expect(state.unchangedBatches == 1)
        #expect(state.watchedDirectories == 3)
        #expect(state.nestedRepositories == ["sub/nested"])
        #expect(state.lockDirectory == "/tmp/scratch-old/.git/syncd")
        #expect(state.started == "2026-12-03T15:07:11.796Z")
        #expect(state.updated == "2026-12-03T15:07:11.866Z")

        let old = try JSONDecoder().decode([String: JSONValue].self, from: Data(Self.written.utf8))
        let new = try JSONDecoder().decode([String: JSONValue].self, from: Data(state.json.utf8))
        #expect(new == old)
    }

    @Test("keys an older syncd did not write keep their defaults; a key of the wrong type is an error")
    func missingKeys() throws {
        var object = try JSONDecoder().decode([String: JSONValue].self, from: Data(Self.written.utf8))
        for key in ["slow_git", "slow_git_since", "slow_git_path", "backup_dir", "backup_offsite_error", "recoveries", "nested_repositories", "unreadable_paths"] {
            object[key] = nil
        }
        let state = try JSONDecoder().decode(StatusSnapshot.self, from: JSONEncoder().encode(object))
        #expect(state.slowGit == "" && state.backupDir == "" && state.recoveries == 0)
        #expect(state.nestedRepositories.isEmpty && state.unreadablePaths.isEmpty)
        #expect(state.phase == .idle)
        #expect(try JSONDecoder().decode(StatusSnapshot.self, from: Data("{}".utf8)) == StatusSnapshot())

        object["paused"] = .string("yes")
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(StatusSnapshot.self, from: JSONEncoder().encode(object)) }
    }

    /// Every field set to something other than its default.
    static var everything: StatusSnapshot {
        var status = StatusSnapshot()
        status.version = 2
        status.updated = "2026-12-03T10:00:09.000Z"
        status.pid = 4242
        status.workspace = "/srv/notes"
        status.started = "2026-12-03T10:00:00.000Z"
        status.phase = .breakerOpen
        status.reason = "too many commits"
        status.reasonCode = "circuit-breaker"
        status.pendingPaths = 7
        status.pendingScan = true
        status.lastBatch = 12
        status.lastCommit = "0123456789abcdef0123456789abcdef01234567"
        status.lastCommitAt = "2026-12-03T10:00:05.000Z"
        status.lastCommitBatch = 11
        status.commits = 10
        status.unchangedBatches = 2
        status.deferrals = 3
        status.failures = 1
        status.lastError = "git said \"no\"\nand more"
        status.lastErrorAt = "2026-12-03T10:00:06.000Z"
        status.breakerTrips = 1
        status.watchedDirectories = 30
        status.unwatchedDirectories = 2
        status.unreadableDirectories = 1
        status.unreadableDirectoryPaths = ["secret/"]
        status.unreadableFiles = 2
        status.unreadableFilePaths = ["a.txt", "b/\u{1B}[31mred.txt"]
        status.nestedRepositories = ["vendor/lib"]
        status.paused = true
        status.pausedReason = "maintenance"
        status.pausedBy = "ops@host (pid 1)"
        status.pausedUntil = "2026-12-03T11:00:00.000Z"
        status.emergencyStop = true
        status.emergencyReason = "stop"
        status.emergencySince = "2026-12-03T10:00:07.000Z"
        status.controlSerial = 1_796_310_694_471_674
        status.syncSerialDone = 1_796_310_693_571_143
        status.syncOutcome = "committed; not pushed: offline"
        status.writersBlockingSince = "2026-12-03T10:00:08.000Z"
        status.lockDirectory = "/srv/notes/.git/syncd"
        status.remote = "origin"
        status.lastSyncAt = "2026-12-03T09:00:00.000Z"
        status.lastPushAt = "2026-12-03T09:00:01.000Z"
        status.unpushedCommits = 4
        status.offlineSince = "2026-12-03T09:30:00.000Z"
        status.syncError = "ssh: connect to host example.org port 22: Network is unreachable"
        status.syncProblemKind = "offline"
        status.syncFix = "check the network"
        status.conflictBranch = "syncd/conflict/h/20261203T100000-000Z"
        status.conflictFiles = ["plan.md", "ünïcode.md"]
        status.reconcileFound = 5
        status.lastReconcileFound = 1
        status.lastReconcileAt = "2026-12-03T09:59:00.000Z"
        status.backupOffsiteError = "disk full"
        status.backupDir = "/mnt/backup"
        status.recoveries = 1
        status.slowGit = "git update-index --add --remove --replace -z --stdin"
        status.slowGitSince = "2026-12-03T09:58:00.000Z"
        status.slowGitPath = "big.bin"
        return status
    }

    @Test("write → read gives the same snapshot, every field set")
    func roundTrip() throws {
        let status = Self.everything
        // A field the table forgets would pass unnoticed if it kept its default here.
        let defaults = Dictionary(uniqueKeysWithValues: Mirror(reflecting: StatusSnapshot()).children.compactMap { child in
            child.label.map { ($0, String(describing: child.value)) }
        })
        for child in Mirror(reflecting: status).children {
            guard let label = child.label, !["unreadableError", "unreadableKnown"].contains(label) else { continue }
            #expect(String(describing: child.value) != defaults[label], "\(label) is not set")
        }
        let decoded = try JSONDecoder().decode(StatusSnapshot.self, from: Data(status.json.utf8))
        #expect(decoded == status)
        // The file says what syncctl shows: unreadable files count as pending, one list of paths.
        let object = try JSONDecoder().decode([String: JSONValue].self, from: Data(status.json.utf8))
        #expect(object["pending_paths"] == .number(9))
        #expect(object["unreadable_paths"] == .array(["secret/", "a.txt", "b/\u{1B}[31mred.txt"].map { .string($0) }))
        #expect(object["sync_problem"] == .string("offline"))
        #expect(!status.json.contains("\\/"))
        #expect(status.json.hasSuffix("}\n") && status.json.filter { $0 == "\n" }.count == 1)
    }

    @Test("write(to:) replaces state.json and stamps the time; what it wrote reads back")
    func writeAndRead() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = Array((directory.sub("state.json")).utf8)
        var status = Self.everything
        status.updated = ""
        try status.write(to: path)
        try status.write(to: path)
        let read = try JSONDecoder().decode(StatusSnapshot.self, from: Data(try Syscall.readFile(path, limit: 1 << 20)))
        #expect(WallClock.seconds(rfc3339: read.updated) != nil)
        status.updated = read.updated
        #expect(read == status)
    }
}
