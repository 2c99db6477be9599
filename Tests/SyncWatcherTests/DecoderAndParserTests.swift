import Glibc
import SyncCore
import SyncGit
import SyncSystem
import Testing

@testable import SyncWatcher

@Suite("inotify record decoding, git status parsing, watch table")
struct DecoderAndParserTests {
    @Test func decodesVariableLengthRecords() {
        let events = [
            InotifyEvent(wd: 1, mask: UInt32(IN_CREATE), name: Array("a".utf8)),
            InotifyEvent(wd: 2, mask: UInt32(IN_DELETE_SELF)),
            InotifyEvent(wd: -1, mask: UInt32(IN_Q_OVERFLOW)),
            InotifyEvent(wd: 7, mask: UInt32(IN_MOVED_FROM), cookie: 42, name: [0xFF, 0x0A, 0x2D] + Array(repeating: 0x78, count: 40)),
        ]
        let bytes = InotifyDecoder.encode(events)
        var decoded: [InotifyEvent] = []
        let complete = bytes.withUnsafeBytes { InotifyDecoder.decode($0, into: &decoded) }
        #expect(complete)
        #expect(decoded == events)
        #expect(decoded[2].isOverflow)
    }

    @Test func truncatedRecordsAreReportedNotReadPastTheEnd() {
        let bytes = InotifyDecoder.encode([
            InotifyEvent(wd: 1, mask: UInt32(IN_CREATE), name: Array("first".utf8)),
            InotifyEvent(wd: 1, mask: UInt32(IN_CREATE), name: Array("second-name".utf8)),
        ])
        for cut in [bytes.count - 1, bytes.count - 20, 20, 3] {
            var decoded: [InotifyEvent] = []
            let complete = Array(bytes.prefix(cut)).withUnsafeBytes { InotifyDecoder.decode($0, into: &decoded) }
            #expect(!complete, "cut at \(cut)")
            #expect(decoded.count <= 1)
        }
    }

    @Test func parsesPorcelainV2WithOddNames() throws {
        var output: [UInt8] = []
        output += Array("1 .M N... 100644 100644 100644 abc abc dir/with space".utf8) + [0]
        output += Array("? new\nline".utf8) + [0]
        output += Array("? ".utf8) + [0xFF, 0x2D] + [0]
        output += Array("u UU N... 100644 100644 100644 100644 a b c conflicted".utf8) + [0]
        output += Array("# branch.oid abc".utf8) + [0]
        output += Array("! ignored".utf8) + [0]
        let entries = try GitStatus.parse(output)
        #expect(entries.map(\.path) == [RepoPath("dir/with space"), RepoPath("new\nline"), RepoPath(bytes: [0xFF, 0x2D]), RepoPath("conflicted")])
        #expect(entries.map(\.state) == [.changed, .untracked, .untracked, .unmerged])
        #expect(throws: SyncError.self) { try GitStatus.parse(Array("1 short".utf8) + [0]) }
    }

    @Test func watchTableFollowsInodesAndKeepsNewerWatches() {
        var table = WatchTable()
        _ = table.record(1, at: RepoPath("a"))
        _ = table.record(2, at: RepoPath("a/b"))
        // The same inode seen under a new name (a rename not processed yet): the mapping follows it.
        #expect(table.record(1, at: RepoPath("c")) == nil)
        #expect(table.path(of: 1) == RepoPath("c"))
        #expect(table.wd(of: RepoPath("a")) == nil)
        // A new directory at an old path displaces the stale descriptor.
        #expect(table.record(3, at: RepoPath("a/b")) == 2)
        // A late IN_IGNORED for the stale descriptor does not remove the newer mapping.
        table.forget(2)
        #expect(table.wd(of: RepoPath("a/b")) == 3)
        table.retire(3)
        #expect(table.isRetired(3))
        #expect(table.watched(within: .root).map(\.path) == [RepoPath("c")])
    }

    @Test func outermostDropsNestedPaths() {
        let paths: Set<RepoPath> = [RepoPath("a"), RepoPath("a/b"), RepoPath("ab"), RepoPath("c/d"), RepoPath("c/d/e")]
        #expect(WatchProcessor.outermost(paths) == [RepoPath("a"), RepoPath("ab"), RepoPath("c/d")])
    }

    @Test func watchLimitMessageGivesLimitNeedAndFix() {
        let text = WatchLimitMessage.text(
            workspace: "/w",
            limits: InotifyLimits(maxUserWatches: 8192, namespaceMaxWatches: 100, maxQueuedEvents: 16384),
            watched: 99,
            needed: 5000,
            rescanInterval: .seconds(30)
        )
        #expect(text.contains("the limit is 100 watches"))
        #expect(text.contains("needs 5000 directories"))
        #expect(text.contains("Fix: sysctl user.max_inotify_watches=75536 in the user namespace"))
        #expect(text.contains("every 30s"))
        let host = WatchLimitMessage.text(
            workspace: "/w",
            limits: InotifyLimits(maxUserWatches: 8192, namespaceMaxWatches: Int(Int32.max), maxQueuedEvents: 16384),
            watched: 8000,
            needed: 9000,
            rescanInterval: .seconds(5)
        )
        #expect(host.contains("the limit is 8192 watches"))
        #expect(!host.contains("user.max_inotify_watches"))
        #expect(host.contains("Fix: sudo sysctl fs.inotify.max_user_watches=83536"))
        #expect(host.contains("tee /etc/sysctl.d/90-syncd.conf"))
    }
}
