import Glibc
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem
import SyncTestKit
import Synchronization
import Testing

/// The committer against real git repositories: what it stages, what it refuses, when it waits.

@Suite("Committer")
struct CommitterTests {
    struct Workspace {
        let fixture: GitFixture
        let repository: Repository
        let committer: Committer
        let logged = LogCollector()
        var batch = 0

        init(
            fixture: GitFixture? = nil, staleLockAge: Duration = .seconds(600),
            beforeSwap: (@Sendable (Int) async throws -> Void)? = nil, stop: StopFlag = StopFlag(),
            afterIndexInstalled: (@Sendable () async throws -> Void)? = nil, splitIndex: Settings.SplitIndexMode = .auto
        ) async throws {
            if let fixture {
                self.fixture = fixture
            } else {
                self.fixture = try await GitFixture()
            }
            repository = try await self.fixture.repository()
            let stateDirectory = SyncService.stateDirectory(of: repository)
            try Syscall.makeDirectory(stateDirectory)
            var options = Committer.Options()
            options.staleLockAge = staleLockAge
            options.host = "test-host"
            options.beforeSwap = beforeSwap
            options.afterIndexInstalled = afterIndexInstalled
            options.stop = stop
            options.splitIndex = splitIndex
            committer = Committer(repository: repository, stateDirectory: stateDirectory, options: options, log: logged.logger)
            try await committer.prepare()
        }

        /// Commits as syncd's batches do: the prestage (the snapshot index) first, unless `prestage` is false.
        mutating func commit(_ paths: [String], directories: [String] = [], fullScan: Bool = false, prestage: Bool = true) async throws -> CommitOutcome {
            batch += 1
            let request = CommitRequest(
                paths: Set(paths.map(RepoPath.init)), directoryHints: Set(directories.map(RepoPath.init)),
                fullScan: fullScan, batch: batch, trigger: "test")
            if prestage { await committer.prestage(request) }
            return try await committer.commit(request)
        }

        /// Commits and returns the summary; anything else fails the test with the outcome and the
        /// committer's log, so a CI failure says why.
        @discardableResult
        mutating func mustCommit(_ paths: [String], prestage: Bool = true, _ what: String = "the batch") async throws -> CommitSummary {
            let outcome = try await commit(paths, prestage: prestage)
            guard case .committed(let summary) = outcome else {
                throw TestFailure("\(what) not committed: \(outcome); log: \(logged.messages.suffix(8).joined(separator: " | "))")
            }
            return summary
        }

        mutating func commit(bytes paths: [[UInt8]]) async throws -> CommitOutcome {
            batch += 1
            let request = CommitRequest(paths: Set(paths.map { RepoPath(bytes: $0) }), batch: batch, trigger: "test")
            await committer.prestage(request)
            return try await committer.commit(request)
        }

        func file(_ name: String) -> String { fixture.file(name) }
        func remove() { fixture.remove() }
    }

    static func committed(_ outcome: CommitOutcome) -> CommitSummary? {
        if case .committed(let summary) = outcome { return summary }
        return nil
    }

    static func deferral(_ outcome: CommitOutcome) -> Deferral? {
        if case .deferred(let deferral) = outcome { return deferral }
        return nil
    }

    @Test("add, modify, delete, the executable bit and symlinks, with the index equal to HEAD afterwards")
    func basicKinds() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        try Files.write(workspace.file("a.txt"), "one\n")
        try Files.write(workspace.file("tool.sh"), "#!/bin/sh\n")
        try Files.symlink("a.txt", at: workspace.file("link"))
        let first = try #require(Self.committed(try await workspace.commit(["a.txt", "tool.sh", "link"])))
        #expect(first.files.count == 3)
        #expect(try await workspace.fixture.statusLines().isEmpty)
        var tree = try await workspace.fixture.headTree()
        #expect(tree[Array("link".utf8)]?.hasPrefix("120000") == true)
        #expect(tree[Array("tool.sh".utf8)]?.hasPrefix("100644") == true)

        try Files.write(workspace.file("a.txt"), "two\n")
        chmod(workspace.file("tool.sh"), 0o755)
        try Files.removeTree(workspace.file("link"))
        let second = try #require(Self.committed(try await workspace.commit(["a.txt", "tool.sh", "link"])))
        #expect(Set(second.files.map(\.status)) == [.modified, .deleted])
        tree = try await workspace.fixture.headTree()
        #expect(tree[Array("tool.sh".utf8)]?.hasPrefix("100755") == true)
        #expect(tree[Array("link".utf8)] == nil)
        #expect(try await workspace.fixture.statusLines().isEmpty)
        let message = try await workspace.fixture.run(["log", "-1", "--format=%B"])
        #expect(message.contains("Syncd-Batch: 2"))
        #expect(message.contains("Syncd-Host: test-host"))
        #expect(message.contains("\nM a.txt\n"))
    }

    @Test("odd names: not UTF-8, a newline, a leading dash, glob and pathspec-magic characters")
    func oddNames() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        let names: [[UInt8]] = [
            [0x66, 0xFF, 0x6F], Array("new\nline".utf8), Array("-rf".utf8), Array("*?[:]".utf8),
            Array(":(glob)x".utf8), Array("sp ace".utf8), Array("back\\slash".utf8),
        ]
        for name in names { try Files.write(in: workspace.fixture.path, name: name) }
        // A decoy that a glob `*?[:]` or magic `:(glob)x` would also match: it must stay out.
        try Files.write(workspace.file("abc"), "decoy\n")
        let summary = try #require(Self.committed(try await workspace.commit(bytes: names)))
        #expect(summary.files.count == names.count)
        let tree = try await workspace.fixture.headTree()
        for name in names { #expect(tree[name] != nil, "missing \(name)") }
        #expect(tree[Array("abc".utf8)] == nil)
        let subject = try await workspace.fixture.run(["log", "-1", "--format=%B"])
        #expect(subject.contains("new\\nline"))
        #expect(subject.contains("f\\377o"))
    }

    @Test("a file replaced by a directory and back; a directory moved away and one moved in")
    func fileDirectorySwaps() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        try Files.write(workspace.file("p"), "file\n")
        _ = try await workspace.commit(["p"])
        try Files.removeTree(workspace.file("p"))
        try Files.mkdirs(workspace.file("p"))
        try Files.write(workspace.file("p/q"), "inside\n")
        _ = try #require(Self.committed(try await workspace.commit(["p", "p/q"])))
        var tree = try await workspace.fixture.headTree()
        #expect(tree[Array("p".utf8)] == nil && tree[Array("p/q".utf8)] != nil)
        try Files.removeTree(workspace.file("p"))
        try Files.write(workspace.file("p"), "file again\n")
        _ = try #require(Self.committed(try await workspace.commit(["p"], directories: ["p"])))
        tree = try await workspace.fixture.headTree()
        #expect(tree[Array("p".utf8)] != nil && tree[Array("p/q".utf8)] == nil)

        try Files.mkdirs(workspace.file("d/e"))
        for name in ["d/x", "d/y", "d/e/z"] { try Files.write(workspace.file(name)) }
        _ = try await workspace.commit(["d/x", "d/y", "d/e/z"])
        let outside = try TemporaryDirectory(prefix: "syncd-outside")
        defer { outside.remove() }
        try Files.move(workspace.file("d"), outside.sub("d"))
        // Only the directory is named, as inotify reports a move out of the tree.
        _ = try #require(Self.committed(try await workspace.commit(["d"], directories: ["d"])))
        tree = try await workspace.fixture.headTree()
        #expect(tree.keys.filter { $0.starts(with: Array("d/".utf8)) }.isEmpty)
        try Files.move(outside.sub("d"), workspace.file("moved"))
        _ = try #require(Self.committed(try await workspace.commit(["moved"], directories: ["moved"])))
        tree = try await workspace.fixture.headTree()
        #expect(tree[Array("moved/e/z".utf8)] != nil && tree[Array("moved/x".utf8)] != nil)
        #expect(try await workspace.fixture.statusLines().isEmpty)
    }

    @Test(".gitignore is honoured for untracked files; tracked files stay tracked; empty directories make no commit")
    func ignoreRules() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        try Files.write(workspace.file(".gitignore"), "*.log\n")
        try Files.write(workspace.file("kept.log"), "tracked before the rule\n")
        _ = try await workspace.fixture.run(["add", "-f", "kept.log", ".gitignore"])
        _ = try await workspace.fixture.run(["commit", "-qm", "base"])
        try Files.write(workspace.file("noise.log"), "ignored\n")
        try Files.write(workspace.file("kept.log"), "changed\n")
        let summary = try #require(Self.committed(try await workspace.commit(["noise.log", "kept.log"])))
        #expect(summary.files.map(\.path) == [RepoPath("kept.log")])
        try Files.mkdirs(workspace.file("empty/inner"))
        let outcome = try await workspace.commit(["empty", "empty/inner"], directories: ["empty", "empty/inner"])
        guard case .unchanged = outcome else { Issue.record("an empty directory made \(outcome)"); return }
    }

    @Test("a batch in which nothing changed makes no commit")
    func nothingChanged() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        try Files.write(workspace.file("a"), "same\n")
        _ = try await workspace.commit(["a"])
        let head = try await workspace.fixture.head()
        try Files.write(workspace.file("a"), "same\n")  // rewritten with the same bytes
        guard case .unchanged = try await workspace.commit(["a", "gone"]) else {
            Issue.record("expected no commit")
            return
        }
        #expect(try await workspace.fixture.head() == head)
    }

    @Test("a person's staged changes to other paths stay staged and out of syncd's commit")
    func personStagedKept() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        try Files.write(workspace.file("base"), "base\n")
        _ = try await workspace.commit(["base"])
        try Files.write(workspace.file("person.txt"), "staged by hand\n")
        try Files.write(workspace.file("base"), "staged change\n")
        _ = try await workspace.fixture.run(["add", "person.txt", "base"])
        try Files.write(workspace.file("writer.txt"), "from a writer\n")
        let summary = try #require(Self.committed(try await workspace.commit(["writer.txt"])))
        #expect(summary.files.map(\.path) == [RepoPath("writer.txt")])
        let tree = try await workspace.fixture.headTree()
        #expect(tree[Array("person.txt".utf8)] == nil)
        #expect(try await workspace.fixture.stagedPaths().sorted() == ["base", "person.txt"])
    }

    @Test("a staged path that is also in the batch is committed with its working-tree version, not the staged one; a full scan takes staged paths along (README, staging)")
    func stagedPathInBatchCommitsWorkingTree() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        try Files.write(workspace.file("notes.md"), "one\n")
        _ = try await workspace.commit(["notes.md"])
        try Files.write(workspace.file("notes.md"), "one\ntwo (staged)\n")
        _ = try await workspace.fixture.run(["add", "notes.md"])
        try Files.write(workspace.file("notes.md"), "one\ntwo (staged)\nthree (not staged)\n")
        let summary = try #require(Self.committed(try await workspace.commit(["notes.md"])))
        #expect(summary.files.map(\.path) == [RepoPath("notes.md")])
        #expect(try await workspace.fixture.run(["show", "HEAD:notes.md"]) == "one\ntwo (staged)\nthree (not staged)\n")
        #expect(try await workspace.fixture.stagedPaths().isEmpty, "the staged version is replaced in the index")
        try Files.write(workspace.file("other.md"), "staged, named by no event\n")
        _ = try await workspace.fixture.run(["add", "other.md"])
        _ = try #require(Self.committed(try await workspace.commit([], fullScan: true)))
        #expect(try await workspace.fixture.headTree()[Array("other.md".utf8)] != nil)
    }

    @Test("waits during a merge, rebase, cherry-pick, revert, bisect and on a detached HEAD")
    func defersOnForeignOperations() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        try Files.write(workspace.file("a"), "1\n")
        _ = try await workspace.commit(["a"])
        let head = try #require(try await workspace.fixture.head())
        let gitDir = Syscall.display(workspace.repository.gitDir)
        try Files.write(workspace.file("a"), "2\n")
        for (marker, code) in [
            ("MERGE_HEAD", Deferral.Code.merge), ("CHERRY_PICK_HEAD", .cherryPick), ("REVERT_HEAD", .revert), ("BISECT_LOG", .bisect),
        ] {
            try Files.write(gitDir + "/" + marker, head + "\n")
            let deferral = try #require(Self.deferral(try await workspace.commit(["a"])))
            #expect(deferral.code == code)
            try Files.removeTree(gitDir + "/" + marker)
        }
        try Files.mkdirs(gitDir + "/rebase-merge")
        #expect(Self.deferral(try await workspace.commit(["a"]))?.code == .rebase)
        #expect(Self.deferral(try await workspace.commit(["a"]))?.message.contains("git rebase --abort") == true)
        try Files.removeTree(gitDir + "/rebase-merge")
        _ = try await workspace.fixture.run(["checkout", "-q", "--detach"])
        #expect(Self.deferral(try await workspace.commit(["a"]))?.code == .detachedHead)
        _ = try await workspace.fixture.run(["checkout", "-q", "main"])
        #expect(Self.committed(try await workspace.commit(["a"])) != nil)
        #expect(try await workspace.fixture.head() != head)
    }

    @Test("waits on unmerged paths")
    func defersOnUnmergedPaths() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        try Files.write(workspace.file("c"), "base\n")
        _ = try await workspace.commit(["c"])
        let blob = try await workspace.fixture.run(["hash-object", "-w", "c"]).filter { !$0.isWhitespace }
        // Stage entries 1-3 for "c" (what a conflicted stash pop leaves, without MERGE_HEAD).
        let info = (1...3).map { "100644 \(blob) \($0)\tc\n" }.joined()
        _ = try await workspace.fixture.git.run(["update-index", "--index-info"], input: Array(("0 \(String(repeating: "0", count: 40))\tc\n" + info).utf8))
        try Files.write(workspace.file("c"), "resolved?\n")
        #expect(Self.deferral(try await workspace.commit(["c"]))?.code == .unmerged)
    }

    @Test("an index.lock held by a live process makes it wait; once released it commits")
    func heldIndexLock() async throws {
        var workspace = try await Workspace(staleLockAge: .seconds(1))
        defer { workspace.remove() }
        let lock = Syscall.display(workspace.repository.gitDir) + "/index.lock"
        // A process that creates index.lock and keeps it open, like a git command at work.
        let holder = ProcessHarness("/bin/sh", ["-c", "exec 3>>\"$0\"; echo held; exec tail -f /dev/null", lock])
        try await holder.waitForLine("the holder has the lock") { $0 == "held" }
        // Old enough to be "stale" by age, but held open: it must not be removed.
        var old = [timespec(tv_sec: 1, tv_nsec: 0), timespec(tv_sec: 1, tv_nsec: 0)]
        _ = utimensat(AT_FDCWD, lock, &old, 0)
        try Files.write(workspace.file("a"), "x\n")
        let deferral = try #require(Self.deferral(try await workspace.commit(["a"])))
        #expect(deferral.code == .indexLocked)
        #expect(deferral.message.contains("held open by pid"))
        #expect(Syscall.exists(Array(lock.utf8)))
        _ = try await holder.terminate()
        try Files.removeTree(lock)
        #expect(Self.committed(try await workspace.commit(["a"])) != nil)
    }

    @Test("a stale index.lock (old, open nowhere) is removed and the batch commits")
    func staleIndexLock() async throws {
        var workspace = try await Workspace(staleLockAge: .seconds(1))
        defer { workspace.remove() }
        let lock = Syscall.display(workspace.repository.gitDir) + "/index.lock"
        try Files.write(lock, "")
        try Files.write(workspace.file("a"), "x\n")
        #expect(Self.deferral(try await workspace.commit(["a"]))?.code == .indexLocked)
        var old = [timespec(tv_sec: 1, tv_nsec: 0), timespec(tv_sec: 1, tv_nsec: 0)]
        _ = utimensat(AT_FDCWD, lock, &old, 0)
        #expect(Self.committed(try await workspace.commit(["a"])) != nil)
        #expect(!Syscall.exists(Array(lock.utf8)))
        #expect(try await workspace.fixture.statusLines().isEmpty)
    }

    @Test("a full scan commits everything git sees as changed, including files no event named")
    func fullScan() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        try Files.mkdirs(workspace.file("x/y"))
        for name in ["one", "x/two", "x/y/three"] { try Files.write(workspace.file(name)) }
        let summary = try #require(Self.committed(try await workspace.commit([], fullScan: true)))
        #expect(summary.files.count == 3)
        #expect(try await workspace.fixture.statusLines().isEmpty)
    }

    @Test("a person commits between syncd's commit and its swap: the swap fails, the batch is redone on top, both survive")
    func compareAndSwapLost() async throws {
        let fixture = try await GitFixture()
        // The person's commit lands in the one window that matters: after syncd built its commit
        // on the old HEAD, before it moves the branch.
        let person: @Sendable (Int) async throws -> Void = { attempt in
            guard attempt == 1 else { return }
            try Files.write(fixture.file("person.txt"), "by hand\n")
            _ = try await fixture.git.run(["add", "person.txt"])
            // `git commit -- PATH` commits only that path, as a careful person does.
            _ = try await fixture.git.run(["commit", "-q", "-m", "person", "--", "person.txt"])
        }
        var workspace = try await Workspace(fixture: fixture, beforeSwap: person)
        defer { workspace.remove() }
        try Files.write(workspace.file("writer.txt"), "from a writer\n")
        let summary = try #require(Self.committed(try await workspace.commit(["writer.txt"])))
        #expect(summary.attempts == 2)
        let subjects = try await fixture.run(["log", "--format=%s"]).split(separator: "\n")
        #expect(subjects == ["syncd: add writer.txt", "person"])
        let tree = try await fixture.headTree()
        #expect(tree[Array("person.txt".utf8)] != nil && tree[Array("writer.txt".utf8)] != nil)
        #expect(try await fixture.statusLines().isEmpty)
        try await fixture.fsck()
    }

    @Test("a plain `git commit` in that window commits only what the person staged (syncd's batch is staged in its own copy of the index): the batch is redone on top, nothing is lost")
    func personCommitSweepsStagedBatch() async throws {
        let fixture = try await GitFixture()
        let person: @Sendable (Int) async throws -> Void = { attempt in
            guard attempt == 1 else { return }
            try Files.write(fixture.file("person.txt"), "by hand\n")
            _ = try await fixture.git.run(["add", "person.txt"])
            _ = try await fixture.git.run(["commit", "-q", "-m", "person"])
        }
        var workspace = try await Workspace(fixture: fixture, beforeSwap: person)
        defer { workspace.remove() }
        try Files.write(workspace.file("writer.txt"), "from a writer\n")
        let summary = try #require(Self.committed(try await workspace.commit(["writer.txt"])))
        #expect(summary.attempts == 2)
        #expect(try await fixture.run(["show", "--name-only", "--format=", "HEAD~1"]) == "person.txt\n")
        let tree = try await fixture.headTree()
        #expect(tree[Array("person.txt".utf8)] != nil && tree[Array("writer.txt".utf8)] != nil)
        #expect(try await fixture.statusLines().isEmpty)
        try await fixture.fsck()
    }

    @Test("files inside a nested repository (its own .git) are left to that repository")
    func nestedRepository() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        try Files.mkdirs(workspace.file("vendor/lib/src"))
        _ = try await workspace.fixture.git.run(["-C", "vendor/lib", "init", "-q"])
        try Files.write(workspace.file("vendor/lib/src/code.c"), "int x;\n")
        try Files.write(workspace.file("top.txt"), "mine\n")
        let summary = try #require(Self.committed(try await workspace.commit(["vendor/lib/src/code.c", "top.txt"])))
        #expect(summary.files.map(\.path) == [RepoPath("top.txt")])
        // One warning, that it is a separate repository; none from git (asked to stage inside it).
        let said = "vendor/lib/ in \(workspace.fixture.path) is a separate git repository"
        #expect(workspace.logged.warnings.filter { !$0.contains(said) }.isEmpty, "git was asked to stage inside the nested repository: \(workspace.logged.warnings)")
        #expect(workspace.logged.warnings.filter { $0.contains(said) }.count == 1, "\(workspace.logged.warnings)")
        #expect(await workspace.committer.findings.nestedRepositories == [RepoPath("vendor/lib")])

        // Said once: more changes inside it, and a full scan (git status shows it as `vendor/lib/`).
        try Files.write(workspace.file("vendor/lib/src/more.c"), "int y;\n")
        try Files.write(workspace.file("top.txt"), "mine again\n")
        _ = try await workspace.commit(["vendor/lib/src/more.c", "vendor/lib", "top.txt"], directories: ["vendor/lib"], fullScan: true)
        #expect(workspace.logged.warnings.filter { $0.contains(said) }.count == 1, "\(workspace.logged.warnings)")
        #expect(workspace.logged.warnings.filter { !$0.contains(said) }.isEmpty, "\(workspace.logged.warnings)")
        #expect(try await workspace.fixture.headTree().keys.allSatisfy { !$0.starts(with: Array("vendor/".utf8)) })

        // Its .git gone, it is no longer a nested repository.
        try Files.removeTree(workspace.file("vendor/lib/.git"))
        try Files.write(workspace.file("top.txt"), "mine once more\n")
        _ = try await workspace.commit(["top.txt"])
        #expect(await workspace.committer.findings.nestedRepositories.isEmpty)
    }

    @Test("a nested clone found by the startup scan (git status says `?? nest/`) is named, and nothing inside it is staged")
    func nestedRepositoryAtStartup() async throws {
        var workspace = try await Workspace()
        defer { workspace.remove() }
        try Files.mkdirs(workspace.file("nest"))
        _ = try await workspace.fixture.git.run(["-C", "nest", "init", "-q"])
        try Files.write(workspace.file("nest/n.txt"), "n\n")
        try Files.write(workspace.file("top.txt"), "top\n")
        let summary = try #require(Self.committed(try await workspace.commit([], fullScan: true)))
        #expect(summary.files.map(\.path) == [RepoPath("top.txt")])
        #expect(await workspace.committer.findings.nestedRepositories == [RepoPath("nest")])
    }

    @Test("an emergency stop sets the batch aside at the next step: before staging, or just before the branch moves")
    func emergencyStopBetweenSteps() async throws {
        let stop = StopFlag()
        var workspace = try await Workspace(beforeSwap: { _ in stop.set(true) }, stop: stop)
        defer { workspace.remove() }
        try Files.write(workspace.file("a"), "1\n")
        let late = try #require(Self.deferral(try await workspace.commit(["a"])))
        #expect(late.code == .emergencyStop)
        #expect(try await workspace.fixture.head() == nil, "the branch must not move after the stop")
        try await workspace.fixture.fsck()
        // Already stopped: nothing is even staged.
        try Files.write(workspace.file("b"), "2\n")
        #expect(Self.deferral(try await workspace.commit(["b"]))?.code == .emergencyStop)
        // The first batch was staged in syncd's copy of the index: the real one is untouched.
        #expect(try await workspace.fixture.stagedPaths() == [])
    }
}
