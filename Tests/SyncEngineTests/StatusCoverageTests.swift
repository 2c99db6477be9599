import FoundationEssentials
import SyncCore
import SyncWatcher
import Testing

@testable import SyncEngine

/// What syncd cannot see or commit, in the status snapshot (issue 12).
@Suite("Status: unreadable paths, nested repositories, unwatched directories")
struct StatusCoverageTests {
    static func json(_ status: StatusSnapshot) -> [String: JSONValue] {
        (try? JSONDecoder().decode([String: JSONValue].self, from: Data(status.json.utf8))) ?? [:]
    }

    func applied(_ status: inout StatusSnapshot, _ findings: CommitterFindings) -> Bool { status.apply(findings) }
    func applied(_ status: inout StatusSnapshot, _ statistics: WatcherStatistics) -> Bool { status.apply(statistics) }

    @Test("a file git cannot read counts as pending, is the last error and is named until it is committed; then the error clears")
    func unreadableFile() {
        var status = StatusSnapshot()
        status.pendingPaths = 0
        var findings = CommitterFindings()
        #expect(!applied(&status, findings))
        findings.unreadable[RepoPath("u.txt")] = "error: open(\"u.txt\"): Permission denied"
        #expect(applied(&status, findings))
        var object = Self.json(status)
        #expect(object["pending_paths"]?.number == 1)
        #expect(object["unreadable_files"]?.number == 1)
        #expect(object["unreadable_paths"] == .array([.string("u.txt")]))
        #expect(status.lastError.contains("git cannot read u.txt"))
        #expect(status.lastError.contains("Permission denied"))
        #expect(!status.lastErrorAt.isEmpty)
        // The same finding again: nothing new, the time of the error stays.
        let at = status.lastErrorAt
        #expect(!applied(&status, findings))
        #expect(status.lastErrorAt == at)

        findings.unreadable = [:]
        #expect(applied(&status, findings))
        object = Self.json(status)
        #expect(object["pending_paths"]?.number == 0)
        #expect(object["unreadable_paths"] == .array([]))
        #expect(status.lastError.isEmpty)
    }

    @Test("another error that came after the unreadable file is kept when the file is committed")
    func laterErrorKept() {
        var status = StatusSnapshot()
        var findings = CommitterFindings()
        findings.unreadable[RepoPath("u.txt")] = "denied"
        _ = status.apply(findings)
        status.lastError = "git update-index failed"
        findings.unreadable = [:]
        _ = status.apply(findings)
        #expect(status.lastError == "git update-index failed")
    }

    @Test("unreadable directories from the watcher: counted as unwatched, named with a slash, first in the list")
    func unreadableDirectories() {
        var status = StatusSnapshot()
        var statistics = WatcherStatistics()
        statistics.watched = 3
        statistics.unwatched = 1
        statistics.unreadable = 1
        statistics.unreadablePaths = [RepoPath("sub")]
        #expect(applied(&status, statistics))
        #expect(!applied(&status, statistics))
        var findings = CommitterFindings()
        findings.unreadable[RepoPath("u.txt")] = "denied"
        findings.nestedRepositories = [RepoPath("vendor/lib"), RepoPath("nest")]
        _ = status.apply(findings)
        let object = Self.json(status)
        #expect(object["unwatched_directories"]?.number == 1)
        #expect(object["unreadable_directories"]?.number == 1)
        #expect(object["unreadable_paths"] == .array([.string("sub/"), .string("u.txt")]))
        #expect(object["nested_repositories"] == .array([.string("nest"), .string("vendor/lib")]))
    }

    @Test("incidents: unreadable directories are not called the watch limit; an unreadable path alerts only after alertAfter")
    func incidents() {
        var status = StatusSnapshot()
        status.unwatchedDirectories = 3
        status.unreadableDirectories = 1
        status.unreadableDirectoryPaths = ["sub/"]
        let start = ContinuousClock.now
        var incidents = Incidents()
        let first = incidents.update(status, now: start, alertAfter: .seconds(60))
        #expect(first.map(\.name) == ["watch-limit"])
        #expect(first.first?.message.hasPrefix("2 directories are not watched") == true)
        let later = incidents.update(status, now: start.advanced(by: .seconds(60)), alertAfter: .seconds(60))
        #expect(later.map(\.name) == ["unreadable"])
        #expect(later.first?.message.contains("sub/") == true)
    }
}
