import Glibc
import SyncCore
import SyncGit
import SyncSystem
import SyncWatcher

/// One sync cycle with the remote, run by the service between batches:
///
/// 1. fetch the branch into its remote-tracking ref (no lock: the working tree is not touched);
/// 2. take an incremental `git bundle` of what the remote does not have (a full one the first
///    time), written under a temporary name, fsynced, renamed; old bundles pruned;
/// 3. if the remote has commits the branch lacks, integrate under the writer lease and the
///    exclusive sync lock (the caller holds them): fast-forward, or for diverged histories a
///    merge built with `merge-tree --write-tree` and applied with
///    `merge --ff-only --no-overwrite-ignore` (git's own safe checkout; ignored local files are
///    never overwritten); a conflict leaves branch and working tree alone and pushes the local
///    side to `syncd/conflict/<host>/<time>`;
/// 4. push the branch with an explicit refspec, never forced; a rejection means fetch and
///    integrate again (bounded).
public actor Syncer {
    public struct Options: Sendable {
        public var remote: String
        public var networkTimeout: Duration = .seconds(120)
        public var backupDirectory: [UInt8]
        public var backupKeep = 20
        public var backupMaxAge: Duration = .seconds(30 * 86_400)
        public var host = ProcessTable.hostName
        public var fsync = true
        /// Where the stash of an integration in flight is recorded (for recovery after a crash).
        public var stateDirectory: [UInt8]
        public var integrate: Settings.IntegratePolicy = .merge
        public var strategyOption: Settings.StrategyOption = .none
        public init(remote: String, backupDirectory: [UInt8], stateDirectory: [UInt8]) {
            self.remote = remote
            self.backupDirectory = backupDirectory
            self.stateDirectory = stateDirectory
        }
    }

    public enum Outcome: Sendable, Equatable {
        /// Local and remote agree (after whatever was pushed or integrated).
        case synced(pushed: Bool, integrated: Bool)
        /// The histories conflict: the local side was pushed to `branch`; `files` conflict.
        case conflict(branch: String, files: [String])
        /// The working tree must change but the caller did not grant the lock; try again with it.
        case needsWorkTree
        /// The remote could not be reached; the message says why.
        case offline(String)
    }

    private let repository: Repository
    private let git: GitRunner
    public let options: Options
    private let log: LogSink
    private var conflictBranch: String?
    private var lastBundledTip: String?

    public init(repository: Repository, options: Options, log: @escaping LogSink) {
        self.repository = repository
        self.git = repository.git
        self.options = options
        self.log = log
    }

    /// The remote syncd pushes to: `syncd.remote`, else the branch's upstream remote, else
    /// `origin` when it exists; nil when the repository has no remote (syncing is then off).
    public static func defaultRemote(_ repository: Repository, branch: String?) async -> String? {
        let git = repository.git
        if let branch, branch.hasPrefix("refs/heads/") {
            let name = String(branch.dropFirst("refs/heads/".count))
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

    /// The remote for tools outside the service (doctor, restore): git config `syncd.remote`,
    /// else the default; nil for `none` or no remote.
    public static func configuredRemote(_ repository: Repository, branch: String?) async -> String? {
        let configured = (try? await repository.git.run(["config", "--get", "syncd.remote"], readOnly: true, acceptedExitCodes: [0, 1]))?.text ?? ""
        if configured == "none" { return nil }
        return configured.isEmpty ? await defaultRemote(repository, branch: branch) : configured
    }

    /// Fetches, backs up, integrates (only when `mayChangeWorkTree`), pushes.
    public func cycle(branch: String, mayChangeWorkTree: Bool) async throws -> Outcome {
        let name = String(branch.dropFirst("refs/heads/".count))
        let tracking = "refs/remotes/\(options.remote)/\(name)"
        // The backup comes first: it needs no network, and local commits matter most while the
        // remote is unreachable.
        if try await resolves(branch) {
            try await backup(branch: branch, tracking: tracking)
        }
        for _ in 0..<3 {
            if mayChangeWorkTree { await Failpoint.hit("before-fetch", log: log) }
            if let failure = try await fetch(name: name, tracking: tracking) { return .offline(failure) }
            let (behind, ahead) = try await divergence(branch: branch, tracking: tracking)
            var integrated = false
            if behind > 0 {
                guard mayChangeWorkTree else { return .needsWorkTree }
                // What is not committed is stashed by hash (recorded first), and restored after.
                let stash = try await StashInFlight.save(git: git, directory: options.stateDirectory, log: log)
                await Failpoint.hit("after-stash", log: log)
                let result: Integration
                do {
                    result = try await integrate(branch: branch, tracking: tracking, diverged: ahead > 0)
                } catch {
                    await stash?.restore(git: git, directory: options.stateDirectory, log: log)
                    throw error
                }
                await stash?.restore(git: git, directory: options.stateDirectory, log: log)
                switch result {
                case .done: integrated = true
                case .conflict(let files):
                    let side = try await pushConflict(branch: branch)
                    return .conflict(branch: side, files: files)
                }
            }
            conflictBranch = nil
            let (_, stillAhead) = try await divergence(branch: branch, tracking: tracking)
            if stillAhead == 0 { return .synced(pushed: false, integrated: integrated) }
            if mayChangeWorkTree { await Failpoint.hit("before-push", log: log) }
            switch try await push(name: name) {
            case .pushed: return .synced(pushed: true, integrated: integrated)
            case .rejected: continue  // the remote moved: fetch and integrate again
            case .failed(let message): return .offline(message)
            }
        }
        return .offline("the remote kept moving during three attempts; syncd tries again at the next cycle")
    }

    /// Commits on the branch that the remote-tracking ref does not have.
    public func unpushed(branch: String) async -> Int {
        let name = String(branch.dropFirst("refs/heads/".count))
        guard let result = try? await divergence(branch: branch, tracking: "refs/remotes/\(options.remote)/\(name)") else { return 0 }
        return result.ahead
    }

    // MARK: - steps

    private func networkArguments() -> [GitArgument] {
        // Never wait for credentials; ssh in batch mode (GitRunner's environment), low-speed abort.
        ["-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=\(Int(options.networkTimeout.components.seconds))"]
    }

    /// nil on success, else why the remote could not be reached.
    private func fetch(name: String, tracking: String) async throws -> String? {
        let result = try await runNetwork(
            networkArguments() + ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", GitArgument(options.remote),
                                  GitArgument("+refs/heads/\(name):\(tracking)")])
        if result.exitCode == 0 { return nil }
        // A remote without the branch yet (first push) is not a failure.
        if result.standardError.contains("couldn't find remote ref") { return nil }
        return Self.firstLine(result.standardError, or: "git fetch exited \(result.exitCode)")
    }

    private func runNetwork(_ arguments: [GitArgument]) async throws -> GitResult {
        let git = git
        let result = try await withTimeout(options.networkTimeout) { try await git.run(arguments, acceptedExitCodes: Set(0...255)) }
        return result ?? GitResult(exitCode: 124, standardOutput: [], standardError: "timed out after \(Settings.formatDuration(options.networkTimeout))")
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

    enum Integration { case done, conflict([String]) }

    private func integrate(branch: String, tracking: String, diverged: Bool) async throws -> Integration {
        var target = tracking
        if diverged, options.integrate == .rebase, try await onlySyncdCommits(branch: branch, tracking: tracking) {
            if try await inWorkTree(.rebase, ["rebase", "--quiet", "--no-autostash", GitArgument(tracking)], abort: ["rebase", "--abort"]) {
                log(.info, "rebased syncd's unpushed commits onto \(options.remote)")
                return .done
            }
            log(.info, "the rebase onto \(options.remote) conflicted and was aborted; merging instead")
        }
        if diverged {
            let merged = try await git.run(
                ["merge-tree", "--write-tree", "--name-only", "-z", GitArgument(branch), GitArgument(tracking)],
                acceptedExitCodes: [0, 1])
            let fields = merged.nulSeparatedFields
            guard let tree = fields.first.map({ String(decoding: $0, as: UTF8.self) }) else {
                throw SyncError(.malformed, "git merge-tree printed no tree in \(repository.workTreeDisplay)")
            }
            if merged.exitCode == 1 {
                // Conflicted file names follow the tree, up to an empty field (then messages).
                let names = Array(Set(fields.dropFirst().prefix { !$0.isEmpty }.map { String(decoding: $0, as: UTF8.self) })).sorted()
                if options.strategyOption != .none {
                    let message = "syncd: merge \(options.remote) (-X \(options.strategyOption.rawValue))\n\nSyncd-Host: \(options.host)\n"
                    if try await inWorkTree(
                        .merge,
                        ["merge", "--quiet", "--no-edit", "--no-overwrite-ignore", "-X", GitArgument(options.strategyOption.rawValue),
                         "-m", GitArgument(message), GitArgument(tracking)],
                        abort: ["merge", "--abort"])
                    {
                        log(.warning, "merged \(options.remote) with -X \(options.strategyOption.rawValue): conflicting hunks in \(names.joined(separator: ", ")) "
                            + "took the \(options.strategyOption == .ours ? "local" : "remote") side; the other version stays in history")
                        return .done
                    }
                }
                return .conflict(names)
            }
            let message = "syncd: merge \(options.remote)/\(branch.dropFirst("refs/heads/".count)) into \(branch.dropFirst("refs/heads/".count))\n\nSyncd-Host: \(options.host)\n"
            target = try await git.run(
                ["commit-tree", GitArgument(tree), "-p", GitArgument(branch), "-p", GitArgument(tracking), "-F", "-"],
                input: Array(message.utf8)).text
        }
        await Failpoint.hit("before-merge", log: log)
        // git's own checkout moves branch, index and working tree together and refuses to
        // overwrite local changes or ignored files.
        let result = try await git.run(
            ["merge", "--ff-only", "--no-overwrite-ignore", "--quiet", "--no-edit", GitArgument(target)],
            acceptedExitCodes: [0, 1, 128])
        guard result.exitCode == 0 else {
            let untouched = result.standardError.contains("would be overwritten") || result.standardError.contains("untracked working tree files")
            throw SyncError(
                .git,
                "syncd did not integrate \(options.remote) into \(repository.workTreeDisplay): "
                    + Self.firstLine(result.standardError, or: "git merge exited \(result.exitCode)")
                    + (untouched ? " (local files would be overwritten: nothing was changed; they are committed at the next batch and syncd retries)" : ""))
        }
        log(.info, diverged ? "merged \(options.remote) (the histories had diverged)" : "fast-forwarded to \(options.remote)")
        return .done
    }

    /// True when every commit the remote lacks was made by syncd (it carries the Syncd-Batch
    /// trailer): only those may be rebased.
    private func onlySyncdCommits(branch: String, tracking: String) async throws -> Bool {
        let result = try await git.run(
            ["log", "--format=%H %(trailers:key=Syncd-Batch,valueonly,separator=%x2C)", GitArgument("\(tracking)..\(branch)")],
            readOnly: true)
        let lines = result.text.split(separator: "\n")
        return !lines.isEmpty && lines.allSatisfy { $0.split(separator: " ").count >= 2 }
    }

    /// Runs a git step that changes the working tree (a rebase, a merge with -X), recorded first
    /// so a crash in the middle is rolled back at the next start. On failure it is aborted here.
    private func inWorkTree(_ kind: IntegrationInFlight.Kind, _ arguments: [GitArgument], abort: [GitArgument]) async throws -> Bool {
        try IntegrationInFlight(kind: kind).record(in: options.stateDirectory)
        await Failpoint.hit("during-\(kind.rawValue)", log: log)
        let result = try await git.run(arguments, acceptedExitCodes: Set(0...255))
        if result.exitCode != 0 {
            await Failpoint.hit("before-\(kind.rawValue)-abort", log: log)
            _ = try? await git.run(abort, acceptedExitCodes: Set(0...255))
        }
        try? ControlFile.remove(IntegrationInFlight.recordPath(options.stateDirectory))
        return result.exitCode == 0
    }

    enum Push { case pushed, rejected, failed(String) }

    private func push(name: String) async throws -> Push {
        let result = try await runNetwork(
            networkArguments() + ["push", "--porcelain", "--quiet", GitArgument(options.remote),
                                  GitArgument("refs/heads/\(name):refs/heads/\(name)")])
        if result.exitCode == 0 {
            // Record what the remote now has, so the next backup is incremental.
            _ = try? await git.run(["update-ref", GitArgument("refs/remotes/\(options.remote)/\(name)"), GitArgument("refs/heads/\(name)")])
            return .pushed
        }
        let text = String(decoding: result.standardOutput, as: UTF8.self) + result.standardError
        if text.contains("[rejected]") || text.contains("non-fast-forward") || text.contains("fetch first") { return .rejected }
        return .failed(Self.firstLine(result.standardError, or: "git push exited \(result.exitCode)"))
    }

    /// Pushes the local branch to a conflict branch the user can see (one per conflict episode).
    private func pushConflict(branch: String) async throws -> String {
        let side = conflictBranch ?? "syncd/conflict/\(options.host)/\(Self.compactTime())"
        conflictBranch = side
        _ = try await git.run(["update-ref", GitArgument("refs/heads/\(side)"), GitArgument(branch)])
        let result = try await runNetwork(
            networkArguments() + ["push", "--porcelain", "--quiet", GitArgument(options.remote),
                                  GitArgument("refs/heads/\(side):refs/heads/\(side)")])
        if result.exitCode != 0 {
            log(.warning, "could not push the conflict branch \(side): \(Self.firstLine(result.standardError, or: "exit \(result.exitCode)")); it exists locally")
        }
        return side
    }

    // MARK: - backups

    /// An incremental bundle of what the remote does not have (full the first time); nothing
    /// when there is nothing new. Temporary name, fsync, rename, fsync of the directory.
    public func backup(branch: String, tracking: String) async throws {
        try Syscall.makeDirectory(options.backupDirectory)
        let hasTracking = try await resolves(tracking)
        let name = "\(Self.compactTime())-\(options.host).bundle"
        let final = options.backupDirectory + [UInt8(ascii: "/")] + Array(name.utf8)
        let temporary = final + Array(".partial".utf8)
        var arguments: [GitArgument] = ["bundle", "create", "--quiet", GitArgument(rawBytes: temporary), GitArgument(branch)]
        // The first bundle is full (it restores on its own); later ones hold what the remote
        // lacks, and what the previous bundle already held.
        let previous = Self.listBackups(options.backupDirectory).first
        if hasTracking, previous != nil { arguments.append(GitArgument("^\(tracking)")) }
        if let previous, let tip = lastBundledTip ?? Self.bundleTip(previous.path, branch: branch) {
            arguments.append(GitArgument("^\(tip)"))
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
        lastBundledTip = try? await git.run(["rev-parse", GitArgument(branch)], readOnly: true).text
        pruneBackups()
    }

    /// The commit a bundle records for `branch` (its header lists "SHA refname" lines).
    static func bundleTip(_ path: [UInt8], branch: String) -> String? {
        guard let bytes = try? Syscall.readFile(path, limit: 64 * 1024) else { return nil }
        for line in bytes.split(separator: UInt8(ascii: "\n")).prefix(64) {
            let text = String(decoding: line, as: UTF8.self)
            if text.hasSuffix(" " + branch) { return String(text.prefix { $0 != " " }) }
            if text.isEmpty { break }
        }
        return nil
    }

    /// Keeps the newest `backupKeep` bundles and none older than `backupMaxAge`.
    private func pruneBackups() {
        let bundles = Self.listBackups(options.backupDirectory)
        let now = ControlFile.now()
        for (index, bundle) in bundles.enumerated() {
            let tooMany = index >= options.backupKeep
            let tooOld = now - bundle.modified > Double(options.backupMaxAge.components.seconds)
            if tooMany || tooOld { try? Syscall.unlink(bundle.path) }
        }
    }

    public struct Backup: Sendable {
        public var path: [UInt8]
        public var name: String
        public var size: Int
        public var modified: Double
    }

    /// Bundles in `directory`, newest first.
    public static func listBackups(_ directory: [UInt8]) -> [Backup] {
        guard let entries = try? DirectoryListing.list(directory).filter({ $0.type == .regular }).map(\.name) else { return [] }
        var backups: [Backup] = []
        for name in entries where name.count > 7 && name.suffix(7).elementsEqual(".bundle".utf8) {
            let path = directory + [UInt8(ascii: "/")] + name
            guard let info = try? Syscall.lstat(path) else { continue }
            backups.append(Backup(
                path: path, name: String(decoding: name, as: UTF8.self), size: Int(info.st_size),
                modified: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9))
        }
        return backups.sorted { $0.name > $1.name }
    }

    static func compactTime() -> String {
        let text = WallClock.rfc3339()  // 2026-11-22T07:02:03.123Z
        return text.filter { $0 != "-" && $0 != ":" }.replacingDot()
    }

    static func firstLine(_ text: String, or fallback: String) -> String {
        text.split(separator: "\n").first { !String($0).trimmed.isEmpty }.map(String.init) ?? fallback
    }
}

extension String {
    fileprivate func replacingDot() -> String { String(map { $0 == "." ? "-" : $0 }) }
}

/// Uncommitted changes set aside while the working tree is integrated: `git stash push
/// --include-untracked`, identified by its hash (never by position: `stash pop` by position pops
/// the wrong entry when nothing was stashed), recorded in `stash-in-flight` before the
/// integration starts and removed once restored. A record found at startup means a crash in
/// between: `recover` restores it.
public struct StashInFlight: Codable, Sendable {
    public var hash: String
    public var message: String

    static func recordPath(_ directory: [UInt8]) -> [UInt8] { directory + Array("/stash-in-flight.json".utf8) }

    /// Stashes what is not committed; nil when there was nothing.
    static func save(git: GitRunner, directory: [UInt8], log: LogSink) async throws -> StashInFlight? {
        let message = "syncd: set aside during a sync at \(WallClock.rfc3339())"
        let pushed = try await git.run(["stash", "push", "--include-untracked", "--quiet", "--message", GitArgument(message)], acceptedExitCodes: [0, 1])
        guard pushed.exitCode == 0 else {
            throw SyncError(.git, "git stash failed before integrating: \(Syncer.firstLine(pushed.standardError, or: "exit 1"))")
        }
        let top = try await git.run(["log", "-g", "-1", "--format=%H%x00%gs", "refs/stash"], readOnly: true, acceptedExitCodes: [0, 128])
        let fields = top.text.split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
        // Only our own entry counts: an older stash of a person's is never touched.
        guard top.exitCode == 0, fields.count == 2, fields[1].hasSuffix(message) else { return nil }
        let stash = StashInFlight(hash: fields[0], message: message)
        try ControlFile.write(stash, to: recordPath(directory))
        log(.info, "uncommitted changes set aside in stash \(stash.hash.prefix(12)) during the integration")
        return stash
    }

    /// Applies the stash by hash. If that cannot be done cleanly (the integration changed the same
    /// files), both versions are kept: the integrated files stay, the local ones stay in the stash
    /// entry, and the log names it.
    func restore(git: GitRunner, directory: [UInt8], log: LogSink) async {
        do {
            let applied = try await git.run(["stash", "apply", "--quiet", GitArgument(hash)], acceptedExitCodes: Set(0...255))
            if applied.exitCode == 0 {
                try await drop(git: git)
            } else {
                let unmerged = try await git.run(["diff", "--name-only", "--diff-filter=U", "-z"], readOnly: true)
                let paths = unmerged.nulSeparatedFields
                if !paths.isEmpty {
                    _ = try await git.run(["checkout", "-q", "HEAD", "--"] + paths.map { GitArgument(rawBytes: $0) })
                }
                log(.warning, "local changes could not be laid back over the integrated files (\(Syncer.firstLine(applied.standardError, or: "conflict"))): "
                    + "both versions are kept: the integrated files are in the working tree, the local ones in stash \(hash) "
                    + "(`git stash show -p \(hash)`, `git checkout \(hash) -- PATH`)")
            }
            try ControlFile.remove(Self.recordPath(directory))
        } catch {
            log(.error, "cannot restore stash \(hash) (\(error)); it is kept: `git stash apply \(hash)` restores it")
        }
    }

    private func drop(git: GitRunner) async throws {
        let entries = try await git.run(["log", "-g", "--format=%H", "refs/stash"], readOnly: true, acceptedExitCodes: [0, 128])
        let hashes = entries.text.split(separator: "\n").map(String.init)
        if let index = hashes.firstIndex(of: hash) {
            _ = try await git.run(["stash", "drop", "--quiet", GitArgument("stash@{\(index)}")], acceptedExitCodes: [0, 1])
        }
    }

    /// At startup: a stash recorded but not restored (syncd died mid-integration) is restored.
    public static func recover(git: GitRunner, directory: [UInt8], log: LogSink) async {
        guard case .value(let stash) = ControlFile.read(StashInFlight.self, at: recordPath(directory)) else { return }
        log(.warning, "a sync was interrupted with local changes set aside in stash \(stash.hash.prefix(12)); restoring them first")
        await stash.restore(git: git, directory: directory, log: log)
    }
}

/// A rebase or merge syncd runs in the working tree, recorded before it starts. Found at startup
/// (syncd died in the middle), the operation is aborted if git still has it in progress.
public struct IntegrationInFlight: Codable, Sendable {
    public enum Kind: String, Codable, Sendable { case rebase, merge }
    public var kind: Kind

    static func recordPath(_ directory: [UInt8]) -> [UInt8] { directory + Array("/integration-in-flight.json".utf8) }

    func record(in directory: [UInt8]) throws {
        try ControlFile.write(self, to: Self.recordPath(directory))
    }

    public static func recover(repository: Repository, directory: [UInt8], log: LogSink) async {
        guard case .value(let record) = ControlFile.read(IntegrationInFlight.self, at: recordPath(directory)) else { return }
        let markers = record.kind == .rebase ? ["rebase-merge", "rebase-apply"] : ["MERGE_HEAD"]
        if markers.contains(where: { Syscall.exists(repository.gitDir + Array("/\($0)".utf8)) }) {
            let abort: [GitArgument] = record.kind == .rebase ? ["rebase", "--abort"] : ["merge", "--abort"]
            let result = try? await repository.git.run(abort, acceptedExitCodes: Set(0...255))
            log(.warning, "a \(record.kind.rawValue) syncd started was interrupted; rolled back with `git \(record.kind.rawValue) --abort`"
                + (result?.exitCode == 0 ? "" : " (it failed: \(result.map { Syncer.firstLine($0.standardError, or: "?") } ?? "?"); resolve by hand)"))
        }
        try? ControlFile.remove(recordPath(directory))
    }
}
