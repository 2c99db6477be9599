import Foundation
import Glibc
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem
import SyncTestKit
import Synchronization
import Testing

/// Issue 13: big batches go through git's pack writer; the sync lock is released at the snapshot.
@Suite("Committer: pack staging and the early lock release")
struct PackStagingTests {
    static func files(_ fixture: GitFixture, count: Int, tag: String) throws -> [String] {
        try Files.mkdirs(fixture.file("burst"))
        return try (0..<count).map { index in
            let path = "burst/f\(index).txt"
            try Files.write(fixture.file(path), "\(tag) \(index)\n")
            return path
        }
    }

    static func looseObjects(_ fixture: GitFixture) -> Int {
        let objects = fixture.path + "/.git/objects"
        let directories: [String] = (try? FileManager.default.contentsOfDirectory(atPath: objects)) ?? []
        var count = 0
        for directory in directories where directory.count == 2 {
            let entries: [String] = (try? FileManager.default.contentsOfDirectory(atPath: objects + "/" + directory)) ?? []
            count += entries.count
        }
        return count
    }

    static func packs(_ fixture: GitFixture) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: fixture.path + "/.git/objects/pack")) ?? []).filter { $0.hasSuffix(".pack") }.count
    }

    @Test("a batch staged into a pack has the same tree as git add of the same files, leaves no loose blobs, and fsck --full is clean")
    func packPathSameTree() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        let paths = try Self.files(workspace.fixture, count: 500, tag: "pack")
        let loosesBefore = Self.looseObjects(workspace.fixture)
        guard case .committed(let summary) = try await workspace.commit(paths) else { throw TestFailure("not committed") }
        #expect(summary.files.count == 500)
        #expect(Self.packs(workspace.fixture) >= 1)
        // The blobs went into the pack: only the tree(s) and the commit are loose.
        #expect(Self.looseObjects(workspace.fixture) - loosesBefore <= 4)
        let packedTree = try await workspace.fixture.run(["rev-parse", "HEAD^{tree}"])

        // The same files through git's own loose path in a second repository.
        let plain = try await GitFixture()
        defer { plain.remove() }
        _ = try Self.files(plain, count: 500, tag: "pack")
        try await plain.run(["add", "-A"])
        let plainTree = try await plain.run(["write-tree"])
        #expect(packedTree == plainTree)
        try await workspace.fixture.run(["fsck", "--full", "--strict"])
    }

    @Test("prestage writes a large batch's blobs before the lock without touching the real index; the commit under the lock writes only what changed since, loose")
    func prestageThenCommit() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        let fixture = workspace.fixture
        let paths = try Self.files(fixture, count: 500, tag: "pre")
        let indexBefore = try? Data(contentsOf: URL(fileURLWithPath: fixture.path + "/.git/index"))
        await workspace.committer.prestage(CommitRequest(paths: Set(paths.map(RepoPath.init)), batch: 1, trigger: "test"))
        #expect(await workspace.committer.prestagedCount == 500)
        #expect(Self.packs(fixture) == 1)
        // The blobs exist; the real index is as it was (a person's `git commit` now commits nothing of it).
        let blob = try await fixture.run(["hash-object", "burst/f7.txt"]).filter { !$0.isWhitespace }
        try await fixture.run(["cat-file", "-e", GitArgument(blob)])
        #expect((try? Data(contentsOf: URL(fileURLWithPath: fixture.path + "/.git/index"))) == indexBefore)
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "")

        // Three files change after the prestage and before the lock.
        for index in [3, 40, 499] { try Files.write(fixture.file("burst/f\(index).txt"), "changed \(index)\n") }
        let loose = Self.looseObjects(fixture)
        guard case .committed(let summary) = try await workspace.commit(paths) else { throw TestFailure("not committed") }
        #expect(summary.files.count == 500)
        // No second pack: 497 blobs were there already; the 3 changed ones, the trees and the commit are loose.
        #expect(Self.packs(fixture) == 1)
        #expect(Self.looseObjects(fixture) - loose <= 3 + 4)
        #expect(try await fixture.run(["show", "HEAD:burst/f40.txt"]) == "changed 40\n")
        #expect(try await fixture.run(["status", "--porcelain"]) == "")
        try await fixture.run(["fsck", "--full", "--strict"])
    }

    @Test("a person's git add between the prestage and the lock keeps the real index: their staged file stays staged and out of the commit, the batch is committed")
    func prestageKeepsPersonsIndex() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        let fixture = workspace.fixture
        try Files.write(fixture.file("mine.txt"), "v1\n")
        try await fixture.run(["add", "mine.txt"])
        try await fixture.run(["commit", "-qm", "base"])
        let paths = try Self.files(fixture, count: 200, tag: "batch")
        await workspace.committer.prestage(CommitRequest(paths: Set(paths.map(RepoPath.init)), batch: 1, trigger: "test"))
        // A person stages their own change after the prestage copied the index.
        try Files.write(fixture.file("mine.txt"), "v2 staged by a person\n")
        try await fixture.run(["add", "mine.txt"])
        guard case .committed(let summary) = try await workspace.commit(paths) else { throw TestFailure("not committed") }
        #expect(summary.files.count == 200)
        #expect(try await fixture.run(["show", "HEAD:mine.txt"]) == "v1\n")
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "mine.txt\n")
        #expect(try await fixture.run(["show", ":mine.txt"]) == "v2 staged by a person\n")
        try await fixture.run(["fsck", "--full", "--strict"])
    }

    @Test("git at work in the index (index.lock held) when the batch is staged: the batch waits, nothing is forced")
    func prestageRespectsIndexLock() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        let fixture = workspace.fixture
        let paths = try Self.files(fixture, count: 100, tag: "locked")
        await workspace.committer.prestage(CommitRequest(paths: Set(paths.map(RepoPath.init)), batch: 1, trigger: "test"))
        try Files.write(fixture.path + "/.git/index.lock", "")
        // The commit waits for the lock (a deferral), and never replaces the index under it.
        if case .committed = try await workspace.commit(paths) { throw TestFailure("committed while index.lock was held") }
        #expect(Syscall.exists(Array((fixture.path + "/.git/index.lock").utf8)))
        try Syscall.unlink(Array((fixture.path + "/.git/index.lock").utf8))
        guard case .committed = try await workspace.commit(paths) else { throw TestFailure("not committed after the lock went") }
        #expect(try await fixture.run(["status", "--porcelain"]) == "")
    }

    @Test("a file that shrinks while git reads it is named, from the pack writer's and the loose path's messages; other failures are not taken for it")
    func changedWhileRead() {
        #expect(Committer.changedWhileRead("fatal: failed to read 5 bytes from 'd1/f21'\n") == "d1/f21")
        #expect(Committer.changedWhileRead("error: short read while indexing notes/a b.md\nerror: notes/a b.md: failed to insert into database\nfatal: Unable to process path notes/a b.md\n") == "notes/a b.md")
        #expect(Committer.changedWhileRead("error: open(\"x\"): Permission denied\nfatal: Unable to process path x\n") == nil)
        #expect(Committer.changedWhileRead("fatal: unable to write new index file\n") == nil)
    }

    /// git 2.39's stderr, as reproduced with .git/objects not writable (chmod for a non-root
    /// user, chattr +i for root), a full filesystem, and a working file that cannot be read.
    @Test("an object-store write failure is the repository's (the batch fails), not the one file git named; a file git cannot read is that file's")
    func objectStoreFailureIsNotTheFiles() {
        let storeFailures = [
            "error: insufficient permission for adding an object to repository database .git/objects\nerror: small: failed to insert into database\nfatal: Unable to process path small\n",
            "error: unable to create temporary file: Operation not permitted\nerror: small: failed to insert into database\nfatal: Unable to process path small\n",
            "error: unable to create temporary file: No space left on device\nerror: small: failed to insert into database\nfatal: Unable to process path small\n",
            "fatal: Unable to create temporary file '/w/.git/objects/pack/tmp_pack_XXXXXX': Permission denied\n",
            "fatal: unable to write loose object file: No space left on device\n",
            "fatal: sha1 file '.git/objects/pack/tmp_pack_I64IDp' write error. Out of diskspace\n",
            "error: small: failed to insert into database\nfatal: Unable to process path small\n",
        ]
        for stderr in storeFailures {
            #expect(Committer.objectStoreFailure(stderr) != nil, "\(stderr)")
            #expect(Committer.unstageable(stderr) == nil, "\(stderr)")
        }
        #expect(Committer.objectStoreFailure(storeFailures[0]) == "error: insufficient permission for adding an object to repository database .git/objects")

        let fileProblems = [
            "error: open(\"sec\"): Permission denied\nfatal: Unable to process path sec\n",
            "error: read error while indexing sec: Input/output error\nerror: sec: failed to insert into database\nfatal: Unable to process path sec\n",
            "error: cannot run false: No such file or directory\nerror: cannot fork to run external filter 'false'\nfatal: sec: clean filter 'strict' failed\n",
        ]
        for stderr in fileProblems {
            #expect(Committer.objectStoreFailure(stderr) == nil, "\(stderr)")
            #expect(Committer.unstageable(stderr)?.path == "sec", "\(stderr)")
        }
    }

    @Test("a pack batch that also holds new empty and one-byte files commits (git 2.39 fails such a mix under core.fsyncMethod=batch)")
    func packWithTinyBlobs() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        var paths = try Self.files(workspace.fixture, count: 100, tag: "mixed")
        try Files.write(workspace.fixture.file("burst/a-empty.txt"), "")
        try Files.write(workspace.fixture.file("burst/a-one.txt"), "\n")
        paths += ["burst/a-empty.txt", "burst/a-one.txt"]
        guard case .committed(let summary) = try await workspace.commit(paths) else { throw TestFailure("not committed") }
        #expect(summary.files.count == 102)
        #expect(try await workspace.fixture.run(["status", "--porcelain"]) == "")
        try await workspace.fixture.run(["fsck", "--full", "--strict"])
    }

    @Test("packs written by many large batches are rolled up without waiting for the 100-commit maintenance")
    func packsRolledUp() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        for round in 0..<12 {
            try Files.mkdirs(workspace.fixture.file("r\(round)"))
            let paths = try (0..<70).map { index in
                let path = "r\(round)/f\(index).txt"
                try Files.write(workspace.fixture.file(path), "round \(round) file \(index)\n")
                return path
            }
            guard case .committed = try await workspace.commit(paths) else { throw TestFailure("round \(round) not committed") }
        }
        #expect(Self.packs(workspace.fixture) <= Committer.maxPacks)
        try await workspace.fixture.run(["fsck", "--full", "--strict"])
    }

    /// Waits (bounded) until the wall clock is early in a second, so the next few steps happen
    /// within one second, as the racy-git cases below need.
    static func startOfSecond() async throws {
        try await waitUntil(.seconds(3), interval: .milliseconds(5), "the start of a second") {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            return now.tv_nsec < 150_000_000
        }
    }

    /// Waits (bounded) until the wall clock is in a later second than `second`.
    static func after(second: Int) async throws {
        try await waitUntil(.seconds(3), interval: .milliseconds(5), "the next second") {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            return now.tv_sec > second
        }
    }

    static func nowSecond() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now.tv_sec
    }

    @Test("a same-size rewrite in the second the files were staged is committed after a prestage (git compares times to the second; no stat data from outside the lock is trusted)")
    func prestageSameSecondRewrite() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        let fixture = workspace.fixture
        try await Self.startOfSecond()
        let second = Self.nowSecond()
        let paths = try Self.files(fixture, count: 100, tag: "AAAA")
        try await fixture.run(["add", "burst"])
        for index in 0..<100 { try Files.write(fixture.file("burst/f\(index).txt"), "BBBB \(index)\n") }
        try await Self.after(second: second)
        await workspace.committer.prestage(CommitRequest(paths: Set(paths.map(RepoPath.init)), batch: 1, trigger: "test"))
        guard case .committed = try await workspace.commit(paths) else { throw TestFailure("not committed") }
        for index in [0, 50, 99] {
            #expect(try await fixture.run(["show", GitArgument("HEAD:burst/f\(index).txt")]) == "BBBB \(index)\n")
        }
        #expect(try await fixture.run(["status", "--porcelain"]) == "")
    }

    @Test("the scratch index (a person's staged change elsewhere) keeps the index's time: a same-second rewrite of staged files is committed, not the staged version")
    func scratchIndexKeepsRacyEntries() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        let fixture = workspace.fixture
        try Files.write(fixture.file("seed"), "seed\n")
        try await fixture.run(["add", "seed"])
        try await fixture.run(["commit", "-qm", "seed"])
        try await fixture.run(["update-index", "--chmod=+x", "seed"])
        try await Self.startOfSecond()
        let second = Self.nowSecond()
        let paths = try Self.files(fixture, count: 20, tag: "AAAA")
        try await fixture.run(["add", "burst"])
        for index in 0..<20 { try Files.write(fixture.file("burst/f\(index).txt"), "BBBB \(index)\n") }
        try await Self.after(second: second)
        guard case .committed = try await workspace.commit(paths) else { throw TestFailure("not committed") }
        for index in [0, 19] {
            #expect(try await fixture.run(["show", GitArgument("HEAD:burst/f\(index).txt")]) == "BBBB \(index)\n")
        }
        // The person's staged mode change stays staged, and only it.
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "seed\n")
    }

    @Test("a commit may change only what the batch staged: a file that replaced a directory and a directory that replaced a file are explained, anything else is not")
    func unstagedPaths() {
        let p = { (text: String) in RepoPath(text) }
        #expect(Committer.unstaged([p("a.txt"), p("d/x")], staged: [p("a.txt"), p("d/x")]) == nil)
        #expect(Committer.unstaged([p("a"), p("a/x")], staged: [p("a")]) == nil)  // file a replaced directory a/
        #expect(Committer.unstaged([p("b"), p("b/y")], staged: [p("b/y")]) == nil)  // directory b/ replaced file b
        #expect(Committer.unstaged([p("a.txt"), p("other.txt"), p("z/q")], staged: [p("a.txt")]) == [p("other.txt"), p("z/q")])
    }

    @Test(".git/index removed while a batch is staged: nothing is committed (not a commit that deletes every other file), the batch waits and says why")
    func indexRemovedNoMassDeletion() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        let fixture = workspace.fixture
        let kept = try Self.files(fixture, count: 30, tag: "kept")
        guard case .committed = try await workspace.commit(kept) else { throw TestFailure("first commit") }
        let head = try await fixture.head()
        try Files.write(fixture.file("new.txt"), "new\n")
        try Syscall.unlink(Array((fixture.path + "/.git/index").utf8))
        guard case .deferred(let deferral) = try await workspace.commit(["new.txt"]) else { throw TestFailure("committed from a missing index") }
        #expect(deferral.code == .indexChanged)
        #expect(deferral.message.contains("git reset"))
        #expect(try await fixture.head() == head)
        // Restored the way the message says: the batch then commits, nothing else changes.
        try await fixture.run(["reset", "-q"])
        guard case .committed(let summary) = try await workspace.commit(["new.txt"]) else { throw TestFailure("not committed after git reset") }
        #expect(summary.files.map(\.path) == [RepoPath("new.txt")])
    }

    @Test("a small batch stays loose (no pack per small commit)")
    func smallBatchLoose() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        let paths = try Self.files(workspace.fixture, count: 5, tag: "small")
        guard case .committed = try await workspace.commit(paths) else { throw TestFailure("not committed") }
        #expect(Self.packs(workspace.fixture) == 0)
    }

    @Test("the snapshot hook runs before the branch moves; a writer that takes the lock then writes a two-file change: none of it is in that commit, all of it in the next")
    func lockReleasedBeforeSwap() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let lockPath = Array((fixture.path + "/sync.lock").utf8)
        let service = try FileLock(path: lockPath)
        let writerLock = try FileLock(path: lockPath)
        let events = Mutex<[String]>([])
        let root = fixture.path
        // The writer: as soon as it can take the lock shared (only once syncd let go), it writes
        // both halves of its change.
        let writer: @Sendable (Int) async throws -> Void = { _ in
            events.withLock { $0.append("swap") }
            guard try writerLock.tryLock(.shared) else { throw TestFailure("the lock is still held when the branch moves") }
            try Files.write(root + "/a.txt", "writer A\n")
            try Files.write(root + "/b.txt", "writer B\n")
            writerLock.unlock()
        }
        var workspace = try await CommitterTests.Workspace(fixture: fixture, beforeSwap: writer)
        try Files.write(fixture.file("a.txt"), "old A\n")
        try Files.write(fixture.file("b.txt"), "old B\n")
        #expect(try service.tryLock(.exclusive))
        workspace.batch += 1
        let outcome = try await workspace.committer.commit(CommitRequest(
            paths: [RepoPath("a.txt"), RepoPath("b.txt")], batch: workspace.batch, trigger: "test",
            snapshotTaken: {
                events.withLock { $0.append("snapshot") }
                service.unlock()
            }))
        guard case .committed = outcome else { throw TestFailure("not committed: \(outcome)") }
        #expect(events.withLock { $0 } == ["snapshot", "swap"])
        #expect(try await fixture.run(["show", "HEAD:a.txt"]) == "old A\n")
        #expect(try await fixture.run(["show", "HEAD:b.txt"]) == "old B\n")
        guard case .committed = try await workspace.commit(["a.txt", "b.txt"]) else { throw TestFailure("the writer's change was not committed next") }
        #expect(try await fixture.run(["show", "HEAD:a.txt"]) == "writer A\n")
        #expect(try await fixture.run(["show", "HEAD:b.txt"]) == "writer B\n")
    }

    @Test("a compare-and-swap that fails after the lock was released is not redone without it: the batch is deferred")
    func casAfterReleaseDefers() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let root = fixture.path
        let person: @Sendable (Int) async throws -> Void = { attempt in
            guard attempt == 1 else { return }
            let git = GitRunner(workTree: Array(root.utf8))
            try Files.write(root + "/person.txt", "a person's commit\n")
            _ = try await git.run(["add", "person.txt"])
            _ = try await git.run(["commit", "-qm", "person"])
        }
        var workspace = try await CommitterTests.Workspace(fixture: fixture, beforeSwap: person)
        try Files.write(fixture.file("x.txt"), "x\n")
        workspace.batch += 1
        let outcome = try await workspace.committer.commit(CommitRequest(
            paths: [RepoPath("x.txt")], batch: workspace.batch, trigger: "test", snapshotTaken: {}))
        guard case .deferred(let deferral) = outcome else { throw TestFailure("expected a deferral, got \(outcome)") }
        #expect(deferral.code == .casContention)
        #expect(try await fixture.run(["log", "-1", "--format=%s"]) == "person\n")
    }
}
