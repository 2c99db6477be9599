import Logging
import SyncCore
import SyncGit
import SyncSystem

/// Squashed pushes (`syncd.squash`, `syncctl squash`): syncd's own unpushed commits folded into
/// one. Only history that exists nowhere else is rewritten: commits the remote-tracking ref
/// lacks, made by syncd (the `Syncd-Batch` trailer), with one parent, after the last commit that
/// is not (a person's commit or a merge stays as it is, and so does all before it). The folded
/// commit has the same tree as the last original, so the index and the working tree need no
/// change at all; the branch moves by compare-and-swap. The originals stay reachable under
/// `refs/syncd/squashed/` (for `syncd.squashKeep`) and are pushed to `refs/syncd/wip/HOST-ID/BRANCH` (ID: one per clone).
public enum Squash {
    public struct Run: Sendable {
        /// The commit the run starts from (on the remote, or a person's commit, or a merge).
        public var base: String
        /// syncd's commits, oldest first.
        public var commits: [String]
        /// Commit time of the oldest, in seconds since the epoch.
        public var oldest: Double
        public var tip: String { commits.last ?? base }
    }

    public static let keepPrefix = "refs/syncd/squashed/"

    /// The run of syncd's own commits at the end of `branch` that `tracking` lacks, optionally only
    /// those after `since`. nil when there is none (or no remote-tracking ref yet: nothing is
    /// known to be unpushed, so nothing is rewritten).
    public static func run(git: GitRunner, branch: String, tracking: String, since: String? = nil) async throws -> Run? {
        let exists = try await git.run(["rev-parse", "-q", "--verify", GitArgument(tracking)], readOnly: true, acceptedExitCodes: [0, 1, 128])
        guard exists.exitCode == 0 else { return nil }
        var range: [GitArgument] = [GitArgument(branch), "--not", GitArgument(tracking)]
        if let since { range.append(GitArgument(since)) }
        let log = try await git.run(
            ["log", "--first-parent", "--reverse", "--format=%H%x00%P%x00%ct%x00%(trailers:key=Syncd-Batch,valueonly,separator=%x2C)%x00"] + range,
            readOnly: true)
        let fields = log.standardOutput.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self).trimmed }
        var run: [(commit: String, time: Double)] = []
        var index = 0
        while index + 3 < fields.count {
            let (commit, parents, time, batch) = (fields[index], fields[index + 1], fields[index + 2], fields[index + 3])
            index += 4
            guard !commit.isEmpty else { continue }
            let squashable = parents.split(separator: " ").count == 1 && !batch.isEmpty
            if squashable { run.append((commit, Double(time) ?? 0)) } else { run = [] }
        }
        guard let first = run.first else { return nil }
        let parent = try await git.run(["rev-parse", GitArgument(first.commit + "^")], readOnly: true).text
        return Run(base: parent, commits: run.map(\.commit), oldest: first.time)
    }

    /// Folds `run` into one commit on its base and moves `branch` to it if it still points at the
    /// run's tip. Returns the new commit, or nil when the branch moved meanwhile (a commit, an
    /// integration): nothing changed then.
    public static func fold(
        _ run: Run, git: GitRunner, branch: String, message: String?, host: String, keep: Duration, log: Logger
    ) async throws -> String? {
        guard run.commits.count >= 2 || message != nil else { return nil }
        let tree = try await git.run(["rev-parse", GitArgument(run.tip + "^{tree}")], readOnly: true).text
        let diff = try await git.run(
            ["diff", "--name-status", "--no-renames", GitArgument(run.base), GitArgument(run.tip)], readOnly: true).text
        let files = diff.split(separator: "\n").map { $0.replacing("\t", with: " ") }
        let trailers = try await git.run(
            ["log", "--format=%(trailers:key=Syncd-Writer,valueonly,separator=%x2C)", GitArgument("\(run.base)..\(run.tip)")], readOnly: true).text
        var writers: [String] = []
        for name in trailers.split(whereSeparator: { $0 == "\n" || $0 == "," }).map({ String($0).trimmed }) where !name.isEmpty && !writers.contains(name) {
            writers.append(name)
        }
        var text = message.map { $0 + "\n\n" } ?? "syncd: \(run.commits.count) commits squashed, \(files.count) file(s)\n\n"
        text += files.prefix(200).joined(separator: "\n") + (files.count > 200 ? "\n… and \(files.count - 200) more" : "") + "\n\n"
        text += "Syncd-Squashed: \(run.commits.count) commits, \(run.commits.first!.prefix(12))..\(run.tip.prefix(12))\n"
        text += "Syncd-Host: \(host)\n"
        if !writers.isEmpty { text += "Syncd-Writer: \(writers.joined(separator: ", "))\n" }
        // The author of the last original (syncd, under the workspace's email).
        let meta = try await git.run(["log", "-1", "--format=%an%x00%ae", GitArgument(run.tip)], readOnly: true)
        let parts = meta.text.split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
        var environment: [String: String] = [:]
        if parts.count == 2 {
            environment = ["GIT_AUTHOR_NAME": parts[0], "GIT_AUTHOR_EMAIL": parts[1], "GIT_COMMITTER_NAME": parts[0], "GIT_COMMITTER_EMAIL": parts[1]]
        }
        let folded = try await git.run(
            ["commit-tree", GitArgument(tree), "-p", GitArgument(run.base), "-F", "-"], input: Array(text.utf8), environment: environment).text
        // The originals stay reachable before the branch moves.
        let keepRef = keepPrefix + Syncer.shortName(branch) + "/" + run.tip
        _ = try await git.run(["update-ref", GitArgument(keepRef), GitArgument(run.tip)])
        await Failpoint.hit("squash-before-move", log: log)
        let moved = try await git.run(
            ["update-ref", "-m", "syncd: squash", GitArgument(branch), GitArgument(folded), GitArgument(run.tip)], acceptedExitCodes: [0, 128])
        guard moved.exitCode == 0 else { return nil }
        try await prune(git: git, keep: keep)
        return folded
    }

    /// Drops kept originals older than `keep` (by the commit time of their tip).
    static func prune(git: GitRunner, keep: Duration) async throws {
        let refs = try await git.run(["for-each-ref", "--format=%(refname) %(committerdate:unix)", GitArgument(keepPrefix)], readOnly: true).text
        let cutoff = ControlFile.now() - Double(keep.components.seconds)
        for line in refs.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let time = Double(parts[1]), time < cutoff else { continue }
            _ = try? await git.run(["update-ref", "-d", GitArgument(String(parts[0]))])
        }
    }
}
