import Glibc
import Logging
import SyncCore
import SyncGit
import SyncSystem

/// Turns a batch of changed paths into one commit on the checked-out branch, in O(changed):
///
/// 1. defer while a foreign git operation runs (see `GitDirectoryState`);
/// 2. re-check every path (events are hints): lstat it, expand directories with `git ls-files`,
///    drop untracked ignored files with `git check-ignore`;
/// 3. stage exactly those paths with `git update-index --add --remove --replace`, into the
///    snapshot index (a copy of the real one that `prestage` made and filled before the lock;
///    see `prestage`), or into the real index when there is no usable copy;
/// 4. `write-tree`; a tree equal to HEAD's means nothing changed and no commit is made;
/// 5. `commit-tree`; the snapshot index replaces the real one (`install`);
/// 6. move the branch with a compare-and-swap (`update-ref REF NEW OLD`). If a person committed
///    meanwhile the swap fails and the batch is redone on top of their commit.
///
/// The index ends equal to the new HEAD for the batch's paths. When a person has staged changes to
/// other paths, the commit is built in a scratch index instead, so their staged work stays staged
/// and out of syncd's commit.
public actor Committer {
    public struct Options: Sendable {
        public var fsync = true
        public var splitIndex: Settings.SplitIndexMode = .auto
        public var staleLockAge: Duration = Settings.defaultStaleLockAge
        public var host = ProcessTable.hostName
        /// Called after the commit object exists and before the branch moves: a seam for tests
        /// that make a person commit in exactly that window.
        public var beforeSwap: (@Sendable (_ attempt: Int) async throws -> Void)?
        /// Called after the index copy replaced the real index (syncd holds `index.lock`) and
        /// before the branch moves: a seam for tests.
        public var afterIndexInstalled: (@Sendable () async throws -> Void)?
        /// Never staged: the lock directory when it lies inside the working tree.
        public var excluded: [RepoPath] = []
        /// An emergency stop in progress: the commit stops at the next step boundary.
        public var stop = StopFlag()
        /// Paths per update-index run: a stop is noticed between runs.
        public var stagingChunk = 2000
        /// When the service started (nanoseconds since the epoch; 0: not a service): an unheld
        /// index.lock older than that is stale at once (`GitDirectoryState.serviceStart`).
        public var serviceStarted = 0
        /// Batches of at least this many paths stage their blobs into a pack (`Int.max`: never).
        public var packThreshold = Committer.packThreshold
        public init() {}
    }

    private let repository: Repository
    private let git: GitRunner
    private let options: Options
    private let log: Logger
    private let gitState: GitDirectoryState
    private var identity: [String: String] = [:]
    private var writeConfiguration: [GitArgument] = []
    /// `writeConfiguration` for staging into the snapshot index under the sync lock: objects
    /// are fsynced as always, the index is not (it is fsynced before it replaces the real one).
    private var snapshotConfiguration: [GitArgument] = []
    private var splitIndexInUse = false
    private var knownIndex: FileStamp?
    /// The commit HEAD pointed to when `knownIndex` was recorded: a `git reset --soft` or an
    /// `update-ref` moves HEAD without touching the index, and the index then differs from the
    /// new HEAD although the file did not change.
    private var knownHead: String?
    private var othersStagedLastTime = true
    private var emptyTree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    private let scratchIndex: [UInt8]
    /// The real index, `.git/index` (per worktree).
    private let indexFile: [UInt8]
    private var commitsSinceMaintenance = 0
    /// Commits between two `git gc --auto` runs (git's automatic gc is off in syncd's calls).
    static let maintenanceEvery = 100
    /// More packs than this get a geometric repack at the next maintenance.
    package static let maxPacks = 8
    /// A path that never exists: git commands that need no index get it as GIT_INDEX_FILE.
    private let noIndex: [UInt8]
    private let repairs: RecoveryNotes

    /// The files `prestage` staged into the snapshot index, as they were before git read them,
    /// when that stamp can be trusted (see `FileStamp.isSettled`): under the lock, those that
    /// still have it are not read again.
    private var prestaged: [RepoPath: FileStamp] = [:]
    /// The copy of the index a batch is staged into (`index.prestage`): a copy of the real index
    /// made before the sync lock, with the batch's files staged into it by `prestage`. Under the
    /// lock only what changed since is staged; it replaces the real index after the commit.
    private let prestageIndex: [UInt8]
    private var snapshotIndex: SnapshotIndex?
    /// The real index as it was when the snapshot or scratch copy was made: a hard link, since
    /// git replaces the index by renaming a new file over it, never in place. `install` reads
    /// it to tell what a person's git changed in the index since.
    private let baseIndex: [UInt8]
    /// True while `index.base` is a link to the index as copied (not a leftover of any kind).
    private var baseLinked = false

    struct SnapshotIndex {
        /// The real index when it was copied (nil: there was none). The copy is used only while
        /// the real index is still this one.
        var base: FileStamp?
        /// Every path a prestage pass staged into the copy.
        var prestaged: Set<RepoPath> = []
    }

    /// Where a batch was staged, and so how `install` brings it into the real index before the
    /// branch moves. Each base is the real index's stamp when syncd last knew what it held.
    enum IndexRoute {
        /// Into the snapshot index, a copy of the real one: the copy replaces it.
        case snapshot(SnapshotIndex)
        /// Into the scratch index (a person's staged changes kept out of the commit): the
        /// batch's entries are written into the real index.
        case scratch(base: FileStamp?)

        var base: FileStamp? {
            switch self {
            case .snapshot(let snapshot): return snapshot.base
            case .scratch(let base): return base
            }
        }
    }

    /// The repairs made since the last call (stale locks removed), for the journal.
    public func takeRecoveries() -> [String] { repairs.take() }

    /// What keeps files out of commits, for status (see `CommitterFindings`).
    public private(set) var findings = CommitterFindings()
    /// Paths git could not read in the current attempt.
    private var unreadableThisAttempt: Set<RepoPath> = []

    public init(repository: Repository, stateDirectory: [UInt8], options: Options, log: Logger) {
        self.repository = repository
        self.git = repository.git
        self.options = options
        self.log = log
        // What the lock check says is a repair (a stale index.lock removed) or one it could not
        // make: each is also a `recovery` record (`takeRecoveries`).
        let repairs = RecoveryNotes(log)
        self.repairs = repairs
        self.gitState = GitDirectoryState(repository: repository, staleLockAge: options.staleLockAge, log: repairs.log, serviceStart: options.serviceStarted)
        self.scratchIndex = stateDirectory + Array("/index.next".utf8)
        self.indexFile = repository.gitDir + Array("/index".utf8)
        self.noIndex = stateDirectory + Array("/no-index".utf8)
        self.prestageIndex = stateDirectory + Array("/index.prestage".utf8)
        self.baseIndex = stateDirectory + Array("/index.base".utf8)
    }

    /// One-time checks: the commit identity, the object format, and whether to split the index.
    public func prepare() async throws {
        let ident = try await git.run(["var", "GIT_COMMITTER_IDENT"], readOnly: true, acceptedExitCodes: [0, 128])
        if ident.exitCode != 0 {
            let email = "syncd@\(options.host)"
            identity = [
                "GIT_AUTHOR_NAME": "syncd", "GIT_AUTHOR_EMAIL": email,
                "GIT_COMMITTER_NAME": "syncd", "GIT_COMMITTER_EMAIL": email,
            ]
            log.warning("""
                no git identity (user.name/user.email) is configured for \(repository.workTreeDisplay); \
                commits are made as "syncd <\(email)>" (set one with `git config user.name ...` and `git config user.email ...`)
                """)
        }
        let tree = try await git.run(["hash-object", "-t", "tree", "--stdin"], input: [], readOnly: true)
        emptyTree = tree.text
        var configuration: [GitArgument] = []
        var snapshot: [GitArgument] = []
        if options.fsync {
            configuration += ["-c", "core.fsync=all", "-c", "core.fsyncMethod=batch"]
            snapshot += ["-c", "core.fsync=objects,derived-metadata", "-c", "core.fsyncMethod=batch"]
        }
        let indexSize = (try? Syscall.lstat(indexFile).st_size) ?? 0
        // A repository that says core.splitIndex=false has every other git write the index
        // whole again; a split by syncd would then leave a new full-size shared index in .git at
        // each of its commits (git keeps them two weeks).
        let wanted = options.splitIndex == .true || (options.splitIndex == .auto && indexSize >= 4 * 1024 * 1024)
        // Asked only when a split is wanted (most indexes are small).
        var gitSaysNo = false
        if wanted {
            let setting = try await git.run(["config", "--type=bool", "--get", "core.splitIndex"], readOnly: true, acceptedExitCodes: [0, 1, 128])
            gitSaysNo = setting.text == "false"
        }
        if wanted, gitSaysNo, options.splitIndex == .auto {
            log.info("the index is \(indexSize / 1024) KiB, but core.splitIndex is false in \(repository.workTreeDisplay): syncd leaves it whole")
        } else if wanted {
            configuration += ["-c", "core.splitIndex=true"]
            splitIndexInUse = true
            log.info("using a split index (the index is \(indexSize / 1024) KiB): each commit rewrites only the changed entries")
            if gitSaysNo {
                log.warning("""
                    syncd.splitIndex is true but core.splitIndex is false in \(repository.workTreeDisplay): every other git writes \
                    the index whole again, and each syncd commit then leaves a new full-size sharedindex file in .git (kept two \
                    weeks); set both the same (`git config core.splitIndex true`, or `git config syncd.splitIndex auto`)
                    """)
            }
        }
        writeConfiguration = configuration
        // A split index written into the snapshot copy may come with a new shared index, which
        // git writes into .git itself: only git can fsync that file, so with a split index the
        // copy is written with every fsync on.
        snapshotConfiguration = splitIndexInUse ? configuration : snapshot
    }

    /// Commits the batch, or says why it has to wait. Throws on failures that need attention
    /// (disk full, git errors); nothing is lost then either: the changes stay in the working tree.
    public func commit(_ request: CommitRequest) async throws -> CommitOutcome {
        defer {
            prestaged = [:]
            snapshotIndex = nil
            Self.removePrivateIndex(prestageIndex)
            Self.removePrivateIndex(scratchIndex)
            try? Syscall.unlink(baseIndex)
            baseLinked = false
        }
        let outcome: CommitOutcome
        do {
            outcome = try await attempt(request)
        } catch let error as SyncError where error.code == .git && error.message.contains(".lock': File exists") {
            // Another git process took a lock between the check and syncd's own git call.
            if let deferral = gitState.foreignOperation() { return await counted(deferral, request) }
            return await counted(Deferral(
                code: .indexLocked,
                message: "another git process held a lock in \(repository.workTreeDisplay) (\(error.message)); the batch waits"), request)
        }
        if case .deferred(let deferral) = outcome { return await counted(deferral, request) }
        countedPending = nil
        return outcome
    }

    /// A full scan that waits knows no paths of its own: `git status` (read-only, it needs no
    /// lock) counts what waits, at most every `countInterval`, so status never says 0 pending
    /// while thousands of files wait behind a lock. Never during an emergency stop (no git then).
    private func counted(_ deferral: Deferral, _ request: CommitRequest) async -> CommitOutcome {
        guard request.fullScan, deferral.code != .emergencyStop else { return .deferred(deferral) }
        let now = ContinuousClock.now
        if countedPending == nil || now - countedPending!.at >= Self.countInterval {
            if let entries = try? await GitStatus.dirtyPaths(git) {
                let excluded = options.excluded
                let count = entries.filter { entry in Self.isStageable(entry.path) && !excluded.contains { entry.path.isWithin($0) } }.count
                countedPending = (count, now)
            }
        }
        var deferral = deferral
        deferral.pendingPaths = countedPending?.count
        return .deferred(deferral)
    }

    /// The last count of a waiting full scan, and when it was taken.
    private var countedPending: (count: Int, at: ContinuousClock.Instant)?
    static let countInterval: Duration = .seconds(10)

    private func attempt(_ request: CommitRequest) async throws -> CommitOutcome {
        var attempts = 0
        var released = false
        while true {
            attempts += 1
            defer { releaseIndexLock() }
            if let deferral = gitState.foreignOperation() { return .deferred(deferral) }
            guard let branch = gitState.branch() else {
                return .deferred(Deferral(
                    code: .detachedHead,
                    message: "HEAD is detached in \(repository.workTreeDisplay): syncd commits only onto a branch; "
                        + "check one out (`git switch BRANCH`) and it continues"))
            }
            let head = try await resolve(branch)
            if head != nil, !Syscall.exists(indexFile) {
                // Staging would build a new index of the batch alone: every other file would look
                // deleted to git, and to a person's next `git commit`.
                return .deferred(Deferral(
                    code: .indexChanged,
                    message: "the index of \(repository.workTreeDisplay) (.git/index) is missing: syncd does not commit from an empty index; "
                        + "`git reset` restores it from HEAD (your files stay as they are), and syncd continues"))
            }
            let staging = try await stagingPaths(for: request)
            defer { settleUnreadable(staged: staging) }
            if staging.isEmpty && !request.fullScan { return .unchanged }
            let others = try await stagedByOthers(head: head, batch: staging)
            if case .unmerged(let paths) = others {
                return .deferred(Deferral(
                    code: .unmerged,
                    message: "unmerged paths in \(repository.workTreeDisplay) (\(paths.prefix(3).map(\.description).joined(separator: ", "))): "
                        + "resolve the conflict and `git add` the files, and syncd continues"))
            }
            if let stopped = stopCheck("staging") { return stopped }
            // Where the batch is staged, and so how it reaches the real index (`install`). Never
            // straight into .git/index: a `git reset` between that staging and write-tree would
            // make the batch look unchanged.
            let route: IndexRoute
            if case .staged(let staged) = others, !staged.isEmpty {
                route = .scratch(base: try prepareScratchIndex())
                try await resetInScratch(staged, head: head)
            } else if attempts == 1, let usable = usableSnapshotIndex(staging) {
                // The copy the prestage staged into, still a copy of the real index as it is
                // now, and holding no path this batch does not stage.
                route = .snapshot(usable)
            } else {
                // The prestage's copy is stale (a person's git wrote the index since, even a
                // `git status`) or there was none: a fresh copy, without prestaged entries, so
                // the batch still reaches the index only through `install`, under index.lock
                // until the branch has moved.
                prestaged = [:]
                snapshotIndex = try await freshSnapshotIndex()
                guard let fresh = snapshotIndex else {
                    return .deferred(Deferral(
                        code: .indexChanged,
                        message: "the index of \(repository.workTreeDisplay) kept changing while syncd copied it (another git at work); the batch waits"))
                }
                route = .snapshot(fresh)
            }
            let environment: [String: String]
            switch route {
            case .snapshot(let snapshot):
                environment = ["GIT_INDEX_FILE": Syscall.display(prestageIndex)]
                if try await !stageSnapshot(staging, snapshot: snapshot, environment: environment) { return stopCheck("staging") ?? .unchanged }
            case .scratch:
                environment = ["GIT_INDEX_FILE": Syscall.display(scratchIndex)]
                if try await !stageSplit(staging, environment: environment) { return stopCheck("staging") ?? .unchanged }
            }
            // The snapshot is taken: the index holds the batch, and nothing after this reads the
            // working tree (write-tree reads the index; `install` writes the new tree's entries).
            // Writers may go on while the tree and the commit are written and the branch moves
            // (their changes are the next batch's).
            if !released, let snapshotTaken = request.snapshotTaken {
                released = true
                await snapshotTaken()
            }
            if let stopped = stopCheck("writing the tree") { return stopped }
            let tree = try await git.run(writeConfiguration + ["write-tree"], environment: environment).text
            if tree == (head?.tree ?? emptyTree) {
                guard case .snapshot = route else { return .unchanged }
                if let deferral = try await install(route, paths: staging, head: head, tree: tree) { return .deferred(deferral) }
                recordIndex(head: head?.commit)
                return .unchanged
            }
            let files = try await changedFiles(from: head?.tree ?? emptyTree, to: tree)
            if let stray = Self.unstaged(files.map(\.path), staged: staging) {
                // The index changed under syncd (removed, replaced, or staged into between the
                // check and the staging): committing it would change what syncd did not stage,
                // such as deleting every file when `.git/index` was removed. Never committed.
                // The next attempt asks git what others staged (a path staged meanwhile then goes
                // through the scratch index instead of stopping every batch).
                if case .snapshot = route { recordIndex(head: head?.commit) }
                othersStagedLastTime = true
                return .deferred(Deferral(
                    code: .indexChanged,
                    message: "the index of \(repository.workTreeDisplay) changed while syncd staged a batch (removed or replaced, or HEAD moved or a path was staged meanwhile): the commit "
                        + "would change \(stray.count) path(s) syncd did not stage (\(stray.prefix(3).map(\.description).joined(separator: ", "))"
                        + "\(stray.count > 3 ? ", …" : "")); nothing was committed. If .git/index was removed, `git reset` restores it "
                        + "(your files stay as they are); syncd retries"))
            }
            let message = CommitMessage.make(
                files: files, batch: request.batch, host: options.host, trigger: request.trigger, writer: request.writer)
            var commitArguments: [GitArgument] = writeConfiguration + ["commit-tree", GitArgument(tree)]
            if let head { commitArguments += ["-p", GitArgument(head.commit)] }
            commitArguments += ["-F", "-"]
            let commit = try await git.run(commitArguments, input: Array(message.utf8), environment: identity).text
            if options.fsync {
                try durable { () throws(SyscallError) in try Syscall.syncFileSystem(containing: repository.commonDir + Array("/objects".utf8)) }
            }
            try await options.beforeSwap?(attempts)
            if let stopped = stopCheck("moving the branch") { return stopped }
            // The real index takes the batch before the branch moves, as with `git commit`: a
            // person's commit from the index in between must not undo the batch.
            if let deferral = try await install(route, paths: staging, head: head, tree: tree) { return .deferred(deferral) }
            try await options.afterIndexInstalled?()
            let expected = head?.commit ?? String(repeating: "0", count: commit.count)
            // HEAD, not the branch read at the start: git reads HEAD under its lock and moves the
            // branch it points to now, compared against `expected`. A person who switched branches
            // meanwhile (`git switch -c NEW` keeps the commit) gets the batch on the branch they
            // are on; a switch to a branch elsewhere fails the compare and the batch is redone.
            let swap = try await git.run(
                writeConfiguration + [
                    "update-ref", "-m", GitArgument("syncd: batch \(request.batch)"), "HEAD",
                    GitArgument(commit), GitArgument(expected),
                ],
                acceptedExitCodes: [0, 1, 128]
            )
            if swap.exitCode != 0 {
                if swap.standardError.contains("but expected") || swap.standardError.contains("already exists") {
                    if released {
                        // The redo must snapshot again under the sync lock, which is released.
                        log.info("\(branch) moved while batch \(request.batch) was committed (a person's commit?); the batch is redone on top under the lock", metadata: ["batch": "\(request.batch)"])
                        return .deferred(Deferral(code: .casContention, message: "\(branch) moved while the batch was committed; it is redone on top"))
                    }
                    log.info("\(branch) moved while batch \(request.batch) was committed (a person's commit?); redoing the batch on top", metadata: ["batch": "\(request.batch)"])
                    if attempts < 5 { continue }
                    return .deferred(Deferral(code: .casContention, message: "\(branch) keeps moving; the batch waits and is retried"))
                }
                if swap.standardError.contains(".lock") {
                    return .deferred(Deferral(code: .refLocked, message: "\(branch) is locked by another git process; the batch waits"))
                }
                throw SyncError(
                    GitRunner.isDiskFull(swap.standardError) ? .diskFull : .git,
                    "could not move \(branch) to the new commit in \(repository.workTreeDisplay): "
                        + (swap.standardError.split(separator: "\n").first.map(String.init) ?? "exit \(swap.exitCode)"))
            }
            guard let landed = gitState.branch() else {
                // HEAD was detached at the swap, at the same commit: it moved, not a branch. Put it
                // back (compare-and-swap again) and wait for a branch, as syncd always does.
                if head != nil {
                    _ = try? await git.run(
                        writeConfiguration + [
                            "update-ref", "--no-deref", "-m", GitArgument("syncd: batch \(request.batch) undone (HEAD is detached)"), "HEAD",
                            GitArgument(expected), GitArgument(commit),
                        ],
                        acceptedExitCodes: [0, 1, 128])
                }
                return .deferred(Deferral(
                    code: .detachedHead,
                    message: "HEAD is detached in \(repository.workTreeDisplay): syncd commits only onto a branch; "
                        + "check one out (`git switch BRANCH`) and it continues"))
            }
            if landed != branch {
                log.info("HEAD moved from \(branch) to \(landed) while batch \(request.batch) was committed: the batch is on \(landed), the branch checked out now", metadata: ["batch": "\(request.batch)"])
            }
            if options.fsync { try durable { () throws(SyscallError) in try syncRefDirectories(landed) } }
            recordIndex(head: commit)
            releaseIndexLock()
            commitsSinceMaintenance += 1
            if commitsSinceMaintenance >= Self.maintenanceEvery {
                await maintain()
            } else if packRunsSinceRepack > 0 {
                await repackIfMany()
            }
            return .committed(CommitSummary(commit: commit, branch: landed, files: files, attempts: attempts))
        }
    }

    /// `git gc --auto` in the foreground, with the repository's own thresholds (gc.auto): loose
    /// objects from months of commits get packed. It never touches the working tree or the index.
    func maintain() async {
        commitsSinceMaintenance = 0
        do {
            _ = try await git.run(["-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"], userMaintenanceSettings: true)
            await repackIfMany()
        } catch {
            log.warning("git gc --auto failed in \(repository.workTreeDisplay): \(error); syncd tries again after \(Self.maintenanceEvery) more commits")
        }
    }

    /// Prepares the batch's snapshot index before the caller takes the sync lock, so that
    /// writers wait only for what changed since:
    ///
    /// - the real index is copied to `index.prestage`, keeping its times (git's racy-entry check
    ///   compares entries with the index file's time);
    /// - a large batch's files are staged into the copy through the pack writer, in up to
    ///   `prestagePasses` passes (each writes again what changed during the one before).
    ///
    /// Each file is stamped (inode, size, nanosecond times) before git reads it. Under the lock
    /// (`stageSnapshot`), a file that still has its stamp is not read again: git's entry for it
    /// was made from this very version. Only a stamp taken after the file's last change had
    /// settled counts (`FileStamp.isSettled`): a write in the same clock tick as the stamp could
    /// leave the times unchanged. Every other path is staged under the lock, its prestaged entry
    /// removed first, so no stat data git took while writers wrote is ever trusted. After the
    /// commit the copy replaces the real index (`install`), when nobody changed the real one.
    ///
    /// With a split index the copy is of the small `.git/index` only; the shared index it
    /// names stays in .git, where git also writes a new one. Best effort: a file git cannot read
    /// here is left to the staging under the lock, which reports it.
    public func prestage(_ request: CommitRequest) async {
        prestaged = [:]
        snapshotIndex = nil
        guard !options.stop.isSet, gitState.foreignOperation() == nil else { return }
        snapshotIndex = try? copySnapshotIndex()
        guard let paths = try? await stagingPaths(for: request), paths.count >= options.packThreshold else { return }
        // A writer that keeps rewriting the batch's files makes the first pass stale at once:
        // further passes write what changed during the one before, until too little is left
        // for a pack (what then remains is staged under the lock).
        var todo = paths
        for pass in 1...Self.prestagePasses {
            await prestagePass(todo)
            if pass == Self.prestagePasses { return }
            todo = paths.filter { path in
                let now = FileStamp(repository.absolute(path))
                return now != nil && now != prestaged[path]
            }
            if todo.count < options.packThreshold || options.stop.isSet { return }
        }
    }

    /// At most this many prestage passes (see `prestage`).
    static let prestagePasses = 3

    /// The real index copied to `index.prestage` with its times (and kept as it was in
    /// `index.base`), and its stamp; nil when it changed during the copy. Throws when it cannot
    /// be copied.
    private func copySnapshotIndex() throws -> SnapshotIndex? {
        Self.removePrivateIndex(prestageIndex)
        let before = linkBase()
        if before != nil {
            do {
                try Self.copyKeepingTimes(indexFile, to: prestageIndex)
            } catch {
                try? Syscall.unlink(prestageIndex)
                throw SyncError(.syscall, "cannot copy the index to \(Syscall.display(prestageIndex)); check the free space and the permissions of that directory", cause: error)
            }
        }
        guard indexStamp() == before else {
            try? Syscall.unlink(prestageIndex)
            return nil
        }
        return SnapshotIndex(base: before)
    }

    /// A fresh snapshot copy under the lock; nil when the index kept changing during the copy
    /// (another git writing it over and over).
    private func freshSnapshotIndex() async throws -> SnapshotIndex? {
        for _ in 0..<Self.copyTries {
            if let snapshot = try copySnapshotIndex() { return snapshot }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    static let copyTries = 5

    /// Keeps the real index as it is now in `index.base` (a hard link) and returns its stamp;
    /// nil when there is no index. Without a link (a file system without hard links, or the
    /// index replaced meanwhile) `install` knows only HEAD's entries.
    private func linkBase() -> FileStamp? {
        try? Syscall.unlink(baseIndex)
        baseLinked = false
        guard (try? Syscall.link(indexFile, to: baseIndex)) != nil else { return indexStamp() }
        let stamp = indexStamp()
        baseLinked = stamp != nil && FileStamp(baseIndex)?.inode == stamp?.inode
        if !baseLinked { try? Syscall.unlink(baseIndex) }
        return stamp
    }

    /// Stages the regular files among `paths` into `index.prestage`, each chunk through the pack
    /// writer; a chunk that fails (a file gone or unreadable) ends the pass.
    private func prestagePass(_ paths: [RepoPath]) async {
        let stampedAt = WallClock.nanoseconds()
        var stamps: [RepoPath: FileStamp] = [:]
        for path in paths {
            if let stamp = FileStamp(repository.absolute(path)) { stamps[path] = stamp }
        }
        let files = paths.filter { stamps[$0] != nil }
        var start = 0
        while start < files.count {
            if options.stop.isSet { return }
            let end = min(files.count, start + max(1, options.stagingChunk))
            var input: [UInt8] = []
            for path in files[start..<end] { input += path.bytes + [0] }
            guard let result = try? await git.run(
                snapshotConfiguration + Self.packWriter + ["update-index", "--add", "--replace", "-z", "--stdin"],
                input: input, acceptedExitCodes: [0, 128], environment: ["GIT_INDEX_FILE": Syscall.display(prestageIndex)]),
                result.exitCode == 0
            else { return }
            packRunsSinceRepack += 1
            for path in files[start..<end] {
                snapshotIndex?.prestaged.insert(path)
                if let stamp = stamps[path], stamp.isSettled(at: stampedAt) {
                    prestaged[path] = stamp
                } else {
                    prestaged[path] = nil
                }
            }
            start = end
        }
    }

    /// The snapshot index when the batch can be staged into it: the real index is still the
    /// one copied (a person's `git add` meanwhile would be lost otherwise), and every path a
    /// prestage pass staged is one this batch stages (one that became ignored, say, must not
    /// be committed from the copy).
    ///
    /// A lock on the copy is stale (syncd's own git calls have all ended by now): a prestage git
    /// was killed mid-write, and the copy is made afresh.
    private func usableSnapshotIndex(_ staging: [RepoPath]) -> SnapshotIndex? {
        guard let snapshot = snapshotIndex, snapshot.base == indexStamp(),
            !Syscall.exists(prestageIndex + Array(".lock".utf8))
        else { return nil }
        if !snapshot.prestaged.isEmpty, !snapshot.prestaged.isSubset(of: Set(staging)) { return nil }
        return snapshot
    }

    /// Stages the batch into the snapshot index under the lock. Files with the stamp they had
    /// when the prestage staged them are not read again; every other prestaged entry is removed
    /// first (its stat data was taken while writers wrote, and a same-second rewrite of the
    /// same size would look unchanged to git), then the rest is staged as usual. The index is
    /// not fsynced here: `install` does that before it replaces the real one.
    private func stageSnapshot(_ paths: [RepoPath], snapshot: SnapshotIndex, environment: [String: String]) async throws -> Bool {
        let (written, unwritten) = unchangedSincePrestage(paths)
        let stale = snapshot.prestaged.subtracting(written).sorted()
        if !stale.isEmpty {
            var input: [UInt8] = []
            for path in stale { input += path.bytes + [0] }
            _ = try await git.run(
                snapshotConfiguration + ["update-index", "--force-remove", "-z", "--stdin"], input: input, environment: environment)
        }
        dropped = []
        let staged = try await stage(
            unwritten, environment: environment, pack: unwritten.count >= options.packThreshold, configuration: snapshotConfiguration)
        // A removed entry whose file git then could not read (left out of the batch) gets the
        // real index's entry back: leaving a file out must not delete it from the commit.
        let lost = Set(stale).intersection(dropped)
        if !lost.isEmpty {
            let entries = try await indexEntries(of: lost, environment: [:])
            try await writeEntries(lost.sorted(), entries, configuration: snapshotConfiguration, environment: environment)
        }
        return staged
    }

    /// Paths the last staging run left out (git could not read them, or they changed while read).
    private var dropped: Set<RepoPath> = []

    /// The entries an index (`environment`'s GIT_INDEX_FILE, or the real one) has for `paths`,
    /// as `update-index --index-info` lines ("MODE OID\tPATH").
    private func indexEntries(of paths: Set<RepoPath>, environment: [String: String]) async throws -> [RepoPath: [UInt8]] {
        let arguments: [GitArgument] = ["ls-files", "--stage", "-z", "--full-name"] + Self.pathspecs(paths)
        // "MODE OID STAGE\tPATH"
        return Self.indexInfo(try await git.run(arguments, readOnly: true, environment: environment), oidField: 1, paths: paths)
    }

    /// `-- PATHS` as literal pathspecs; nothing (the whole listing, filtered by the caller) past
    /// 1,000 paths, which would make a long command line.
    static func pathspecs(_ paths: Set<RepoPath>) -> [GitArgument] {
        paths.count <= 1000 ? ["--"] + paths.map(GitArgument.literal) : []
    }

    /// `update-index --index-info` lines ("MODE OID\tPATH") for `paths` from a listing of
    /// "FIELD FIELD FIELD\tPATH" records (`ls-files --stage`, `ls-tree`), the mode first and the
    /// object id at `oidField`.
    static func indexInfo(_ listed: GitResult, oidField: Int, paths: Set<RepoPath>) -> [RepoPath: [UInt8]] {
        var entries: [RepoPath: [UInt8]] = [:]
        for record in listed.nulSeparatedFields {
            guard let tab = record.firstIndex(of: UInt8(ascii: "\t")) else { continue }
            let path = RepoPath(bytes: Array(record[(tab + 1)...]))
            guard paths.contains(path) else { continue }
            let fields = record[..<tab].split(separator: UInt8(ascii: " "))
            guard fields.count == 3 else { continue }
            var line = Array(fields[0])
            line.append(UInt8(ascii: " "))
            line += fields[oidField]
            line.append(UInt8(ascii: "\t"))
            entries[path] = line + path.bytes
        }
        return entries
    }

    /// Writes `entries` for `paths` into an index with `update-index --index-info`, without stat
    /// data (git reads those files again when it next looks); a path with no entry is removed.
    private func writeEntries(
        _ paths: [RepoPath], _ entries: [RepoPath: [UInt8]], configuration: [GitArgument], environment: [String: String]
    ) async throws {
        let removal = Array("0 \(String(repeating: "0", count: emptyTree.count))\t".utf8)
        var input: [UInt8] = []
        for path in paths {
            input += entries[path] ?? (removal + path.bytes)
            input.append(0)
        }
        let result = try await git.run(
            configuration + ["update-index", "-z", "--index-info"], input: input, acceptedExitCodes: [0, 128], environment: environment)
        if result.exitCode != 0 {
            throw SyncError(
                .git,
                "git update-index --index-info failed in \(repository.workTreeDisplay): "
                    + (result.standardError.split(separator: "\n").first.map(String.init) ?? "exit \(result.exitCode)"))
        }
    }

    /// Before the branch moves, under git's own lock (`index.lock`), held until the branch has
    /// moved: the real index takes the batch, so that neither a person's commit nor a `git
    /// reset` in between can undo it.
    ///
    /// - Nothing is written when the branch moved (a person's commit, `git reset --soft`): the
    ///   compare-and-swap fails next and the batch is redone on top; the index is theirs.
    /// - A snapshot index (a copy of the real one) replaces it, fsynced first, when the real
    ///   index is still the one copied.
    /// - Otherwise the batch's entries, from the new tree, are written into a copy of the real
    ///   index as it is now, without stat data (git reads those files again when it next
    ///   looks), and the copy replaces it. When the index changed since it was copied, a path
    ///   is written only where its entry is still the one copied (`index.base`) or HEAD's: a
    ///   path a person staged meanwhile keeps their version, and a version they staged before
    ///   the batch is replaced by the batch's newer one, as without the change.
    ///
    /// Returns why the batch must wait instead (the branch does not move then): another git
    /// holds `index.lock` for longer than `installWait`, or `.git/index` was removed.
    private func install(_ route: IndexRoute, paths: [RepoPath], head: Head?, tree: String) async throws -> Deferral? {
        let lockFile = indexFile + Array(".lock".utf8)
        var locked = false
        for _ in 0..<Self.installTries {
            if let lock = try? Syscall.open(lockFile, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o644) {
                Syscall.close(lock)
                locked = true
                break
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        guard locked else {
            return Deferral(
                code: .indexLocked,
                message: "another git process holds \(Syscall.display(lockFile)) while syncd finishes a batch; the batch waits and is committed when it is released")
        }
        // Held until the branch has moved (`releaseIndexLock`), as `git commit` holds it: a
        // `git reset` or `read-tree` in between would put the index back to the old HEAD.
        heldIndexLock = lockFile
        // The base is this install's only.
        defer {
            try? Syscall.unlink(baseIndex)
            baseLinked = false
        }
        let now = indexStamp()
        if route.base != nil || head != nil, now == nil {
            return Deferral(
                code: .indexChanged,
                message: "the index of \(repository.workTreeDisplay) (.git/index) was removed while syncd committed a batch: syncd does not "
                    + "commit from an empty index; `git reset` restores it from HEAD (your files stay as they are), and syncd continues")
        }
        // The branch moved without the index (`git reset --soft`, `update-ref`): the index is
        // theirs, and the compare-and-swap fails next.
        if try await resolveHEAD() != head?.commit { return nil }
        let unchanged = now == route.base
        if case .snapshot = route, unchanged {
            try durable { () throws(SyscallError) in
                if options.fsync { try Syscall.fsyncFile(prestageIndex) }
                try Syscall.rename(prestageIndex, to: indexFile)
            }
            return nil
        }
        let current = try await indexEntries(of: Set(paths), environment: [:])
        let committed = try await treeEntries(tree, paths: Set(paths))
        var writable = paths.filter { current[$0] != committed[$0] }
        if !unchanged, !writable.isEmpty {
            log.debug("the index of \(repository.workTreeDisplay) changed while a batch was committed; the batch's entries are written into it")
            let headEntries = try await treeEntries(head?.commit, paths: Set(writable))
            let copied = baseLinked
                ? try await indexEntries(of: Set(writable), environment: ["GIT_INDEX_FILE": Syscall.display(baseIndex)]) : headEntries
            let kept = writable.count
            writable = writable.filter { current[$0] == headEntries[$0] || current[$0] == copied[$0] }
            // A person's staging kept in the index: the next batch asks git what others staged.
            if writable.count < kept { othersStagedLastTime = true }
        }
        if writable.isEmpty { return nil }
        do {
            // No index yet (an unborn branch): git makes one of the entries alone.
            if now == nil { try? Syscall.unlink(scratchIndex) } else { try Self.copyKeepingTimes(indexFile, to: scratchIndex) }
        } catch {
            throw SyncError(.syscall, "cannot copy the index to \(Syscall.display(scratchIndex))", cause: error)
        }
        try await writeEntries(
            writable, committed, configuration: snapshotConfiguration,
            environment: ["GIT_INDEX_FILE": Syscall.display(scratchIndex)])
        guard indexStamp() == now else {
            return Deferral(code: .indexChanged, message: "the index of \(repository.workTreeDisplay) was rewritten without git's lock while syncd committed a batch; the batch is redone")
        }
        try durable { () throws(SyscallError) in
            if options.fsync { try Syscall.fsyncFile(scratchIndex) }
            try Syscall.rename(scratchIndex, to: indexFile)
        }
        return nil
    }

    /// `.git/index.lock` while syncd holds it (from `install` until the branch moved).
    private var heldIndexLock: [UInt8]?

    private func releaseIndexLock() {
        if let lock = heldIndexLock { try? Syscall.unlink(lock) }
        heldIndexLock = nil
    }

    /// The commit HEAD's branch points to now (nil: unborn).
    private func resolveHEAD() async throws -> String? {
        let result = try await git.run(["rev-parse", "--verify", "-q", "HEAD"], readOnly: true, acceptedExitCodes: [0, 1, 128])
        return result.exitCode == 0 ? result.text : nil
    }

    /// A tree's (or a commit's) entries for `paths`, as `update-index --index-info` lines (none:
    /// not in it, or no tree).
    private func treeEntries(_ treeish: String?, paths: Set<RepoPath>) async throws -> [RepoPath: [UInt8]] {
        guard let treeish, !paths.isEmpty else { return [:] }
        let arguments: [GitArgument] = ["ls-tree", "-r", "-z", "--full-tree", GitArgument(treeish)] + Self.pathspecs(paths)
        // "MODE TYPE OID\tPATH"
        return Self.indexInfo(try await git.run(arguments, readOnly: true), oidField: 2, paths: paths)
    }

    /// How long `install` waits for another git's `index.lock` (20 ms each): a `git status`
    /// holds it for milliseconds; longer, and the batch waits for the lock to go.
    static let installTries = 25

    /// Stages `paths` into the real (or the scratch) index, whose entries were all recorded
    /// under the lock. After a prestage, the files unchanged since are staged in a run of their
    /// own (git re-reads them but writes nothing: their blobs exist), and the rest through the
    /// pack writer when there are `packThreshold` of them, loose otherwise.
    private func stageSplit(_ paths: [RepoPath], environment: [String: String]) async throws -> Bool {
        guard !prestaged.isEmpty else { return try await stage(paths, environment: environment, pack: paths.count >= options.packThreshold) }
        let (written, unwritten) = unchangedSincePrestage(paths)
        if try await !stage(written, environment: environment, pack: false) { return false }
        return try await stage(unwritten, environment: environment, pack: unwritten.count >= options.packThreshold)
    }

    /// `paths` split into the files that still have the stamp the prestage took before git read
    /// them, and the rest.
    private func unchangedSincePrestage(_ paths: [RepoPath]) -> (unchanged: [RepoPath], rest: [RepoPath]) {
        var unchanged: [RepoPath] = []
        var rest: [RepoPath] = []
        for path in paths {
            if let stamp = prestaged[path], stamp == FileStamp(repository.absolute(path)) {
                unchanged.append(path)
            } else {
                rest.append(path)
            }
        }
        return (unchanged, rest)
    }

    /// How many files the last `prestage` wrote (for tests).
    package var prestagedCount: Int { prestaged.count }

    /// Pack runs (staging chunks and prestage passes through the pack writer) since the last
    /// repack check. A commit after any checks the packs on disk (one directory listing): a run
    /// that found every blob written writes no pack, so runs are not a count of packs.
    private var packRunsSinceRepack = 0

    /// Bursts leave a pack each (bulk-checkin); past `maxPacks`, a geometric repack rolls the
    /// small ones up (cheap: the big packs stay) so lookups, fetch and push do not slow down.
    func repackIfMany() async {
        packRunsSinceRepack = 0
        let packs = (try? DirectoryListing.list(repository.commonDir + Array("/objects/pack".utf8)))?
            .filter { $0.name.count > 5 && $0.name.suffix(5).elementsEqual(".pack".utf8) }.count ?? 0
        guard packs > Self.maxPacks else { return }
        do {
            _ = try await git.run(["repack", "-d", "-q", "--geometric=2"], userMaintenanceSettings: true)
        } catch {
            log.warning("git repack --geometric=2 failed in \(repository.workTreeDisplay): \(error); syncd tries again after more packs are written")
        }
    }

    // MARK: - steps

    struct Head {
        var commit: String
        var tree: String
    }

    private func resolve(_ branch: String) async throws -> Head? {
        let result = try await git.run(
            ["for-each-ref", "--format=%(objectname) %(tree)", GitArgument(branch)], readOnly: true)
        let parts = result.text.split(separator: " ").map(String.init)
        guard parts.count == 2 else { return nil }  // unborn branch
        return Head(commit: parts[0], tree: parts[1])
    }

    /// Every path to hand to update-index: the batch's paths re-checked against the disk and git.
    func stagingPaths(for request: CommitRequest) async throws -> [RepoPath] {
        var candidates: [RepoPath] = []  // exist; need the ignore check
        var vetted: Set<RepoPath> = []  // from git itself: tracked or not ignored
        var expand: [RepoPath] = []
        var nested = NestedRepositoryCache(repository: repository)
        if request.fullScan {
            for entry in try await GitStatus.dirtyPaths(git) where entry.state != .unmerged {
                // `?? dir/`: with every untracked file listed, only a nested repository shows as a directory.
                if entry.path.bytes.last == UInt8(ascii: "/") {
                    noteNested(RepoPath(bytes: entry.path.bytes.dropLast()), &nested)
                    continue
                }
                vetted.insert(entry.path)
            }
        }
        for path in request.paths where Self.isStageable(path) {
            if path.isRoot {
                expand.append(path)
                continue
            }
            switch kind(of: path) {
            case .file: candidates.append(path)
            case .directory: expand.append(path)
            case .missing:
                vetted.insert(path)
                if request.directoryHints.contains(path) { expand.append(path) }
            case .unsupported: continue
            }
        }
        if !expand.isEmpty {
            var arguments: [GitArgument] = ["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--"]
            arguments += expand.map { $0.isRoot ? GitArgument(":/") : GitArgument.literal($0) }
            let listed = try await git.run(arguments, readOnly: true)
            for field in listed.nulSeparatedFields {
                // `dir/`: a nested repository (git lists each untracked file otherwise).
                if field.last == UInt8(ascii: "/") {
                    noteNested(RepoPath(bytes: field.dropLast()), &nested)
                } else {
                    vetted.insert(RepoPath(bytes: field))
                }
            }
        }
        let unvetted = candidates.filter { !vetted.contains($0) }
        if !unvetted.isEmpty {
            for path in try await notIgnored(unvetted) { vetted.insert(path) }
        }
        let excluded = options.excluded
        var staging: [RepoPath] = []
        for path in vetted where Self.isStageable(path) && !excluded.contains(where: { path.isWithin($0) }) {
            if let root = nested.root(containing: path) {
                noteNested(root, &nested)
            } else {
                staging.append(path)
            }
        }
        pruneNested(&nested)
        return staging.sorted()
    }

    /// A nested repository (a clone inside the tree, or a submodule's checkout) whose files
    /// syncd cannot commit here: said once in the log, and in status for as long as it exists.
    private func noteNested(_ root: RepoPath, _ nested: inout NestedRepositoryCache) {
        guard !root.isRoot, nested.root(containing: root.appending(Array("x".utf8))) == root else { return }
        guard findings.nestedRepositories.insert(root).inserted else { return }
        log.warning("""
            \(root)/ in \(repository.workTreeDisplay) is a separate git repository (a nested clone or a submodule): \
            syncd does not commit the files inside it, they belong to that repository. Commit them there \
            (syncd then commits a submodule's new commit), or move it out of the tree, or ignore it (.gitignore) to say so
            """)
    }

    /// Forgets nested repositories that are gone (their `.git` removed, or the directory).
    private func pruneNested(_ nested: inout NestedRepositoryCache) {
        for root in findings.nestedRepositories where nested.root(containing: root.appending(Array("x".utf8))) != root {
            findings.nestedRepositories.remove(root)
        }
    }

    /// After an attempt: the left-out files that were staged this time, or are gone, are no longer
    /// left out.
    private func settleUnreadable(staged: [RepoPath]) {
        let failed = unreadableThisAttempt
        unreadableThisAttempt = []
        guard !findings.unreadable.isEmpty else { return }
        let attempted = Set(staged)
        for path in findings.unreadable.keys {
            let staged = attempted.contains(path) && !failed.contains(path)
            if staged || !Syscall.exists(repository.absolute(path)) { findings.unreadable[path] = nil }
        }
    }

    /// The paths to stage among existing files: tracked ones, and untracked ones no ignore rule
    /// matches. `check-ignore --no-index` answers from the rules alone without reading the index
    /// (a 100,000-entry index costs ~15 ms per reader); only paths it reports as ignored are then
    /// looked up in the index, since a tracked file stays tracked whatever the rules say.
    private func notIgnored(_ paths: [RepoPath]) async throws -> [RepoPath] {
        let ignored = try await GitIgnoreOracle(git: git, useIndex: false).ignored(paths)
        guard !ignored.isEmpty else { return paths }
        var arguments: [GitArgument] = ["ls-files", "-z", "--cached", "--"]
        arguments += ignored.map { GitArgument.literal($0) }
        let tracked = Set(try await git.run(arguments, readOnly: true).nulSeparatedFields.map { RepoPath(bytes: $0) })
        return paths.filter { !ignored.contains($0) || tracked.contains($0) }
    }

    enum PathKind { case file, directory, missing, unsupported }

    private func kind(of path: RepoPath) -> PathKind {
        do {
            let info = try Syscall.lstat(repository.absolute(path))
            switch info.st_mode & S_IFMT {
            case S_IFREG, S_IFLNK: return .file
            case S_IFDIR: return .directory
            default:
                log.debug("\(path) is neither a file, a symlink nor a directory; git cannot store it")
                return .unsupported
            }
        } catch {
            if error.errno == Errno(ENOENT) || error.errno == Errno(ENOTDIR) { return .missing }
            log.warning("cannot check \(path): \(error); it is left for the next batch")
            return .unsupported
        }
    }

    /// git refuses paths with a `.git` component; syncd never stages them.
    static func isStageable(_ path: RepoPath) -> Bool {
        for component in path.bytes.split(separator: UInt8(ascii: "/")) where component.elementsEqual(".git".utf8) {
            return false
        }
        return true
    }

    enum OthersStaged {
        case staged([RepoPath])
        case unmerged([RepoPath])
    }

    /// Entries someone else staged (index differs from HEAD) outside the batch. Checked only when
    /// the index changed since syncd last wrote it, so the common case costs one stat.
    private func stagedByOthers(head: Head?, batch: [RepoPath]) async throws -> OthersStaged {
        if !othersStagedLastTime, let knownIndex, knownIndex == indexStamp(), knownHead == head?.commit {
            return .staged([])
        }
        let result = try await git.run(
            ["diff-index", "--cached", "-z", "--name-status", "--no-renames", GitArgument(head?.tree ?? emptyTree)],
            readOnly: true)
        let fields = result.nulSeparatedFields
        let batchSet = Set(batch)
        var staged: [RepoPath] = []
        var unmerged: [RepoPath] = []
        var index = 0
        while index + 1 < fields.count {
            let status = fields[index]
            let path = RepoPath(bytes: fields[index + 1])
            index += 2
            if status.first == UInt8(ascii: "U") {
                unmerged.append(path)
            } else if !batchSet.contains(path) {
                staged.append(path)
            }
        }
        if !unmerged.isEmpty { return .unmerged(unmerged) }
        othersStagedLastTime = !staged.isEmpty
        if !staged.isEmpty {
            log.info("\(staged.count) path(s) staged by someone else (\(staged.prefix(3).map(\.description).joined(separator: ", "))) stay staged and out of syncd's commit")
        }
        return .staged(staged)
    }

    /// Removes one of syncd's own index files and its lock: a git killed while it wrote one
    /// (`kill -9` of syncd's process group) leaves `NAME.lock`, and git would refuse that index
    /// ever after. No other program uses these files, and one syncd runs per workspace.
    static func removePrivateIndex(_ path: [UInt8]) {
        try? Syscall.unlink(path)
        try? Syscall.unlink(path + Array(".lock".utf8))
    }

    /// Copies the real index to the scratch index (and keeps it as it was in `index.base`);
    /// returns the real index's stamp from before the copy (nil: there is none).
    private func prepareScratchIndex() throws -> FileStamp? {
        try? Syscall.unlink(scratchIndex + Array(".lock".utf8))
        let base = linkBase()
        do {
            try Self.copyKeepingTimes(indexFile, to: scratchIndex)
        } catch {
            if error.errno == Errno(ENOENT) {
                try? Syscall.unlink(scratchIndex)
                return nil
            }
            throw SyncError(.syscall, "cannot copy the index to \(Syscall.display(scratchIndex))", cause: error)
        }
        return base
    }

    /// Copies an index file with its modification time: git's racy-entry check compares each
    /// entry's time with the index file's, and a copy with a newer time would make entries git
    /// must re-read (a file rewritten in the second it was staged) look clean, and lose the rewrite.
    static func copyKeepingTimes(_ source: [UInt8], to destination: [UInt8]) throws(SyscallError) {
        let info = try Syscall.lstat(source)
        let contents = try Syscall.readFile(source, limit: Int.max)
        let fd = try Syscall.open(destination, flags: O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o644)
        defer { Syscall.close(fd) }
        try Syscall.writeAll(fd, contents)
        let times = [info.st_atim, info.st_mtim]
        _ = try Syscall.retrying("futimens", path: Syscall.display(destination)) { futimens(fd, times) }
    }

    /// In the scratch index, puts `paths` back to HEAD's version (or removes them when HEAD has none).
    private func resetInScratch(_ paths: [RepoPath], head: Head?) async throws {
        let environment = ["GIT_INDEX_FILE": Syscall.display(scratchIndex)]
        var lines: [UInt8] = []
        var inHead: Set<RepoPath> = []
        if let head {
            var arguments: [GitArgument] = ["ls-tree", "-r", "-z", "--full-tree", GitArgument(head.commit), "--"]
            arguments += paths.map { GitArgument.literal($0) }
            for field in try await git.run(arguments, readOnly: true).nulSeparatedFields {
                guard let tab = field.firstIndex(of: UInt8(ascii: "\t")) else { continue }
                inHead.insert(RepoPath(bytes: Array(field[(tab + 1)...])))
                lines += field + [0]
            }
        }
        let zero = String(repeating: "0", count: emptyTree.count)
        for path in paths where !inHead.contains(path) {
            lines += Array("0 \(zero)\t".utf8) + path.bytes + [0]
        }
        _ = try await git.run(["update-index", "-z", "--index-info"], input: lines, environment: environment)
    }

    /// `git update-index --add --remove --replace -z --stdin` with `paths`, in chunks of
    /// `stagingChunk` so an emergency stop is noticed between them. Returns false when a stop
    /// cut it short. A path git cannot read (permissions, vanished mid-read) is dropped with a
    /// warning instead of failing the batch; an object store git cannot write into (permissions
    /// of .git/objects, a full disk) fails the batch, whichever path git was adding.
    /// Batches of at least this many paths stage their blobs into one pack per update-index run
    /// (git's bulk-checkin, through `core.bigFileThreshold=1`) instead of one loose object file
    /// each: 10,000 files take about 1.6 s instead of 28 s here (BENCHMARKS.md). Smaller batches
    /// stay loose, so small commits do not each leave a pack behind.
    public static let packThreshold = 64

    /// Every blob through git's bulk-checkin into one pack. Blobs of 0 or 1 byte still go loose,
    /// and git 2.39 cannot mix the two under `core.fsyncMethod=batch`: the loose object's
    /// temporary object directory is moved into place first, taking the unfinished pack with it
    /// ("unable to rename temporary file to '.git/objects/pack/pack-….pack'"), and the batch
    /// fails every time. So pack runs fsync each (rare) loose object on its own; the pack is
    /// fsynced once either way.
    static let packWriter: [GitArgument] = ["-c", "core.bigFileThreshold=1", "-c", "core.fsyncMethod=fsync"]

    private func stage(
        _ paths: [RepoPath], environment: [String: String], pack: Bool, stoppable: Bool = true, configuration: [GitArgument]? = nil
    ) async throws -> Bool {
        if pack, !paths.isEmpty { packRunsSinceRepack += (paths.count + options.stagingChunk - 1) / max(1, options.stagingChunk) }
        var start = 0
        while start < paths.count {
            if stoppable, options.stop.isSet { return false }
            let end = min(paths.count, start + max(1, options.stagingChunk))
            try await stageChunk(Array(paths[start..<end]), environment: environment, pack: pack, configuration: configuration ?? writeConfiguration)
            start = end
        }
        return true
    }

    private func stageChunk(_ paths: [RepoPath], environment: [String: String], pack: Bool, configuration: [GitArgument]) async throws {
        var remaining = paths
        // Each round either succeeds or drops the one path git named, so this ends.
        while !remaining.isEmpty {
            var input: [UInt8] = []
            for path in remaining { input += path.bytes + [0] }
            let result = try await git.run(
                configuration + (pack ? Self.packWriter : []) + ["update-index", "--add", "--remove", "--replace", "-z", "--stdin"],
                input: input, acceptedExitCodes: [0, 128], environment: environment)
            if result.exitCode == 0 { return }
            if let name = Self.changedWhileRead(result.standardError) {
                // A writer outside the protocol shrank the file while git read it. The shrink came
                // after git's fstat, so after this batch's fence: its event is queued for the next
                // batch, which commits the file as it ends up. Not a failure, and not unreadable.
                let before = remaining.count
                for path in remaining where path.description == name { dropped.insert(path) }
                remaining.removeAll { $0.description == name }
                if remaining.count < before {
                    log.debug("\(name) changed while git read it; it is committed with the next batch")
                    continue
                }
            }
            if let line = Self.objectStoreFailure(result.standardError) {
                // git could not write into the object database: every file of the batch would
                // fail the same way, so the batch fails (and is retried) instead of one file
                // being left out until it changes again.
                let objects = Syscall.display(repository.commonDir + Array("/objects".utf8))
                let said = line.hasPrefix("error: ") || line.hasPrefix("fatal: ") ? String(line.dropFirst("error: ".count)) : line
                throw SyncError(
                    GitRunner.isDiskFull(result.standardError) ? .diskFull : .git,
                    "git cannot write objects into \(objects) (\(said)) while staging in \(repository.workTreeDisplay): "
                        + "fix the repository's permissions (\(objects) and its subdirectories must be writable by the user "
                        + "syncd runs as) or free disk space; the whole batch waits and is committed once git can write again")
            }
            guard let (name, why) = Self.unstageable(result.standardError) else {
                let firstLine = result.standardError.split(separator: "\n").first.map(String.init) ?? "exit 128"
                throw SyncError(
                    GitRunner.isDiskFull(result.standardError) ? .diskFull : .git,
                    "git update-index failed in \(repository.workTreeDisplay): \(firstLine)")
            }
            let before = remaining.count
            let dropped = remaining.filter { $0.description == name }
            remaining.removeAll { $0.description == name }
            for path in dropped {
                self.dropped.insert(path)
                unreadableThisAttempt.insert(path)
                if findings.unreadable.updateValue(why, forKey: path) == nil {
                    log.warning("""
                        git cannot stage \(name) (\(why)); it is left out of this batch and the other files are committed; \
                        it is tried again when it changes (fix its permissions, or its clean filter)
                        """)
                }
            }
            if remaining.count == before { throw SyncError(.git, "git update-index failed on \(name) in \(repository.workTreeDisplay): \(why)") }
        }
    }

    /// The changed paths of a new tree that staging `staged` cannot explain: neither one of
    /// them, nor inside one (a file that replaced a directory), nor a parent of one (a directory
    /// that replaced a file); nil when there are none.
    package static func unstaged(_ changed: [RepoPath], staged: [RepoPath]) -> [RepoPath]? {
        let stagedSet = Set(staged)
        var parents: Set<RepoPath> = []
        for path in staged {
            var parent = path.parent
            while !parent.isRoot, parents.insert(parent).inserted { parent = parent.parent }
        }
        let stray = changed.filter { path in
            if stagedSet.contains(path) || parents.contains(path) { return false }
            var ancestor = path.parent
            while !ancestor.isRoot {
                if stagedSet.contains(ancestor) { return false }
                ancestor = ancestor.parent
            }
            return true
        }
        return stray.isEmpty ? nil : stray
    }

    /// A deferral when an emergency stop arrived; nil to go on.
    private func stopCheck(_ step: String) -> CommitOutcome? {
        guard options.stop.isSet else { return nil }
        return .deferred(Deferral(
            code: .emergencyStop,
            message: "emergency stop: the batch was set aside before \(step); its changes stay in the working tree"))
    }

    /// The one path git's update-index stopped at, and why: a file it cannot read ("Unable to
    /// process path P"), or a required clean filter that failed ("P: clean filter 'NAME' failed").
    /// Never a path when git could not write into the object database (`objectStoreFailure`):
    /// that is not the file's fault.
    package static func unstageable(_ standardError: String) -> (path: String, why: String)? {
        if objectStoreFailure(standardError) != nil { return nil }
        let firstLine = standardError.split(separator: "\n").first.map(String.init) ?? ""
        if let name = line(after: "Unable to process path ", in: standardError) {
            return (name, firstLine)
        }
        for line in standardError.split(separator: "\n") where line.hasPrefix("fatal: ") && line.hasSuffix("' failed") {
            guard let marker = line.ranges(of: ": clean filter '").last else { continue }
            let path = String(line[line.index(line.startIndex, offsetBy: "fatal: ".count)..<marker.lowerBound])
            let filter = String(line[marker.upperBound...].dropLast("' failed".count))
            return (path, "its clean filter \(filter) (git config filter.\(filter).clean) failed, and filter.\(filter).required is set"
                + (firstLine.hasPrefix("error: ") ? ": \(firstLine.dropFirst("error: ".count))" : "")
                + "; fix the filter, or the file, and it is committed with the next change")
        }
        return nil
    }

    /// git's line saying it could not write into the object database, or nil. That is a
    /// repository-wide problem (permissions of .git/objects, a full disk), even when git names
    /// the one path it was adding ("Unable to process path P"). Seen with git 2.39:
    ///   error: insufficient permission for adding an object to repository database .git/objects
    ///   error: unable to create temporary file: Operation not permitted   (chattr +i, ENOSPC)
    ///   fatal: Unable to create temporary file '…/.git/objects/pack/tmp_pack_XXXXXX': Permission denied
    ///   fatal: unable to write loose object file: No space left on device
    ///   fatal: sha1 file '.git/objects/pack/tmp_pack_…' write error. Out of diskspace
    /// each followed, for a loose object, by "error: P: failed to insert into database". That
    /// last line alone means the same unless git first said it could not read the file.
    package static func objectStoreFailure(_ standardError: String) -> String? {
        let markers = [
            "insufficient permission for adding an object", "unable to create temporary file", "unable to write loose object",
            "unable to write new object", "unable to write file", "write error. out of diskspace", "no space left on device",
            "disk quota exceeded", "unable to create temporary object directory", "unable to rename temporary file",
        ]
        let lines = standardError.split(separator: "\n").map(String.init)
        if let line = lines.first(where: { line in markers.contains { line.lowercased().contains($0) } }) { return line }
        let readProblems = ["read error while indexing", "short read while indexing", "open(\"", "readlink(\""]
        guard !lines.contains(where: { line in readProblems.contains { line.contains($0) } }) else { return nil }
        return lines.first { $0.hasSuffix(": failed to insert into database") }
    }

    /// The path git was reading when the file shrank under it: "failed to read N bytes from 'P'"
    /// (the pack writer), or "short read while indexing P" (loose objects).
    package static func changedWhileRead(_ standardError: String) -> String? {
        for line in standardError.split(separator: "\n") {
            if line.hasPrefix("fatal: failed to read "), let from = line.firstRange(of: " bytes from '"), line.hasSuffix("'") {
                return String(line[from.upperBound...].dropLast())
            }
            if let range = line.firstRange(of: "short read while indexing ") { return String(line[range.upperBound...]) }
        }
        return nil
    }

    /// The rest of the line that follows `marker` in `text`.
    static func line(after marker: String, in text: String) -> String? {
        for line in text.split(separator: "\n") {
            if let start = line.firstRange(of: marker) { return String(line[start.upperBound...]) }
        }
        return nil
    }

    private func changedFiles(from old: String, to new: String) async throws -> [CommittedFile] {
        // Two trees need no index; pointing GIT_INDEX_FILE at nothing saves reading it (~15 ms on
        // 100,000 entries).
        let result = try await git.run(
            ["diff-tree", "-r", "-z", "--no-renames", "--name-status", GitArgument(old), GitArgument(new)], readOnly: true,
            environment: ["GIT_INDEX_FILE": Syscall.display(noIndex)])
        let fields = result.nulSeparatedFields
        var files: [CommittedFile] = []
        var index = 0
        while index + 1 < fields.count {
            let status = CommittedFile.Status(rawValue: String(decoding: fields[index].prefix(1), as: UTF8.self)) ?? .modified
            files.append(CommittedFile(status: status, path: RepoPath(bytes: fields[index + 1])))
            index += 2
        }
        return files
    }

    private func syncRefDirectories(_ branch: String) throws(SyscallError) {
        let refFile = repository.commonDir + [UInt8(ascii: "/")] + Array(branch.utf8)
        try Syscall.fsyncDirectory(AtomicFile.parentDirectory(of: refFile))
        let logFile = repository.commonDir + Array("/logs/".utf8) + Array(branch.utf8)
        if Syscall.exists(logFile) { try Syscall.fsyncDirectory(AtomicFile.parentDirectory(of: logFile)) }
    }

    private func durable(_ body: () throws(SyscallError) -> Void) throws {
        do {
            try body()
        } catch {
            throw SyncError(
                error.errno == Errno(ENOSPC) ? .diskFull : .syscall,
                "cannot make the commit durable in \(repository.workTreeDisplay)", cause: error)
        }
    }

    /// The real index's version: its stamp without the change time, which the hard link to
    /// `index.base` changes (git never writes an index in place: each version is a new file).
    private func indexStamp() -> FileStamp? {
        guard var stamp = FileStamp(indexFile) else { return nil }
        stamp.changed = 0
        return stamp
    }

    private func recordIndex(head: String?) {
        knownHead = head
        knownIndex = indexStamp()
    }
}

/// Identity of a file's current version (inode, size, modification and change times): any write
/// changes the change time.
package struct FileStamp: Equatable {
    package var inode: UInt
    package var size: Int
    package var modified: Int
    package var changed: Int

    package init(inode: UInt, size: Int, modified: Int, changed: Int) {
        self.inode = inode
        self.size = size
        self.modified = modified
        self.changed = changed
    }

    package init?(_ path: [UInt8]) {
        guard let info = try? Syscall.lstat(path), info.st_mode & S_IFMT == S_IFREG else { return nil }
        inode = UInt(info.st_ino)
        size = Int(info.st_size)
        modified = info.st_mtim.tv_sec * 1_000_000_000 + info.st_mtim.tv_nsec
        changed = info.st_ctim.tv_sec * 1_000_000_000 + info.st_ctim.tv_nsec
    }

    /// Whether a stamp taken at `stampedAt` (wall clock, nanoseconds) tells every later write
    /// apart: the file's times are older than the stamp by more than the file system's clock
    /// tick, so a write after it gets newer times. Linux stamps files with a clock that advances
    /// once per tick (up to 10 ms); a file system whose times have no nanoseconds (whole
    /// seconds, or two for FAT) needs its last change that much older.
    package func isSettled(at stampedAt: Int) -> Bool {
        let wholeSeconds = modified % 1_000_000_000 == 0 && changed % 1_000_000_000 == 0
        let margin = wholeSeconds ? 2_000_000_000 : Self.settleMargin
        return max(modified, changed) < stampedAt - margin
    }

    /// 20 ms: two ticks at the lowest tick rate Linux has (100 Hz).
    package static let settleMargin = 20_000_000
}



/// Paths inside another repository nested in the working tree (a directory with its own `.git`,
/// such as a submodule's checkout) belong to that repository; git refuses to stage them.
struct NestedRepositoryCache {
    let repository: Repository
    private var known: [RepoPath: RepoPath?] = [:]

    init(repository: Repository) { self.repository = repository }

    mutating func isInside(_ path: RepoPath) -> Bool {
        root(containing: path) != nil
    }

    /// The outermost directory above `path` (below the root) that holds a `.git`: the nested
    /// repository `path` belongs to.
    mutating func root(containing path: RepoPath) -> RepoPath? {
        nestedRoot(path.parent)
    }

    private mutating func nestedRoot(_ directory: RepoPath) -> RepoPath? {
        if directory.isRoot { return nil }
        if let answer = known[directory] { return answer }
        let answer = nestedRoot(directory.parent)
            ?? (Syscall.exists(repository.absolute(directory) + Array("/.git".utf8)) ? directory : nil)
        known[directory] = answer
        return answer
    }
}
