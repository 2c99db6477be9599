import Glibc
import Logging
import SyncCore
import SyncGit
import SyncSystem

/// The remote side of syncd, in steps the service schedules separately so that the network is
/// never on the commit path:
///
/// - `fetch` (network, no lock): takes an incremental `git bundle` of what the remote lacks, then
///   fetches the branch into its remote-tracking ref and says how far the two have diverged;
/// - `integrate` (local, milliseconds, under the exclusive sync lock and the writer lease, after
///   the caller committed what was pending): builds the result without touching the working tree
///   (the remote's commit for a fast-forward, a `merge-tree --write-tree` merge, or syncd's own
///   commits replayed by tree arithmetic for `syncd.integrate rebase`), then moves branch, index
///   and working tree together with `merge --ff-only --no-overwrite-ignore`. That is git's
///   two-way checkout: it touches only the paths that differ between the old and the new commit
///   and refuses to overwrite or remove anything not committed. Nothing is stashed, cleaned or
///   checked out over the whole tree, ever (docs/ARCHITECTURE.md says why);
/// - `push` (network, no lock): pushes the commit the branch pointed at when the push started,
///   with an explicit refspec, never forced; a rejection means fetch and integrate again.
/// A conflict leaves branch and working tree alone; the local side goes to a conflict branch.
public actor Syncer {
    public struct Options: Sendable {
        public var remote: String
        public var networkTimeout: Duration = .seconds(120)
        public var backupDirectory: [UInt8]
        public var backupKeep = 20
        public var backupMaxAge: Duration = .seconds(30 * 86_400)
        /// `syncd.backupDir`: every bundle is copied there too.
        public var offsiteDirectory: [UInt8]?
        /// `syncd.squash`: syncd's own unpushed commits reach the branch as one per window.
        public var squash: Duration?
        public var squashKeep: Duration = .seconds(30 * 86_400)
        public var host = ProcessTable.hostName
        public var fsync = true
        /// Where an integration in flight is recorded (for recovery after a crash).
        public var stateDirectory: [UInt8]
        /// The ssh command for fetch and push (`core.sshCommand` or `GIT_SSH_COMMAND` when set),
        /// run in batch mode so it never waits for a password or a host-key question.
        public var sshCommand = "ssh"
        public var integrate: Settings.IntegratePolicy = .merge
        public var strategyOption: Settings.StrategyOption = .none
        public init(remote: String, backupDirectory: [UInt8], stateDirectory: [UInt8]) {
            self.remote = remote
            self.backupDirectory = backupDirectory
            self.stateDirectory = stateDirectory
        }
    }

    public enum FetchOutcome: Sendable, Equatable {
        /// The remote-tracking ref is current: `behind` commits to integrate, `ahead` to push.
        case fetched(behind: Int, ahead: Int)
        case failed(RemoteProblem)
    }

    public enum PushOutcome: Sendable, Equatable {
        case pushed(commit: String)
        /// The remote already has the branch's commit.
        case upToDate
        /// The remote moved: fetch and integrate first.
        case rejected
        case failed(RemoteProblem)
        /// `syncd.squash`: the window of the oldest unpushed commit is still open; the commits went
        /// to the side ref, the branch is pushed at `until` (seconds since the epoch).
        case held(until: Double)
    }

    public enum IntegrationOutcome: Sendable, Equatable {
        /// The remote has nothing the branch lacks.
        case upToDate
        /// Branch, index and working tree moved to the integrated commit; `how` says in words.
        case integrated(commit: String, how: String)
        /// The histories conflict in `files`; nothing changed here.
        case conflict(files: [String])
        /// git refused because a path it must change has changes not committed yet (a writer wrote
        /// it after the commit before the integration); nothing changed. Commit again and retry.
        case refused(String)
        /// git refused because the remote now tracks paths that exist here untracked: ignored
        /// files or nested repositories, which syncd never commits and never overwrites. Nothing
        /// changed; committing again cannot help once a retry found them still there.
        case blocked(String)
    }

    private let repository: Repository
    private let git: GitRunner
    public let options: Options
    private let log: Logger
    private var conflictBranch: String?

    public init(repository: Repository, options: Options, log: Logger) {
        self.repository = repository
        self.git = repository.git
        self.options = options
        var log = log
        log[metadataKey: "remote"] = "\(options.remote)"
        self.log = log
    }

    /// The remote syncd pushes to: `syncd.remote`, else the branch's upstream remote, else
    /// `origin` when it exists; nil when the repository has no remote (syncing is then off).
    public static func defaultRemote(_ repository: Repository, branch: String?) async -> String? {
        let git = repository.git
        if let branch, branch.hasPrefix("refs/heads/") {
            let name = shortName(branch)
            if let upstream = try? await git.run(["config", "--get", GitArgument("branch.\(name).remote")], readOnly: true, acceptedExitCodes: [0, 1]),
                upstream.exitCode == 0
            {
                let value = upstream.text
                if !value.isEmpty, value != "." { return value }
            }
        }
        guard let remotes = try? await git.run(["remote"], readOnly: true) else { return nil }
        let names = remotes.text.split(separator: "\n").map(String.init)
        return names.contains("origin") ? "origin" : names.first
    }

    /// The remote a `syncd.remote` value means: `none` is no remote, empty is the default
    /// (`defaultRemote`), anything else is that remote. The one rule, for the service and tools.
    public static func remote(for setting: String, _ repository: Repository, branch: String?) async -> String? {
        if setting == "none" { return nil }
        return setting.isEmpty ? await defaultRemote(repository, branch: branch) : setting
    }

    /// The remote for tools outside the service (doctor, restore, verify): git config
    /// `syncd.remote` read as the service reads it.
    public static func configuredRemote(_ repository: Repository, branch: String?) async -> String? {
        let configured = (try? await repository.git.run(["config", "--get", "syncd.remote"], readOnly: true, acceptedExitCodes: [0, 1]))?.text ?? ""
        return await remote(for: configured, repository, branch: branch)
    }

    private func tracking(_ branch: String) -> String {
        "refs/remotes/\(options.remote)/\(Self.shortName(branch))"
    }

    // MARK: - network steps (no lock held)

    /// Backs up what the remote lacks, then fetches; says how far branch and remote diverge.
    public func fetch(branch: String) async throws -> FetchOutcome {
        let tracking = tracking(branch)
        // The backup comes first: it needs no network, and local commits matter most while the
        // remote is unreachable.
        if try await resolves(branch) {
            try await backup(branch: branch, tracking: tracking)
        }
        await Failpoint.hit("before-fetch", log: log)
        let name = Self.shortName(branch)
        let result = try await runNetwork(
            networkArguments() + ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", GitArgument(options.remote),
                                  GitArgument("+refs/heads/\(name):\(tracking)")])
        // A remote without the branch yet (first push) is not a failure.
        if result.exitCode != 0, !result.standardError.contains("couldn't find remote ref") {
            return .failed(RemoteProblem(gitOutput: result.standardError, exitCode: result.exitCode, remote: options.remote, operation: "fetch"))
        }
        let (behind, ahead) = try await divergence(branch: branch, tracking: tracking)
        return .fetched(behind: behind, ahead: ahead)
    }

    /// Pushes the commit the branch points at now (commits made meanwhile wait for the next push)
    /// and records it as the remote's, so counts and the next backup are exact.
    public func push(
        branch: String, timeout: Duration? = nil, squashNow: Bool = false, message: String? = nil, since: String? = nil
    ) async throws -> PushOutcome {
        let tracking = tracking(branch)
        // The commit to push is read once: what is squashed (or held) and what is pushed are
        // the same history, whatever syncd commits meanwhile.
        guard var commit = try await commitOf(branch) else { return .upToDate }
        // `syncctl squash`: fold now with the person's message, whatever syncd.squash says.
        if let message, let run = try await Squash.run(git: git, branch: commit, tracking: tracking, since: since) {
            await pushWorkInProgress(run.tip, branch: branch, timeout: timeout)
            guard let folded = try await Squash.fold(run, git: git, branch: branch, message: message, host: options.host, keep: options.squashKeep, log: log) else {
                return .rejected  // the branch moved: the round is redone
            }
            log.info("squashed \(run.commits.count) commit(s) into \(folded.prefix(12)) as asked (\(message.split(separator: "\n").first ?? ""))")
            commit = folded
        } else if let window = options.squash, let run = try await Squash.run(git: git, branch: commit, tracking: tracking) {
            await pushWorkInProgress(run.tip, branch: branch, timeout: timeout)
            let due = run.oldest + Double(window.components.seconds)
            if !squashNow, ControlFile.now() < due { return .held(until: due) }
            if run.commits.count >= 2 {
                guard let folded = try await Squash.fold(run, git: git, branch: branch, message: nil, host: options.host, keep: options.squashKeep, log: log) else {
                    // The branch moved (a commit just landed): fold again in a moment.
                    return .held(until: ControlFile.now() + 1)
                }
                log.info("squashed \(run.commits.count) commits into \(folded.prefix(12)) (the originals: \(Squash.keepPrefix)\(Self.shortName(branch))/\(run.tip.prefix(12)) and the remote's \(workInProgressRef(branch)))")
                commit = folded
            }
        }
        if try await commitOf(tracking) == commit { return .upToDate }
        await Failpoint.hit("before-push", log: log)
        let name = Self.shortName(branch)
        let result = try await runNetwork(
            networkArguments() + ["push", "--porcelain", "--quiet", GitArgument(options.remote),
                                  GitArgument("\(commit):refs/heads/\(name)")],
            timeout: timeout)
        if result.exitCode == 0 {
            _ = try? await git.run(["update-ref", GitArgument(tracking), GitArgument(commit)])
            conflictBranch = nil
            return .pushed(commit: commit)
        }
        let text = String(decoding: result.standardOutput, as: UTF8.self) + result.standardError
        // The remote moved: a plain rejection, or (pushing into a repository on this machine) the
        // remote's ref moved while the push was updating it.
        if text.contains("[rejected]") || text.contains("non-fast-forward") || text.contains("fetch first")
            || text.contains("cannot lock ref") || text.contains("but expected")
        {
            return .rejected
        }
        return .failed(RemoteProblem(gitOutput: result.standardError, exitCode: result.exitCode, remote: options.remote, operation: "push"))
    }

    /// The fine-grained commits, pushed to this machine's side ref so they leave the machine at
    /// once while the branch waits for its window. Only ever over the value the remote had for
    /// this ref (a lease), never over someone else's update. Best effort: a failure is logged.
    private func pushWorkInProgress(_ tip: String, branch: String, timeout: Duration?) async {
        let ref = workInProgressRef(branch)
        guard lastWorkInProgress != tip else { return }
        let remote = try? await runNetwork(networkArguments() + ["ls-remote", GitArgument(options.remote), GitArgument(ref)], timeout: timeout)
        guard let remote, remote.exitCode == 0 else { return }
        let current = remote.text.split(separator: "\t").first.map(String.init) ?? ""
        let result = try? await runNetwork(
            networkArguments() + ["push", "--porcelain", "--quiet", GitArgument("--force-with-lease=\(ref):\(current)"), GitArgument(options.remote),
                                  GitArgument("\(tip):\(ref)")],
            timeout: timeout)
        if result?.exitCode == 0 {
            lastWorkInProgress = tip
        } else {
            log.warning("could not push the unsquashed commits to \(ref) on \(options.remote): \(RemoteProblem.oneLine(result?.standardError ?? "timed out")); they are kept locally")
        }
    }

    private var lastWorkInProgress: String?

    /// `refs/syncd/wip/HOST-ID/BRANCH`: ID tells apart clones of one remote on the same host (or
    /// on hosts with the same name), so each pushes only over its own side ref.
    public func workInProgressRef(_ branch: String) -> String {
        "refs/syncd/wip/\(options.host)-\(Self.cloneID(repository.commonDir))/\(Self.shortName(branch))"
    }

    /// Eight hex digits from the path of the repository (FNV-1a): stable for a clone, different
    /// between clones.
    public static func cloneID(_ commonDir: [UInt8]) -> String {
        var hash: UInt32 = 2_166_136_261
        for byte in commonDir { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        let text = String(hash, radix: 16)
        return String(repeating: "0", count: 8 - text.count) + text
    }

    /// Pushes the local side of a conflict to its conflict branch (created by `integrate`); nil
    /// on success, else why not (the branch exists locally either way).
    public func pushConflict(side: String) async throws -> RemoteProblem? {
        let result = try await runNetwork(
            networkArguments() + ["push", "--porcelain", "--quiet", GitArgument(options.remote),
                                  GitArgument("refs/heads/\(side):refs/heads/\(side)")])
        if result.exitCode == 0 { return nil }
        return RemoteProblem(gitOutput: result.standardError, exitCode: result.exitCode, remote: options.remote, operation: "push")
    }

    /// Commits on the branch that the remote-tracking ref does not have, counted from the refs.
    public func unpushed(branch: String) async -> Int {
        let tracking = tracking(branch)
        guard (try? await resolves(branch)) == true else { return 0 }
        var arguments: [GitArgument] = ["rev-list", "--count", GitArgument(branch)]
        if (try? await resolves(tracking)) == true { arguments += ["--not", GitArgument(tracking)] }
        guard let result = try? await git.run(arguments, readOnly: true) else { return 0 }
        return Int(result.text) ?? 0
    }

    private func networkArguments() -> [GitArgument] {
        // Never wait for credentials; ssh in batch mode (GitRunner's environment), low-speed abort.
        ["-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=\(Int(options.networkTimeout.components.seconds))"]
    }

    private func runNetwork(_ arguments: [GitArgument], timeout: Duration? = nil) async throws -> GitResult {
        let git = git
        let limit = timeout ?? options.networkTimeout
        let environment = ["GIT_SSH_COMMAND": options.sshCommand + " -o BatchMode=yes"]
        let result = try await withTimeout(limit) { try await git.run(arguments, acceptedExitCodes: Set(0...255), environment: environment) }
        return result ?? GitResult(exitCode: 124, standardOutput: [], standardError: "timed out after \(Settings.formatDuration(limit))")
    }

    // MARK: - the local step (the caller holds the exclusive sync lock and the writer lease)

    /// Integrates the remote-tracking ref into the branch. The caller has committed what was
    /// pending; this changes only the paths the remote changed, and refuses rather than
    /// overwrite anything not committed.
    public func integrate(branch: String) async throws -> IntegrationOutcome {
        let tracking = tracking(branch)
        let (behind, ahead) = try await divergence(branch: branch, tracking: tracking)
        guard behind > 0 else { return .upToDate }
        guard let remoteCommit = try await commitOf(tracking) else { return .upToDate }
        let old = try await commitOf(branch)
        var target = remoteCommit
        var how = "fast-forwarded to \(options.remote)"
        if let old, ahead > 0 {
            if options.integrate == .rebase, try await onlySyncdCommits(branch: branch, tracking: tracking),
                let replayed = try await replay(branch: branch, onto: remoteCommit)
            {
                target = replayed
                how = "replayed syncd's \(ahead) unpushed commit(s) on top of \(options.remote) (rebase, no merge commit)"
            } else {
                switch try await mergeCommit(branch: branch, local: old, remote: remoteCommit) {
                case .commit(let merge):
                    target = merge
                    how = "merged \(options.remote) (the histories had diverged)"
                case .conflict(let files, let tree):
                    if options.strategyOption != .none,
                        let resolved = try await resolvedMerge(branch: branch, tree: tree, files: files, local: old, remote: remoteCommit)
                    {
                        target = resolved
                        how = "merged \(options.remote): the conflicting \(files.joined(separator: ", ")) took the \(options.strategyOption == .ours ? "local" : "remote") version "
                            + "(syncd.strategyOption \(options.strategyOption.rawValue)); the other version stays in history"
                        break
                    }
                    let side = conflictBranch ?? "syncd/conflict/\(options.host)/\(Self.compactTime())"
                    conflictBranch = side
                    _ = try await git.run(["update-ref", GitArgument("refs/heads/\(side)"), GitArgument(old)])
                    return .conflict(files: files)
                }
            }
        }
        // Recorded first: a crash in the middle is reported and checked at the next start.
        try IntegrationInFlight(kind: .fastForward, from: old, to: target).record(in: options.stateDirectory)
        await Failpoint.hit("before-merge", log: log)
        var descends = true
        if let old {
            descends = try await git.run(["merge-base", "--is-ancestor", GitArgument(old), GitArgument(target)], readOnly: true, acceptedExitCodes: [0, 1]).exitCode == 0
        }
        // A descendant: git's fast-forward moves branch, index and tree together.
        if !descends, try await commitOf(branch) != old {
            // The branch moved since the replay was built (a person committed): build it again.
            try? ControlFile.remove(IntegrationInFlight.recordPath(options.stateDirectory))
            return .refused("the branch moved while the replay was built")
        }
        // `checkout --no-overwrite-ignore -B` is the same two-way switch for a target that does
        // not descend (a replay): only differing paths change, local changes and ignored files
        // make it refuse (a plain `read-tree -m -u` would overwrite ignored files).
        let result = descends
            ? try await git.run(["merge", "--ff-only", "--no-overwrite-ignore", "--quiet", "--no-edit", GitArgument(target)], acceptedExitCodes: Set(0...255))
            : try await git.run(["checkout", "--quiet", "--no-overwrite-ignore", "-B", GitArgument(Self.shortName(branch)), GitArgument(target)], acceptedExitCodes: Set(0...255))
        try? ControlFile.remove(IntegrationInFlight.recordPath(options.stateDirectory))
        guard result.exitCode == 0 else {
            let text = result.standardError
            if text.contains("untracked working tree files would be") || text.contains("Untracked working tree file") {
                return .blocked(RemoteProblem.oneLine(Self.pathsNamed(in: text).joined(separator: ", ")))
            }
            if text.contains("would be overwritten") || text.contains("untracked working tree files") || text.contains("would be removed")
                || text.contains("not uptodate") || text.contains("would be lost")
            {
                return .refused(RemoteProblem.oneLine(Self.pathsNamed(in: text).joined(separator: ", ")))
            }
            throw SyncError(
                .git,
                "syncd did not integrate \(options.remote) into \(repository.workTreeDisplay): "
                    + RemoteProblem.oneLine(Self.firstLine(text, or: "git merge exited \(result.exitCode)")))
        }
        conflictBranch = nil
        return .integrated(commit: target, how: how)
    }

    /// The local side of the current conflict (set by `integrate`), if any.
    public func currentConflictBranch() -> String? { conflictBranch }

    enum MergeResult { case commit(String), conflict([String], tree: String) }

    /// A merge commit of local and remote built without the working tree (`merge-tree --write-tree`).
    private func mergeCommit(branch: String, local: String, remote: String) async throws -> MergeResult {
        let merged = try await git.run(
            ["merge-tree", "--write-tree", "--name-only", "-z", GitArgument(local), GitArgument(remote)],
            acceptedExitCodes: [0, 1])
        let fields = merged.nulSeparatedFields
        guard let tree = fields.first.map({ String(decoding: $0, as: UTF8.self) }) else {
            throw SyncError(.malformed, "git merge-tree printed no tree in \(repository.workTreeDisplay)")
        }
        if merged.exitCode == 1 {
            // Conflicted file names follow the tree, up to an empty field (then messages).
            let names = Array(Set(fields.dropFirst().prefix { !$0.isEmpty }.map { String(decoding: $0, as: UTF8.self) })).sorted()
            return .conflict(names, tree: tree)
        }
        let name = Self.shortName(branch)
        let message = "syncd: merge \(options.remote)/\(name) into \(name)\n\nSyncd-Host: \(options.host)\n"
        let commit = try await git.run(
            ["commit-tree", GitArgument(tree), "-p", GitArgument(local), "-p", GitArgument(remote), "-F", "-"],
            input: Array(message.utf8)).text
        return .commit(commit)
    }

    /// `syncd.integrate rebase` without a rebase in the working tree: each of syncd's unpushed
    /// commits is replayed on top of the remote by a three-way `read-tree` in a private index
    /// (base: its parent, ours: the new base, theirs: the commit) and `commit-tree` with its own
    /// message and author. nil when a path changed on both sides (then a merge commit is made).
    private func replay(branch: String, onto remote: String) async throws -> String? {
        let list = try await git.run(["rev-list", "--reverse", GitArgument(branch), "--not", GitArgument(remote)], readOnly: true)
        let commits = list.text.split(separator: "\n").map(String.init)
        guard !commits.isEmpty else { return nil }
        let index = options.stateDirectory + Array("/replay.index".utf8)
        let environment = ["GIT_INDEX_FILE": String(decoding: index, as: UTF8.self)]
        defer { try? Syscall.unlink(index) }
        var base = remote
        for commit in commits {
            try? Syscall.unlink(index)
            let read = try await git.run(
                ["read-tree", "-m", "--aggressive", GitArgument("\(commit)^"), GitArgument(base), GitArgument(commit)],
                acceptedExitCodes: Set(0...255), environment: environment)
            guard read.exitCode == 0 else { return nil }
            let tree = try await git.run(["write-tree"], acceptedExitCodes: Set(0...255), environment: environment)
            guard tree.exitCode == 0 else { return nil }
            let meta = try await git.run(["log", "-1", "--format=%an%x00%ae%x00%aD%x00%B", GitArgument(commit)], readOnly: true)
            let parts = meta.text.split(separator: "\u{0}", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 4 else { return nil }
            let author = ["GIT_AUTHOR_NAME": parts[0], "GIT_AUTHOR_EMAIL": parts[1], "GIT_AUTHOR_DATE": parts[2]]
            base = try await git.run(
                ["commit-tree", GitArgument(tree.text), "-p", GitArgument(base), "-F", "-"],
                input: Array((parts[3] + "\n").utf8), environment: author).text
        }
        return base
    }

    /// True when every commit the remote lacks was made by syncd (it carries the Syncd-Batch
    /// trailer): only those may be replayed.
    private func onlySyncdCommits(branch: String, tracking: String) async throws -> Bool {
        let result = try await git.run(
            ["log", "--format=%H %(trailers:key=Syncd-Batch,valueonly,separator=%x2C)", GitArgument("\(tracking)..\(branch)")],
            readOnly: true)
        let lines = result.text.split(separator: "\n")
        return !lines.isEmpty && lines.allSatisfy { $0.split(separator: " ").count >= 2 }
    }

    /// `syncd.strategyOption`: a conflicting merge settled for one side without the working tree.
    /// The merge result of `merge-tree` (clean files merged, conflicted ones with markers) goes
    /// into a private index; each conflicted path takes the chosen side's version whole (or is
    /// removed when that side deleted it); the tree becomes a merge commit with both parents,
    /// applied like any other by the fast-forward (which refuses to overwrite local changes).
    /// `git merge -X` is not used: it runs in the working tree, and its `--abort` after a
    /// modify/delete conflict rolled back writes a plain writer had made meanwhile.
    /// nil when the tree cannot be built (then a conflict branch keeps both sides).
    private func resolvedMerge(branch: String, tree: String, files: [String], local: String, remote: String) async throws -> String? {
        let index = options.stateDirectory + Array("/resolve.index".utf8)
        let environment = ["GIT_INDEX_FILE": String(decoding: index, as: UTF8.self)]
        try? Syscall.unlink(index)
        defer { try? Syscall.unlink(index) }
        guard try await git.run(["read-tree", GitArgument(tree)], acceptedExitCodes: Set(0...255), environment: environment).exitCode == 0 else { return nil }
        let side = options.strategyOption == .ours ? local : remote
        for file in files {
            let entry = try await git.run(["ls-tree", "-z", GitArgument(side), "--", GitArgument(file)], readOnly: true)
            let fields = (entry.nulSeparatedFields.first ?? []).split(separator: UInt8(ascii: "\t"), maxSplits: 1).first
                .map { String(decoding: $0, as: UTF8.self).split(separator: " ").map(String.init) } ?? []
            let update: GitResult
            if fields.count == 3 {
                update = try await git.run(
                    ["update-index", "--add", "--cacheinfo", GitArgument("\(fields[0]),\(fields[2]),\(file)")],
                    acceptedExitCodes: Set(0...255), environment: environment)
            } else {
                update = try await git.run(["update-index", "--force-remove", "--", GitArgument(file)], acceptedExitCodes: Set(0...255), environment: environment)
            }
            guard update.exitCode == 0 else { return nil }
        }
        let resolved = try await git.run(["write-tree"], acceptedExitCodes: Set(0...255), environment: environment)
        guard resolved.exitCode == 0 else { return nil }
        let name = Self.shortName(branch)
        let message = "syncd: merge \(options.remote)/\(name) into \(name) (-X \(options.strategyOption.rawValue): "
            + "\(files.joined(separator: ", ")) from the \(options.strategyOption == .ours ? "local" : "remote") side)\n\nSyncd-Host: \(options.host)\n"
        return try await git.run(
            ["commit-tree", GitArgument(resolved.text), "-p", GitArgument(local), "-p", GitArgument(remote), "-F", "-"],
            input: Array(message.utf8)).text
    }

    // MARK: - refs

    /// The commit `ref` names, nil when it does not exist.
    private func commitOf(_ ref: String) async throws -> String? {
        let result = try await git.run(["rev-parse", "-q", "--verify", GitArgument("\(ref)^{commit}")], readOnly: true, acceptedExitCodes: [0, 1, 128])
        return result.exitCode == 0 ? result.text : nil
    }

    /// True when `ref` names an object (a missing branch or remote-tracking ref is not an error).
    private func resolves(_ ref: String) async throws -> Bool {
        try await git.run(["rev-parse", "-q", "--verify", GitArgument(ref)], readOnly: true, acceptedExitCodes: [0, 1]).exitCode == 0
    }

    private func divergence(branch: String, tracking: String) async throws -> (behind: Int, ahead: Int) {
        let exists = try await resolves(tracking)
        guard try await resolves(branch) else { return (exists ? 1 : 0, 0) }
        guard exists else { return (0, 1) }
        let counts = try await git.run(
            ["rev-list", "--left-right", "--count", GitArgument("\(tracking)...\(branch)")], readOnly: true)
        let parts = counts.text.split(whereSeparator: { $0 == "\t" || $0 == " " }).compactMap { Int($0) }
        return parts.count == 2 ? (parts[0], parts[1]) : (0, 0)
    }

    /// The paths git names, one per tab-indented line, in a refusal.
    static func pathsNamed(in text: String) -> [String] {
        let names = text.split(separator: "\n").filter { $0.hasPrefix("\t") }.map { String($0.dropFirst()) }
        return names.isEmpty ? [firstLine(text, or: "local changes")] : Array(names.prefix(10))
    }

    /// `main` for `refs/heads/main`.
    public static func shortName(_ branch: String) -> String {
        branch.hasPrefix("refs/heads/") ? String(branch.dropFirst("refs/heads/".count)) : branch
    }

    // MARK: - backups

    /// A bundle of what the previous bundle lacks (a full one to start a chain: see
    /// `BundleStore.nextIsFull`); nothing when there is nothing new. Remote commits that were
    /// integrated are included, so a chain restores without the remote. Temporary name, fsync,
    /// rename, fsync of the directory; then the same file is copied to `syncd.backupDir`, where a
    /// failure is a warning (`offsiteProblem`), never a stop.
    public func backup(branch: String, tracking: String) async throws {
        try Syscall.makeDirectory(options.backupDirectory)
        let store = BundleStore(directory: options.backupDirectory)
        let name = "\(Self.compactTime())-\(options.host).bundle"
        let final = options.backupDirectory + [UInt8(ascii: "/")] + Array(name.utf8)
        let temporary = final + Array(".partial".utf8)
        // The branch first (restore takes the first ref), then the originals of squashed commits.
        var arguments: [GitArgument] = ["bundle", "create", "--quiet", GitArgument(rawBytes: temporary), GitArgument(branch)]
        let kept = try await git.run(["for-each-ref", "--format=%(refname)", GitArgument(Squash.keepPrefix)], readOnly: true).text
        arguments += kept.split(separator: "\n").map { GitArgument(String($0)) }
        let now = ControlFile.now()
        if !store.nextIsFull(keep: options.backupKeep, maxAge: options.backupMaxAge, now: now), let previous = store.list().first {
            arguments += BundleHeader.read(previous.path).refs.map { GitArgument("^\($0.commit)") }
        }
        let result = try await git.run(arguments, readOnly: true, acceptedExitCodes: [0, 128])
        if result.exitCode != 0 {
            try? Syscall.unlink(temporary)
            if result.standardError.contains("Refusing to create empty bundle") { return }
            throw SyncError(
                GitRunner.isDiskFull(result.standardError) ? .diskFull : .git,
                "cannot write the backup bundle \(Syscall.display(final)): \(Self.firstLine(result.standardError, or: "exit \(result.exitCode)"))")
        }
        do {
            let fd = try Syscall.open(temporary, flags: O_RDONLY)
            defer { Syscall.close(fd) }
            try Syscall.fsync(fd, path: temporary)
            try Syscall.rename(temporary, to: final)
            try Syscall.fsyncDirectory(options.backupDirectory)
        } catch {
            try? Syscall.unlink(temporary)
            throw SyncError(error.errno == Errno(ENOSPC) ? .diskFull : .syscall, "cannot store the backup bundle \(Syscall.display(final))", cause: error)
        }
        store.prune(keep: options.backupKeep, maxAge: options.backupMaxAge, now: now)
        copyOffsite(final, name: name, now: now)
    }

    /// Why the last copy to `syncd.backupDir` failed (nil when it worked or none is set).
    public private(set) var offsiteProblem: String?

    /// Copies every local bundle the off-site directory lacks (so a target that was missing for a
    /// while catches up), then applies the same retention there.
    private func copyOffsite(_ newest: [UInt8], name: String, now: Double) {
        guard let configured = options.offsiteDirectory else { return }
        // A symlink to the mount point is followed (the directory it names must exist).
        let directory = Syscall.realPath(configured) ?? configured
        let offsite = BundleStore(directory: directory)
        let present = Set(offsite.list().map(\.name))
        do {
            guard Syscall.exists(directory) else {
                throw SyncError(.syscall, "the directory does not exist (is the disk mounted?)")
            }
            for backup in BundleStore(directory: options.backupDirectory).list().reversed() where !present.contains(backup.name) {
                do {
                    try offsite.store(copyOf: backup.path, name: backup.name) { Failpoint.hitBlocking("offsite-before-rename", log: log) }
                } catch {
                    throw SyncError(error.errno == Errno(ENOSPC) ? .diskFull : .syscall, "cannot copy \(backup.name) there", cause: error)
                }
            }
            offsite.prune(keep: options.backupKeep, maxAge: options.backupMaxAge, now: now)
            if offsiteProblem != nil { log.info("off-site backups in \(Syscall.display(directory)) are current again") }
            offsiteProblem = nil
        } catch {
            let problem = "off-site backup to \(Syscall.display(directory)) (syncd.backupDir) failed: \((error as? SyncError)?.description ?? "\(error)"); "
                + "the local backups and commits go on; it catches up once the directory is back"
            if problem != offsiteProblem { log.warning("\(problem)") }
            offsiteProblem = problem
        }
    }

    static func compactTime() -> String {
        let text = WallClock.rfc3339()  // 2026-11-22T07:02:03.123Z
        return text.filter { $0 != "-" && $0 != ":" }.replacingDot()
    }

    /// The prefix of every conflict branch (`syncd/conflict/HOST/TIME`).
    public static let conflictPrefix = "syncd/conflict/"

    /// When a conflict branch was made, from the time in its name
    /// (`syncd/conflict/HOST/20261122T070203-123Z`, see `compactTime`); nil for other names.
    public static func conflictBranchTime(_ name: String) -> Double? {
        guard let last = name.split(separator: "/").last else { return nil }
        let text = Array(last)
        guard text.count >= 15, text[8] == "T" else { return nil }
        func part(_ range: Range<Int>) -> String { String(text[range]) }
        var rfc3339 = "\(part(0..<4))-\(part(4..<6))-\(part(6..<8))T\(part(9..<11)):\(part(11..<13)):\(part(13..<15))"
        rfc3339 += text.count >= 20 && text[15] == "-" && text[19] == "Z" ? ".\(part(16..<19))Z" : ".000Z"
        guard text.count == 15 || text.count == 16 || text.count == 20 else { return nil }
        return WallClock.seconds(rfc3339: rfc3339)
    }

    static func firstLine(_ text: String, or fallback: String) -> String {
        text.split(separator: "\n").first { !String($0).trimmed.isEmpty }.map(String.init) ?? fallback
    }
}

extension String {
    fileprivate func replacingDot() -> String { String(map { $0 == "." ? "-" : $0 }) }
}

/// A stash recorded by syncd 0.x, which set uncommitted changes aside around an integration
/// (`git stash push --include-untracked`). That design could delete a file a plain writer created
/// between git's snapshot and its clean (docs/ARCHITECTURE.md), and is gone; a record left by an
/// older version that crashed mid-integration is still restored at startup.
public struct StashInFlight: Codable, Sendable {
    public var hash: String
    public var message: String

    static func recordPath(_ directory: [UInt8]) -> [UInt8] { directory + Array("/stash-in-flight.json".utf8) }

    /// At startup: a stash recorded but not restored is applied by hash. If it cannot be applied
    /// cleanly, it is kept (both versions survive) and the log says how to get it back.
    public static func recover(git: GitRunner, directory: [UInt8], log: Logger) async {
        guard case .value(let stash) = ControlFile.read(StashInFlight.self, at: recordPath(directory)) else { return }
        log.warning("a sync of an older syncd was interrupted with local changes set aside in stash \(stash.hash.prefix(12)); restoring them first")
        do {
            let applied = try await git.run(["stash", "apply", "--quiet", GitArgument(stash.hash)], acceptedExitCodes: Set(0...255))
            if applied.exitCode == 0 {
                let entries = try await git.run(["log", "-g", "--format=%H", "refs/stash"], readOnly: true, acceptedExitCodes: [0, 128])
                if let index = entries.text.split(separator: "\n").map(String.init).firstIndex(of: stash.hash) {
                    _ = try await git.run(["stash", "drop", "--quiet", GitArgument("stash@{\(index)}")], acceptedExitCodes: [0, 1])
                }
            } else {
                log.warning("""
                    stash \(stash.hash) could not be applied cleanly (\(RemoteProblem.oneLine(Syncer.firstLine(applied.standardError, or: "conflict")))); \
                    it is kept: `git stash show -p \(stash.hash)`, `git checkout \(stash.hash) -- PATH`
                    """)
            }
            try ControlFile.remove(recordPath(directory))
        } catch {
            log.error("cannot restore stash \(stash.hash) (\(error)); it is kept: `git stash apply \(stash.hash)` restores it")
        }
    }
}

/// A step of an integration that changes the working tree, recorded before it starts:
/// - `fastForward` (`from` → `to`): `merge --ff-only` moving branch, index and working tree;
/// - `merge`: `git merge -X` for `syncd.strategyOption`;
/// - `rebase`: left by an older syncd, which ran `git rebase` (syncd no longer does).
/// Found at startup (syncd died in the middle), a merge or rebase still in progress is aborted; a
/// fast-forward either finished (the branch is at `to`) or did not move the branch, and then any
/// file git had already written is committed by the startup batch and the next sync integrates
/// again. Either way nothing is lost.
public struct IntegrationInFlight: Codable, Sendable {
    public enum Kind: String, Codable, Sendable { case rebase, merge, fastForward }
    public var kind: Kind
    public var from: String?
    public var to: String?

    init(kind: Kind, from: String? = nil, to: String? = nil) {
        self.kind = kind
        self.from = from
        self.to = to
    }

    static func recordPath(_ directory: [UInt8]) -> [UInt8] { directory + Array("/integration-in-flight.json".utf8) }

    func record(in directory: [UInt8]) throws {
        try ControlFile.write(self, to: Self.recordPath(directory))
    }

    public static func recover(repository: Repository, directory: [UInt8], log: Logger) async {
        guard case .value(let record) = ControlFile.read(IntegrationInFlight.self, at: recordPath(directory)) else { return }
        switch record.kind {
        case .fastForward:
            let head = try? await repository.git.run(["rev-parse", "-q", "--verify", "HEAD"], readOnly: true, acceptedExitCodes: [0, 1, 128])
            let indexTree = try? await repository.git.run(["write-tree"], acceptedExitCodes: Set(0...255))
            let targetTree = try? await repository.git.run(["rev-parse", "-q", "--verify", GitArgument("\(record.to ?? "")^{tree}")], readOnly: true, acceptedExitCodes: Set(0...255))
            if let head, head.exitCode == 0, head.text == record.to {
                log.info("the integration interrupted by the last stop had finished (the branch is at \(head.text.prefix(12)))")
            } else if let head, head.exitCode == 0, head.text == record.from, let to = record.to, let from = record.from,
                indexTree?.exitCode == 0, targetTree?.exitCode == 0, indexTree?.text == targetTree?.text
            {
                // Index and tree had moved (a replay's read-tree), the branch had not: finish it.
                _ = try? await repository.git.run(["update-ref", "HEAD", GitArgument(to), GitArgument(from)])
                log.warning("an integration was interrupted after the working tree moved; the branch is moved to \(to.prefix(12)) to finish it")
            } else {
                // git's own index.lock, left by the killed merge, would otherwise block commits.
                let lock = repository.gitDir + Array("/index.lock".utf8)
                if Syscall.exists(lock), ProcessTable.processesHolding(lock).isEmpty, ProcessTable.gitProcesses(within: repository.workTree).isEmpty {
                    try? Syscall.unlink(lock)
                }
                log.warning("""
                    an integration was interrupted before the branch moved; any file it had already written \
                    is committed by the startup batch and the next sync integrates again: nothing is lost
                    """)
            }
        case .merge, .rebase:
            let markers = record.kind == .rebase ? ["rebase-merge", "rebase-apply"] : ["MERGE_HEAD"]
            if markers.contains(where: { Syscall.exists(repository.gitDir + Array("/\($0)".utf8)) }) {
                let abort: [GitArgument] = record.kind == .rebase ? ["rebase", "--abort"] : ["merge", "--abort"]
                let result = try? await repository.git.run(abort, acceptedExitCodes: Set(0...255))
                let failed = result?.exitCode == 0 ? "" : " (it failed: \(result.map { Syncer.firstLine($0.standardError, or: "?") } ?? "?"); resolve by hand)"
                log.warning("a \(record.kind.rawValue) syncd started was interrupted; rolled back with `git \(record.kind.rawValue) --abort`\(failed)")
            }
        }
        try? ControlFile.remove(recordPath(directory))
    }
}
