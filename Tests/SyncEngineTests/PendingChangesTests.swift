import SyncCore
import Testing

@testable import SyncEngine

/// The pending set the batch commits: pure state, no watcher needed.
@Suite("PendingChanges: paths, directories, the full scan")
struct PendingChangesTests {
    func change(_ path: String, directory: Bool = false) -> Change {
        Change(path: RepoPath(path), kind: .modified, isDirectory: directory)
    }

    @Test("changes inside syncd's lock directory are not pending and not counted")
    func excluded() {
        var pending = PendingChanges(capacity: 100, excluded: RepoPath(".syncd-lock"))
        #expect(pending.take([change(".syncd-lock/sync.lock"), change("notes.txt")]) == 1)
        #expect(pending.paths == [RepoPath("notes.txt")])
    }

    @Test("a path is pending when it, or a directory above it, is")
    func containsThroughDirectories() {
        var pending = PendingChanges(capacity: 100, excluded: nil)
        _ = pending.take([change("a/b", directory: true), change("c.txt")])
        #expect(pending.contains(RepoPath("a/b/d/e.txt")))
        #expect(pending.contains(RepoPath("c.txt")))
        #expect(!pending.contains(RepoPath("a/x.txt")))
    }

    @Test("what stayed uncommitted counts files, not also the new directory that holds them; a directory with nothing pending inside counts")
    func namedPathsLeaveOutCoveredDirectories() {
        var pending = PendingChanges(capacity: 100, excluded: nil)
        _ = pending.take([
            change("new", directory: true), change("new/sub", directory: true), change("new/sub/f1"), change("new/f2"),
            change("gone", directory: true), change("top.txt"),
        ])
        #expect(Set(pending.namedPaths) == [RepoPath("new/sub/f1"), RepoPath("new/f2"), RepoPath("gone"), RepoPath("top.txt")])
        let said = CommitStep.uncommittedAtCancel(pending).message
        #expect(said.contains("4 path(s) (gone, new/f2, new/sub/f1, top.txt)"), "\(said)")
    }

    @Test("past its capacity the set is dropped and the next batch asks git for everything")
    func capacity() {
        var pending = PendingChanges(capacity: 2, excluded: nil)
        _ = pending.take([change("1"), change("2"), change("3")])
        #expect(pending.isEmpty && pending.fullScan)
        #expect(pending.batchCount == 1)
    }

    @Test("the count shown includes what a waiting full scan found; clear forgets everything")
    func shownAndCleared() {
        var pending = PendingChanges(capacity: 100, excluded: nil)
        _ = pending.take([change("a")])
        pending.scanned = 5
        #expect(pending.shownCount == 5)
        pending.fullScan = true
        pending.clear()
        #expect(pending.isEmpty && !pending.fullScan && pending.scanned == 0 && pending.shownCount == 0)
    }
}
