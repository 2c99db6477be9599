import ArgumentParser
import FoundationEssentials
import Glibc
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem

/// `syncctl conflicts [--clean] [--json]`: the conflict branches syncd made (`syncd/conflict/…`),
/// here and on the remote, with their files, age and whether they are resolved; `--clean` deletes
/// the resolved ones, never one whose commits are not on the remote's branch.
///
/// A conflict branch holds the local side of a conflict (syncd's own, or another machine's,
/// fetched). It is resolved once its tip is in the remote's branch: everything on it reached the
/// remote. Its tip is always in the local branch for syncd's own side, so that is no test.
struct Conflicts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List syncd's conflict branches (syncd/conflict/...), here and on the remote; --clean deletes the resolved ones.",
        discussion: """
            The remote's branch and its conflict branches are fetched first (into remote-tracking refs). A conflict \
            branch is resolved once its tip is in the remote's branch (REMOTE/BRANCH): everything on it reached the \
            remote. --clean deletes resolved ones here and on the remote (there only if it still points where it \
            was checked), never an unresolved one, and refuses when the remote cannot be reached. Exit status: 0 \
            done; 1 an error (a deletion failed, the remote unreachable with --clean: the message says which).
            """)
    @OptionGroup var options: WorkspaceOptions
    @Flag(help: "Delete the resolved conflict branches, here and on the remote.")
    var clean = false
    @Flag(help: "Print one JSON object.")
    var json = false
    @Option(help: "Longest wait for the remote (the fetch, each deletion there).")
    var networkTimeout = "60s"

    func validate() throws {
        guard let value = Settings.parseDuration(networkTimeout), value > .zero else {
            throw ValidationError("--network-timeout \(networkTimeout): expected a duration like 60s")
        }
    }

    /// One conflict branch: its tip here and on the remote (either may be missing).
    struct Branch {
        var name: String
        var localTip: String?
        var remoteTip: String?
        var files: [String] = []
        var created: Double?
        var localResolved = false
        var remoteResolved = false
        /// The tip is in the local branch already (syncd's own side of a conflict).
        var inLocalBranch = false

        var resolved: Bool { (localTip == nil || localResolved) && (remoteTip == nil || remoteResolved) }
    }

    func run() async throws {
        let client = try await options.client()
        let repository = client.repository
        let git = repository.git
        let limit = Settings.parseDuration(networkTimeout) ?? .seconds(60)
        guard let branch = GitDirectoryState.currentBranch(repository) else {
            throw Failure("HEAD is detached in \(repository.workTreeDisplay): conflict branches are judged against the checked-out branch; check one out (`git switch BRANCH`)")
        }
        let short = Syncer.shortName(branch)
        let remote = await Syncer.configuredRemote(repository, branch: branch)
        let tracking = remote.map { "refs/remotes/\($0)/\(short)" }

        // Fetch the remote's branch and its conflict branches; prune the ones deleted there.
        var fetchProblem: RemoteProblem?
        if let remote, let tracking {
            let arguments: [GitArgument] = [
                "-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=\(limit.components.seconds)",
                "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--prune", GitArgument(remote),
                GitArgument("+refs/heads/\(short):\(tracking)"),
                GitArgument("+refs/heads/\(Syncer.conflictPrefix)*:refs/remotes/\(remote)/\(Syncer.conflictPrefix)*"),
            ]
            var result: GitResult?
            // syncd fetches into the same remote-tracking ref: a ref lock it holds for a moment is
            // waited out, not reported as a problem with the remote.
            for attempt in 0..<3 {
                result = try? await withTimeout(limit) { try await git.run(arguments, acceptedExitCodes: Set(0...255)) } ?? nil
                guard let failed = result, failed.exitCode != 0, failed.standardError.contains(".lock"), attempt < 2 else { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            if let result {
                if result.exitCode != 0 {
                    fetchProblem = RemoteProblem(gitOutput: result.standardError, exitCode: result.exitCode, remote: remote, operation: "fetch")
                }
            } else {
                fetchProblem = RemoteProblem(kind: .offline, message: "no answer within \(networkTimeout)")
            }
        }
        var trackingExists = false
        if let tracking { trackingExists = await Self.resolves(git, tracking) }

        // The branches, by name.
        var branches: [String: Branch] = [:]
        for (name, tip) in await Self.refs(git, namespace: "refs/heads/") {
            branches[name, default: Branch(name: name)].localTip = tip
        }
        if let remote {
            for (name, tip) in await Self.refs(git, namespace: "refs/remotes/\(remote)/") {
                branches[name, default: Branch(name: name)].remoteTip = tip
            }
        }
        var list = branches.values.sorted { $0.name < $1.name }
        for index in list.indices {
            var entry = list[index]
            if let tracking, trackingExists {
                if let tip = entry.localTip { entry.localResolved = await Self.isAncestor(git, tip, of: tracking) }
                if let tip = entry.remoteTip { entry.remoteResolved = await Self.isAncestor(git, tip, of: tracking) }
            }
            let tip = entry.localTip ?? entry.remoteTip ?? ""
            entry.inLocalBranch = await Self.isAncestor(git, tip, of: branch)
            entry.files = await Self.files(git, tip: tip, against: trackingExists ? (tracking ?? branch) : branch)
            if let time = Syncer.conflictBranchTime(entry.name) {
                entry.created = time
            } else {
                entry.created = await Self.commitTime(git, tip)
            }
            list[index] = entry
        }

        // --clean: resolved ones only; the remote's by compare-and-swap on the tip that was checked.
        var deleted: [(name: String, place: String)] = []
        var errors: [String] = []
        if clean {
            if let fetchProblem, let remote {
                throw Failure("cannot reach \(remote) (\(fetchProblem.message))"
                    + (fetchProblem.fix.isEmpty ? "" : "; to fix: \(fetchProblem.fix)")
                    + "; nothing deleted: --clean needs the remote's branch as it is now")
            }
            for entry in list where entry.resolved {
                if let tip = entry.localTip {
                    if entry.name == short {
                        errors.append("\(entry.name) is checked out: not deleted")
                    } else {
                        let result = try await git.run(
                            ["update-ref", "-d", GitArgument("refs/heads/\(entry.name)"), GitArgument(tip)], acceptedExitCodes: Set(0...255))
                        if result.exitCode == 0 {
                            deleted.append((name: entry.name, place: "here"))
                        } else {
                            let why = result.standardError.split(separator: "\n").first.map(String.init) ?? "exit \(result.exitCode)"
                            errors.append("cannot delete the branch \(entry.name) here: \(RemoteProblem.oneLine(why))")
                        }
                    }
                }
                if let tip = entry.remoteTip, let remote {
                    let arguments: [GitArgument] = [
                        "push", "--quiet", "--porcelain", GitArgument("--force-with-lease=refs/heads/\(entry.name):\(tip)"),
                        GitArgument(remote), GitArgument(":refs/heads/\(entry.name)"),
                    ]
                    let result = try? await withTimeout(limit) { try await git.run(arguments, acceptedExitCodes: Set(0...255)) } ?? nil
                    if let result, result.exitCode == 0 {
                        deleted.append((name: entry.name, place: remote))
                        _ = try? await git.run(
                            ["update-ref", "-d", GitArgument("refs/remotes/\(remote)/\(entry.name)")], acceptedExitCodes: Set(0...255))
                    } else {
                        let why = result.map { RemoteProblem(gitOutput: $0.standardError + String(decoding: $0.standardOutput, as: UTF8.self), exitCode: $0.exitCode, remote: remote, operation: "push").message }
                            ?? "no answer within \(networkTimeout)"
                        errors.append("cannot delete \(entry.name) on \(remote): \(why) (it changed there since the check, or the remote refused)")
                    }
                }
            }
        }

        let now = ControlFile.now()
        if json {
            var object: [String: JSONValue] = [
                "branch": .string(short),
                "remote": remote.map { .string($0) } ?? .null,
                "fetched": .bool(remote != nil && fetchProblem == nil),
                "fetch_error": .string(fetchProblem?.description ?? ""),
            ]
            object["conflicts"] = .array(list.map { entry -> JSONValue in
                .object([
                    "name": .string(entry.name),
                    "local_tip": entry.localTip.map { .string($0) } ?? .null,
                    "remote_tip": entry.remoteTip.map { .string($0) } ?? .null,
                    "here": .bool(entry.localTip != nil),
                    "on_remote": .bool(entry.remoteTip != nil),
                    "resolved": .bool(entry.resolved),
                    "files": .array(entry.files.map { .string($0) }),
                    "created_at": entry.created.map { .string(WallClock.rfc3339(seconds: $0)) } ?? .null,
                    "age_seconds": entry.created.map { .number(max(0, (now - $0).rounded(.down))) } ?? .null,
                ])
            })
            object["deleted"] = .array(deleted.map { item -> JSONValue in .object(["name": .string(item.name), "where": .string(item.place)]) })
            object["errors"] = .array(errors.map { JSONValue.string($0) })
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            say(String(decoding: try encoder.encode(object), as: UTF8.self))
        } else {
            if let fetchProblem, let remote {
                say("could not fetch from \(remote) (\(fetchProblem.description)): its branches as of the last fetch")
            }
            if list.isEmpty {
                say("no conflict branches" + (remote.map { " here or on \($0)" } ?? " here"))
            }
            let target = remote.map { "\($0)/\(short)" } ?? short
            for entry in list {
                let place = entry.localTip != nil && entry.remoteTip != nil
                    ? "here and on \(remote ?? "the remote")" : (entry.localTip != nil ? "here only" : "on \(remote ?? "the remote") only")
                let old = entry.created.map { " \(Self.age(now - $0)) old," } ?? ""
                let state: String
                if entry.resolved {
                    state = "resolved (in \(target))"
                } else if !trackingExists {
                    state = remote == nil
                        ? "not known to be resolved (no remote to compare with; --clean keeps it)"
                        : "not known to be resolved (\(target) is not fetched yet; --clean keeps it)"
                } else if entry.inLocalBranch {
                    state = "UNRESOLVED: already in \(short) here; merge \(target) (`git merge \(target)`), fix the files, commit, and syncd pushes it"
                } else {
                    let ref = entry.localTip != nil ? entry.name : "\(remote ?? "origin")/\(entry.name)"
                    state = "UNRESOLVED: merge it (`git merge \(ref)`), fix the files, commit, and syncd pushes it"
                }
                say("\(entry.name)  \(place),\(old) \(state)")
                if !entry.files.isEmpty { say("    files: \(entry.files.joined(separator: ", "))") }
            }
            for item in deleted { say("deleted \(item.name) " + (item.place == "here" ? "here" : "on \(item.place)")) }
            if clean, deleted.isEmpty, errors.isEmpty { say("nothing to clean: no resolved conflict branches") }
        }
        if !errors.isEmpty {
            for error in errors { warn("\(error)") }
            throw ExitCode(ExitStatus.failure)
        }
    }

    static func age(_ seconds: Double) -> String {
        let value = max(0, Int(seconds))
        if value < 120 { return "\(value) s" }
        if value < 7200 { return "\(value / 60) min" }
        if value < 172_800 { return "\(value / 3600) h" }
        return "\(value / 86400) days"
    }

    /// `name → tip` of the conflict branches in a namespace (`refs/heads/`, `refs/remotes/R/`),
    /// named without it, so local and remote-tracking names match: `syncd/conflict/HOST/TIME`.
    static func refs(_ git: GitRunner, namespace: String) async -> [(String, String)] {
        let pattern = namespace + String(Syncer.conflictPrefix.dropLast())  // for-each-ref matches up to a slash
        guard let result = try? await git.run(["for-each-ref", "--format=%(refname) %(objectname)", GitArgument(pattern)], readOnly: true)
        else { return [] }
        return String(decoding: result.standardOutput, as: UTF8.self).split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ")
            guard parts.count == 2, parts[0].hasPrefix(namespace + Syncer.conflictPrefix) else { return nil }
            return (String(parts[0].dropFirst(namespace.count)), String(parts[1]))
        }
    }

    static func resolves(_ git: GitRunner, _ ref: String) async -> Bool {
        (try? await git.run(["rev-parse", "--verify", "--quiet", GitArgument(ref)], readOnly: true, acceptedExitCodes: [0, 1]))?.exitCode == 0
    }

    static func isAncestor(_ git: GitRunner, _ commit: String, of ref: String) async -> Bool {
        guard !commit.isEmpty else { return false }
        return (try? await git.run(["merge-base", "--is-ancestor", GitArgument(commit), GitArgument(ref)], readOnly: true, acceptedExitCodes: [0, 1, 128]))?.exitCode == 0
    }

    /// The files the branch changed since it forked from `base` (their merge base).
    static func files(_ git: GitRunner, tip: String, against base: String) async -> [String] {
        guard !tip.isEmpty,
            let mergeBase = try? await git.run(["merge-base", GitArgument(tip), GitArgument(base)], readOnly: true, acceptedExitCodes: [0, 1, 128]),
            mergeBase.exitCode == 0,
            let diff = try? await git.run(["diff", "--name-only", "-z", "--no-renames", GitArgument(String(decoding: mergeBase.standardOutput, as: UTF8.self).trimmed), GitArgument(tip), "--"], readOnly: true)
        else { return [] }
        return diff.nulSeparatedFields.map { String(decoding: $0, as: UTF8.self) }
    }

    static func commitTime(_ git: GitRunner, _ tip: String) async -> Double? {
        guard !tip.isEmpty, let result = try? await git.run(["log", "-1", "--format=%ct", GitArgument(tip), "--"], readOnly: true, acceptedExitCodes: [0, 128])
        else { return nil }
        return Double(String(decoding: result.standardOutput, as: UTF8.self).trimmed)
    }
}
