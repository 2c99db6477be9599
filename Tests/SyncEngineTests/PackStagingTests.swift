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
        let summary = try await workspace.mustCommit(paths)
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
        let summary = try await workspace.mustCommit(paths, prestage: false)
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
        let summary = try await workspace.mustCommit(paths, prestage: false)
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
        if case .committed = try await workspace.commit(paths, prestage: false) { throw TestFailure("committed while index.lock was held") }
        #expect(Syscall.exists(Array((fixture.path + "/.git/index.lock").utf8)))
        try Syscall.unlink(Array((fixture.path + "/.git/index.lock").utf8))
        try await workspace.mustCommit(paths)
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
        let summary = try await workspace.mustCommit(paths)
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
            try await workspace.mustCommit(paths, "round \(round)")
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

    /// Sets a file's modification time an hour back (its change time becomes now).
    static func age(_ path: String) throws {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let old = timespec(tv_sec: now.tv_sec - 3600, tv_nsec: 0)
        let times = [old, old]
        guard utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) == 0 else { throw TestFailure("utimensat \(path): errno \(errno)") }
    }

    /// Waits (bounded) until every one of `paths` was last changed longer ago than the settle margin.
    static func settled(_ paths: [String]) async throws {
        let newest = paths.compactMap { FileStamp(Array($0.utf8)) }.map { max($0.modified, $0.changed) }.max() ?? 0
        try await waitUntil(.seconds(3), interval: .milliseconds(5), "the files' times to settle") {
            WallClock.nanoseconds() > newest + 2 * FileStamp.settleMargin
        }
    }

    @Test("under the lock, git reads only the files changed since the prestage: the others' entries come from the snapshot index (a clean filter counts the reads)")
    func snapshotReadsOnlyChanged() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        let fixture = workspace.fixture
        let log = fixture.path + "/.git/filter-reads"
        try Files.write(fixture.file(".gitattributes"), "burst/* filter=count\n")
        try await fixture.run(["config", "filter.count.clean", GitArgument("sh -c 'printf \"%s\\n\" \"$0\" >> \(log); cat' %f")])
        let paths = try Self.files(fixture, count: 100, tag: "settled")
        for path in paths { try Self.age(fixture.file(path)) }
        try await Self.settled(paths.map(fixture.file))
        await workspace.committer.prestage(CommitRequest(paths: Set(paths.map(RepoPath.init)), batch: 1, trigger: "test"))
        #expect(await workspace.committer.prestagedCount == 100)
        for index in [3, 40, 99] { try Files.write(fixture.file("burst/f\(index).txt"), "changed after the prestage \(index)\n") }
        try Files.write(log, "")
        let summary = try await workspace.mustCommit(paths, prestage: false)
        #expect(summary.files.count == 100)
        let read = Set(try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init))
        #expect(read == ["burst/f3.txt", "burst/f40.txt", "burst/f99.txt"])
        #expect(try await fixture.run(["show", "HEAD:burst/f40.txt"]) == "changed after the prestage 40\n")
        #expect(try await fixture.run(["show", "HEAD:burst/f41.txt"]) == "settled 41\n")
        // The snapshot index became the real one: it matches HEAD and the working tree.
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "")
        #expect(try await fixture.run(["status", "--porcelain"]) == "?? .gitattributes\n")
        try await fixture.run(["fsck", "--full", "--strict"])
    }

    @Test("a prestaged file changed since and then unreadable under the lock keeps its committed version: it is left out of the batch, not deleted from the commit")
    func staleUnreadableKeepsEntry() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        let fixture = workspace.fixture
        let marker = fixture.path + "/.git/refuse"
        try Files.write(fixture.file(".gitattributes"), "burst/* filter=picky\n")
        try await fixture.run(["config", "filter.picky.clean", GitArgument("sh -c 'if [ -e \(marker) ] && [ \"$0\" = burst/f5.txt ]; then exit 1; fi; cat' %f")])
        try await fixture.run(["config", "filter.picky.required", "true"])
        let paths = try Self.files(fixture, count: 100, tag: "v1")
        try await workspace.mustCommit(paths, prestage: false, "seed")
        for index in 0..<100 { try Files.write(fixture.file("burst/f\(index).txt"), "v2 \(index)\n") }
        for path in paths { try Self.age(fixture.file(path)) }
        try await Self.settled(paths.map(fixture.file))
        await workspace.committer.prestage(CommitRequest(paths: Set(paths.map(RepoPath.init)), batch: 2, trigger: "test"))
        #expect(await workspace.committer.prestagedCount == 100)
        // f5 changes again, and its clean filter fails from now on.
        try Files.write(fixture.file("burst/f5.txt"), "v3 5\n")
        try Files.write(marker, "")
        let outcome = try await workspace.commit(paths, prestage: false)
        guard case .committed(let summary) = outcome else { throw TestFailure("not committed: \(outcome)") }
        #expect(summary.files.count == 99)
        #expect(try await fixture.run(["show", "HEAD:burst/f5.txt"]) == "v1 5\n")
        #expect(try await fixture.run(["show", "HEAD:burst/f6.txt"]) == "v2 6\n")
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "")
        // Once the filter works again, the file's next change is committed.
        try FileManager.default.removeItem(atPath: marker)
        try Files.write(fixture.file("burst/f5.txt"), "v4 5\n")
        try await workspace.mustCommit(["burst/f5.txt"], "f5")
        #expect(try await fixture.run(["show", "HEAD:burst/f5.txt"]) == "v4 5\n")
    }

    @Test("a person's git add after the lock is released and before the branch moves stays staged: the batch's entries are written into their index instead of replacing it")
    func installKeepsLateStaging() async throws {
        let fixture = try await GitFixture()
        let person: @Sendable (Int) async throws -> Void = { _ in
            try Files.write(fixture.file("person.txt"), "staged by a person\n")
            _ = try await fixture.git.run(["add", "person.txt"])
        }
        try Files.write(fixture.file("gone.txt"), "to be deleted\n")
        try await fixture.run(["add", "gone.txt"])
        try await fixture.run(["commit", "-qm", "seed"])
        var workspace = try await CommitterTests.Workspace(fixture: fixture, beforeSwap: person)
        defer { workspace.remove() }
        try FileManager.default.removeItem(atPath: fixture.file("gone.txt"))
        try Files.write(fixture.file("a.txt"), "batch a\n")
        try Files.write(fixture.file("b.txt"), "batch b\n")
        let outcome = try await workspace.commit(["a.txt", "b.txt", "gone.txt"])
        guard case .committed(let summary) = outcome else { throw TestFailure("not committed: \(outcome)") }
        #expect(Set(summary.files.map(\.path)) == [RepoPath("a.txt"), RepoPath("b.txt"), RepoPath("gone.txt")])
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "person.txt\n")
        #expect(try await fixture.run(["show", ":person.txt"]) == "staged by a person\n")
        #expect(try await fixture.run(["rev-parse", ":a.txt"]) == (try await fixture.run(["rev-parse", "HEAD:a.txt"])))
        #expect(try await fixture.run(["status", "--porcelain"]) == "A  person.txt\n")
        try await fixture.run(["fsck", "--full", "--strict"])
    }

    @Test("a lock left on syncd's own index copies by a git killed mid-write (kill -9) does not stop later batches")
    func staleCopyLocksRemoved() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        let fixture = workspace.fixture
        try Files.write(fixture.path + "/.git/syncd/index.prestage.lock", "")
        try Files.write(fixture.path + "/.git/syncd/index.next.lock", "")
        let paths = try Self.files(fixture, count: 100, tag: "after a kill")
        let summary = try await workspace.mustCommit(paths)
        #expect(summary.files.count == 100)
        // The prestage's git killed: its lock stays on the copy the batch was to be staged into.
        for path in paths { try Files.write(fixture.file(path), "killed prestage\n") }
        let request = CommitRequest(paths: Set(paths.map(RepoPath.init)), batch: 99, trigger: "test")
        await workspace.committer.prestage(request)
        try Files.write(fixture.path + "/.git/syncd/index.prestage.lock", "")
        let outcome = try await workspace.committer.commit(request)
        guard case .committed = outcome else { throw TestFailure("not committed after a killed prestage: \(outcome)") }
        #expect(try await fixture.run(["show", "HEAD:burst/f7.txt"]) == "killed prestage\n")
        // The scratch index (a person's staged change elsewhere) too.
        try Files.write(fixture.path + "/.git/syncd/index.next.lock", "")
        try Files.write(fixture.file("mine.txt"), "staged\n")
        try await fixture.run(["add", "mine.txt"])
        try Files.write(fixture.file("burst/f1.txt"), "again\n")
        try await workspace.mustCommit(["burst/f1.txt"], "scratch batch")
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "mine.txt\n")
    }

    @Test("a new repository with no index and nothing to commit: the startup scan finds nothing and fails nothing (no index copy to install)")
    func emptyRepositoryNothingToInstall() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        #expect(!FileManager.default.fileExists(atPath: workspace.fixture.path + "/.git/index"))
        guard case .unchanged = try await workspace.commit([], fullScan: true) else { throw TestFailure("expected nothing to commit") }
        try Files.write(workspace.fixture.file("first.txt"), "first\n")
        try await workspace.mustCommit(["first.txt"], "first file")
        #expect(try await workspace.fixture.run(["status", "--porcelain"]) == "")
    }

    @Test("another git holding index.lock when the batch is to land: the branch does not move until the real index can take the batch (a person's commit from an index without it would undo it)")
    func installWaitsForIndexLock() async throws {
        let fixture = try await GitFixture()
        let lockFile = fixture.path + "/.git/index.lock"
        let once = FirstTime()
        let person: @Sendable (Int) async throws -> Void = { _ in
            if once() { try Files.write(lockFile, "") }
        }
        try await Self.seed(fixture)
        var workspace = try await CommitterTests.Workspace(fixture: fixture, beforeSwap: person)
        defer { workspace.remove() }
        let head = try await fixture.run(["rev-parse", "HEAD"])
        let paths = try Self.files(fixture, count: 5, tag: "batch")
        let outcome = try await workspace.commit(paths)
        #expect(Self.deferralCode(outcome) == .indexLocked)
        #expect(try await fixture.run(["rev-parse", "HEAD"]) == head, "the branch must not move while the index cannot take the batch")
        try FileManager.default.removeItem(atPath: lockFile)
        try await workspace.mustCommit(paths)
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "")
        #expect(try await fixture.run(["status", "--porcelain"]) == "")
    }

    @Test(".git/index removed after the lock is released and before the branch moves: the branch does not move, the batch waits for `git reset` (no index of the batch alone, which would stage every other file's deletion)")
    func installRefusesMissingIndex() async throws {
        let fixture = try await GitFixture()
        let indexPath = fixture.path + "/.git/index"
        let once = FirstTime()
        let person: @Sendable (Int) async throws -> Void = { _ in
            if once() { try FileManager.default.removeItem(atPath: indexPath) }
        }
        for index in 0..<30 { try Files.write(fixture.file("k\(index).txt"), "kept \(index)\n") }
        try await fixture.run(["add", "."])
        try await fixture.run(["commit", "-qm", "seed"])
        var workspace = try await CommitterTests.Workspace(fixture: fixture, beforeSwap: person)
        defer { workspace.remove() }
        let head = try await fixture.run(["rev-parse", "HEAD"])
        let paths = try Self.files(fixture, count: 5, tag: "batch")
        let outcome = try await workspace.commit(paths)
        #expect(Self.deferralCode(outcome) == .indexChanged)
        #expect(try await fixture.run(["rev-parse", "HEAD"]) == head)
        #expect(!FileManager.default.fileExists(atPath: indexPath))
        try await fixture.run(["reset", "-q"])
        let summary = try await workspace.mustCommit(paths)
        #expect(summary.files.count == 5)
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "")
        #expect(try await fixture.run(["status", "--porcelain"]) == "")
        #expect(try await fixture.run(["ls-files"]).split(separator: "\n").count == 35)
    }

    @Test("syncd holds index.lock from the install until the branch moved, as `git commit` does: a `git reset` or `read-tree HEAD` in between fails instead of putting the index back to the old HEAD")
    func indexLockHeldUntilBranchMoves() async throws {
        let fixture = try await GitFixture()
        let refused = Mutex<[Int32]>([])
        let person: @Sendable () async throws -> Void = {
            for arguments in [["reset", "-q"], ["read-tree", "HEAD"]] {
                let result = try await fixture.git.run(arguments.map { GitArgument(stringLiteral: $0) }, acceptedExitCodes: [0, 128])
                refused.withLock { $0.append(result.exitCode) }
            }
        }
        try await Self.seed(fixture)
        var workspace = try await CommitterTests.Workspace(fixture: fixture, afterIndexInstalled: person)
        defer { workspace.remove() }
        let paths = try Self.files(fixture, count: 5, tag: "batch")
        try await workspace.mustCommit(paths)
        #expect(refused.withLock { $0 } == [128, 128])
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "")
        #expect(try await fixture.run(["status", "--porcelain"]) == "")
        #expect(!FileManager.default.fileExists(atPath: fixture.path + "/.git/index.lock"))
    }

    /// Besides the plain snapshot index: a person's change staged elsewhere (the scratch index),
    /// and a split index (a copy of the small split `.git/index`).
    enum OtherRoute: String, CaseIterable, CustomTestStringConvertible {
        case scratch, split
        var testDescription: String { rawValue }
    }

    /// A workspace on `route`: seeded, with `mine.txt` staged by a person for the scratch route.
    static func workspace(
        _ route: OtherRoute, _ fixture: GitFixture, beforeSwap: (@Sendable (Int) async throws -> Void)? = nil,
        afterIndexInstalled: (@Sendable () async throws -> Void)? = nil
    ) async throws -> CommitterTests.Workspace {
        try await seed(fixture)
        if route == .scratch {
            try Files.write(fixture.file("mine.txt"), "staged by a person\n")
            try await fixture.run(["add", "mine.txt"])
        }
        return try await CommitterTests.Workspace(
            fixture: fixture, beforeSwap: beforeSwap, afterIndexInstalled: afterIndexInstalled, splitIndex: route == .split ? .true : .auto)
    }

    @Test("with a person's change staged elsewhere, and with a split index, the sync lock is released at the snapshot, and syncd holds index.lock from the install until the branch moved: a `git reset` in between fails; the person's staged change stays staged", arguments: OtherRoute.allCases)
    func otherRoutesHoldIndexLock(route: OtherRoute) async throws {
        let fixture = try await GitFixture()
        let events = Mutex<[String]>([])
        let person: @Sendable () async throws -> Void = {
            let result = try await fixture.git.run(["reset", "-q"], acceptedExitCodes: [0, 128])
            events.withLock { $0.append("reset \(result.exitCode)") }
        }
        let workspace = try await Self.workspace(route, fixture, afterIndexInstalled: person)
        defer { workspace.remove() }
        let paths = try Self.files(fixture, count: 100, tag: "batch")
        let request = CommitRequest(
            paths: Set(paths.map(RepoPath.init)), batch: 1, trigger: "test", snapshotTaken: { events.withLock { $0.append("released") } })
        await workspace.committer.prestage(request)
        // A split index is prestaged into a copy like any other.
        #expect(await workspace.committer.prestagedCount == 100)
        let outcome = try await workspace.committer.commit(request)
        guard case .committed(let summary) = outcome else { throw TestFailure("not committed: \(outcome)") }
        #expect(summary.files.count == 100)
        #expect(events.withLock { $0 } == ["released", "reset 128"])
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == (route == .scratch ? "mine.txt\n" : ""))
        #expect(try await fixture.run(["status", "--porcelain"]) == (route == .scratch ? "A  mine.txt\n" : ""))
        if route == .split {
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: fixture.path + "/.git")) ?? []).contains { $0.hasPrefix("sharedindex.") })
        }
        // The private copies last only while a batch is committed.
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: fixture.path + "/.git/syncd")) ?? []).filter { $0.hasPrefix("index.") }
        #expect(left.isEmpty, "\(left)")
        try await fixture.run(["fsck", "--full", "--strict"])
    }

    @Test("with a person's change staged elsewhere, and with a split index, a `git reset` after the staging and before the install puts the index back to the old HEAD: the install writes the batch's entries back, so a person's next commit cannot undo the batch", arguments: OtherRoute.allCases)
    func otherRoutesRepairReset(route: OtherRoute) async throws {
        let fixture = try await GitFixture()
        let once = FirstTime()
        let person: @Sendable (Int) async throws -> Void = { _ in
            if once() { _ = try await fixture.git.run(["reset", "-q"]) }
        }
        var workspace = try await Self.workspace(route, fixture, beforeSwap: person)
        defer { workspace.remove() }
        let paths = try Self.files(fixture, count: 100, tag: "batch")
        let summary = try await workspace.mustCommit(paths)
        #expect(summary.files.count == 100)
        // The index holds the batch: nothing staged against the new HEAD (the person's own reset
        // unstaged mine.txt), and a commit from it now would change nothing of the batch.
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "")
        #expect(try await fixture.run(["status", "--porcelain"]) == (route == .scratch ? "?? mine.txt\n" : ""))
        try await fixture.run(["fsck", "--full", "--strict"])
    }

    @Test("the index rewritten after the prestage (a `git status` by an editor): the batch is staged into a fresh copy and still installed under index.lock, so a `git reset` before the branch moves cannot put the index back")
    func staleCopyStillInstalledUnderLock() async throws {
        let fixture = try await GitFixture()
        let refused = Mutex<[Int32]>([])
        let person: @Sendable () async throws -> Void = {
            let result = try await fixture.git.run(["reset", "-q"], acceptedExitCodes: [0, 128])
            refused.withLock { $0.append(result.exitCode) }
        }
        try await Self.seed(fixture)
        var workspace = try await CommitterTests.Workspace(fixture: fixture, afterIndexInstalled: person)
        defer { workspace.remove() }
        let paths = try Self.files(fixture, count: 100, tag: "batch")
        await workspace.committer.prestage(CommitRequest(paths: Set(paths.map(RepoPath.init)), batch: 1, trigger: "test"))
        try await fixture.run(["update-index", "--force-write-index"])
        let summary = try await workspace.mustCommit(paths, prestage: false)
        #expect(summary.files.count == 100)
        #expect(refused.withLock { $0 } == [128])
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "")
        #expect(try await fixture.run(["status", "--porcelain"]) == "")
    }

    @Test("a person who stages a batch's own path after the lock is released keeps their staged version: the batch's entry goes only where the index still has HEAD's")
    func fallbackKeepsPersonsVersionOfBatchPath() async throws {
        let fixture = try await GitFixture()
        let once = FirstTime()
        let person: @Sendable (Int) async throws -> Void = { _ in
            guard once() else { return }
            try Files.write(fixture.file("burst/f1.txt"), "the person's version\n")
            _ = try await fixture.git.run(["add", "burst/f1.txt"])
        }
        try await Self.seed(fixture)
        var workspace = try await CommitterTests.Workspace(fixture: fixture, beforeSwap: person)
        defer { workspace.remove() }
        let paths = try Self.files(fixture, count: 5, tag: "batch")
        try await workspace.mustCommit(paths)
        #expect(try await fixture.run(["show", "HEAD:burst/f1.txt"]) == "batch 1\n")
        #expect(try await fixture.run(["show", ":burst/f1.txt"]) == "the person's version\n")
        #expect(try await fixture.run(["show", ":burst/f2.txt"]) == "batch 2\n")
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "burst/f1.txt\n")
    }

    @Test("a version a person staged before the batch is replaced by the batch's newer one even when another git wrote the index during the commit (only what they staged meanwhile is kept); with index.base made a directory, the batch still commits", arguments: [false, true])
    func olderStagedVersionReplaced(tampered: Bool) async throws {
        let fixture = try await GitFixture()
        let once = FirstTime()
        let editor: @Sendable (Int) async throws -> Void = { _ in
            // Another git writes the index after the copy: a mode change staged elsewhere.
            if once() { _ = try await fixture.git.run(["update-index", "--chmod=+x", "seed.txt"]) }
        }
        try await Self.seed(fixture)
        var workspace = try await CommitterTests.Workspace(fixture: fixture, beforeSwap: editor)
        defer { workspace.remove() }
        if tampered { try Files.mkdirs(fixture.path + "/.git/syncd/index.base/sub") }
        let paths = try Self.files(fixture, count: 5, tag: "batch")
        try await fixture.run(["add", "burst/f1.txt"])
        try Files.write(fixture.file("burst/f1.txt"), "newer, after git add\n")
        try await workspace.mustCommit(paths)
        #expect(try await fixture.run(["show", "HEAD:burst/f1.txt"]) == "newer, after git add\n")
        // Without the link only HEAD's entries are known: the older staged version stays.
        #expect(try await fixture.run(["show", ":burst/f1.txt"]) == (tampered ? "batch 1\n" : "newer, after git add\n"))
        if tampered { return }
        // What was staged meanwhile stays staged, and only it.
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "seed.txt\n")
    }

    @Test("the branch moved without the index (`git reset --soft`, `update-ref`) before the install: the index is left alone, the swap fails and the batch is redone on top")
    func branchMovedIndexLeftAlone() async throws {
        let fixture = try await GitFixture()
        let once = FirstTime()
        let person: @Sendable (Int) async throws -> Void = { _ in
            guard once() else { return }
            let commit = try await fixture.git.run(["commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", "a person's commit"], environment: [
                "GIT_AUTHOR_NAME": "p", "GIT_AUTHOR_EMAIL": "p@p", "GIT_COMMITTER_NAME": "p", "GIT_COMMITTER_EMAIL": "p@p",
            ]).text
            _ = try await fixture.git.run(["update-ref", "HEAD", GitArgument(commit)])
        }
        let staged = Mutex<[String]>([])
        let look = FirstTime()
        let afterInstall: @Sendable () async throws -> Void = {
            guard look() else { return }
            let cached = try await fixture.git.run(["diff", "--cached", "--name-only"], readOnly: true).text
            staged.withLock { $0.append(cached) }
        }
        try await Self.seed(fixture)
        var workspace = try await CommitterTests.Workspace(fixture: fixture, beforeSwap: person, afterIndexInstalled: afterInstall)
        defer { workspace.remove() }
        let paths = try Self.files(fixture, count: 5, tag: "batch")
        let summary = try await workspace.mustCommit(paths)
        #expect(summary.attempts == 2)
        // At the first install the branch had moved: the index still matched the person's HEAD.
        #expect(staged.withLock { $0 } == [""])
        #expect(try await fixture.run(["log", "-1", "--format=%s", "HEAD^"]) == "a person's commit\n")
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "")
    }

    @Test("a snapshot copy that cannot be written fails the batch with the path and what to check; nothing is staged into .git/index instead")
    func copyFailureFailsBatch() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.remove() }
        let fixture = workspace.fixture
        try await Self.seed(fixture)
        try Files.mkdirs(fixture.path + "/.git/syncd/index.prestage")
        try Files.write(fixture.file("a.txt"), "a\n")
        do {
            let outcome = try await workspace.commit(["a.txt"])
            Issue.record("expected an error, got \(outcome)")
        } catch let error as SyncError {
            #expect(error.message.contains("cannot copy the index to") && error.message.contains("index.prestage"), "\(error)")
        }
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "")
        try FileManager.default.removeItem(atPath: fixture.path + "/.git/syncd/index.prestage")
        try await workspace.mustCommit(["a.txt"])
    }

    @Test("a large index is split by default, but not when the repository says core.splitIndex=false (every other git would write it whole again, and each syncd commit would leave a new full-size shared index)", arguments: [true, false])
    func splitIndexFollowsCoreSetting(gitSaysFalse: Bool) async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try await Self.seed(fixture)
        // A 4+ MiB index without 50,000 files on disk: entries that all name one blob.
        let blob = try await fixture.git.run(["hash-object", "-w", "--stdin"], input: Array("x\n".utf8)).text
        var lines: [UInt8] = []
        for index in 0..<50_000 { lines += Array("100644 \(blob)\tbig/dir\(index / 100)/file-with-a-longer-name-\(index)\n".utf8) }
        _ = try await fixture.git.run(["update-index", "--index-info"], input: lines)
        try await fixture.run(["commit", "-qm", "big"])
        if gitSaysFalse { try await fixture.run(["config", "core.splitIndex", "false"]) }
        var workspace = try await CommitterTests.Workspace(fixture: fixture)
        try Files.write(fixture.file("a.txt"), "a\n")
        try await workspace.mustCommit(["a.txt"])
        let shared = ((try? FileManager.default.contentsOfDirectory(atPath: fixture.path + "/.git")) ?? []).filter { $0.hasPrefix("sharedindex.") }
        #expect(shared.isEmpty == gitSaysFalse, "\(shared)")
        #expect(workspace.logged.messages.contains { $0.contains("core.splitIndex is false") } == gitSaysFalse)
    }

    @Test("after a person's `git reset --soft HEAD~1` or `update-ref` (HEAD moved, the index file did not), what they left staged stays staged and out of syncd's commits, and the next change is committed, not deferred forever", arguments: ["reset", "update-ref"])
    func headMovedWithoutIndex(how: String) async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.remove() }
        let fixture = workspace.fixture
        try await Self.seed(fixture)
        try Files.write(fixture.file("one.txt"), "one\n")
        try await workspace.mustCommit(["one.txt"], "the first file")
        if how == "reset" {
            try await fixture.run(["reset", "-q", "--soft", "HEAD~1"])
        } else {
            try await fixture.run(["update-ref", "refs/heads/main", "HEAD~1"])
        }
        try Files.write(fixture.file("two.txt"), "two\n")
        try await workspace.mustCommit(["two.txt"], "the next change")
        #expect(try await fixture.run(["show", "HEAD:two.txt"]) == "two\n")
        #expect(try await fixture.run(["ls-tree", "--name-only", "HEAD"]) == "seed.txt\ntwo.txt\n")
        // one.txt is the person's, staged: their next commit takes it.
        #expect(try await fixture.run(["diff", "--cached", "--name-only"]) == "one.txt\n")
    }

    /// One committed file, `seed.txt`: HEAD exists.
    static func seed(_ fixture: GitFixture) async throws {
        try Files.write(fixture.file("seed.txt"), "seed\n")
        try await fixture.run(["add", "seed.txt"])
        try await fixture.run(["commit", "-qm", "seed"])
    }

    /// True the first time it is called, false after: a hook that acts in the first attempt only.
    final class FirstTime: Sendable {
        private let first = Mutex(true)
        func callAsFunction() -> Bool { first.withLock { value in defer { value = false }; return value } }
    }

    static func deferralCode(_ outcome: CommitOutcome) -> Deferral.Code? {
        if case .deferred(let deferral) = outcome { return deferral.code }
        return nil
    }

    @Test("a prestage stamp is trusted only when the file's last change is older than the stamp by the settle margin (whole-second times: two seconds)")
    func stampSettles() {
        let at = 1_000_000_000_000_000_000
        let fresh = FileStamp(inode: 1, size: 1, modified: at - 5_000_000, changed: at - 5_000_000)
        let settled = FileStamp(inode: 1, size: 1, modified: at - 30_000_000, changed: at - 25_000_000)
        let changedLate = FileStamp(inode: 1, size: 1, modified: at - 3_000_000_000, changed: at - 1_000)
        let wholeSeconds = FileStamp(inode: 1, size: 1, modified: at - 1_000_000_000, changed: at - 1_000_000_000)
        let wholeSecondsOld = FileStamp(inode: 1, size: 1, modified: at - 3_000_000_000, changed: at - 3_000_000_000)
        #expect(!fresh.isSettled(at: at))
        #expect(settled.isSettled(at: at))
        #expect(!changedLate.isSettled(at: at))
        #expect(!wholeSeconds.isSettled(at: at))
        #expect(wholeSecondsOld.isSettled(at: at))
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
        try await workspace.mustCommit(paths, prestage: false)
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
        try await workspace.mustCommit(paths)
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
        let summary = try await workspace.mustCommit(["new.txt"])
        #expect(summary.files.map(\.path) == [RepoPath("new.txt")])
    }

    @Test("a small batch stays loose (no pack per small commit)")
    func smallBatchLoose() async throws {
        var workspace = try await CommitterTests.Workspace()
        defer { workspace.fixture.remove() }
        let paths = try Self.files(workspace.fixture, count: 5, tag: "small")
        try await workspace.mustCommit(paths)
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
        try await workspace.mustCommit(["a.txt", "b.txt"], "the writer's change was")
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
