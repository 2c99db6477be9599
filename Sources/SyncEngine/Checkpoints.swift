import Glibc
import SyncCore
import SyncGit
import SyncSystem

/// Named checkpoints: an annotated tag object (message, time, who) under
/// `refs/syncd/checkpoints/NAME`, kept until deleted. Plain git: `git log refs/syncd/checkpoints/X`
/// works, and a push of `refs/syncd/*` carries them elsewhere.
public enum Checkpoints {
    public static let prefix = "refs/syncd/checkpoints/"

    public struct Entry: Sendable {
        public var name: String
        public var commit: String
        public var time: String
        public var by: String
        public var message: String
    }

    /// A name git accepts as a ref (`git check-ref-format`), or why not.
    public static func validate(_ name: String, git: GitRunner) async throws -> String? {
        guard !name.isEmpty, name.count <= 100 else { return "a checkpoint name has 1 to 100 characters" }
        let result = try await git.run(["check-ref-format", GitArgument(prefix + name)], readOnly: true, acceptedExitCodes: [0, 1])
        return result.exitCode == 0 ? nil : "\(name) is not a valid ref name (no spaces, `..`, `~`, `^`, `:`, `?`, `*`, `[`, or a trailing `.lock`)"
    }

    /// Marks `commit` as `name`; never replaces an existing checkpoint.
    public static func create(name: String, commit: String, message: String, by: String, git: GitRunner) async throws {
        let who = OneLine.make(by, limit: 100).replacing("<", with: "").replacing(">", with: "")
        let seconds = Int(ControlFile.now())
        let text = "object \(commit)\ntype commit\ntag \(name)\ntagger \(who) <syncd@\(ProcessTable.hostName)> \(seconds) +0000\n\n\(message)\n"
        let tag = try await git.run(["mktag"], input: Array(text.utf8))
        let created = try await git.run(
            ["update-ref", "-m", "syncd checkpoint", GitArgument(prefix + name), GitArgument(tag.text), ""], acceptedExitCodes: [0, 128])
        guard created.exitCode == 0 else {
            throw SyncError(.invalidSetting, "a checkpoint named \(name) exists already: pick another name, or delete it (`syncctl checkpoints --delete \(name)`)")
        }
    }

    public static func list(git: GitRunner) async throws -> [Entry] {
        let format = "%(refname)%00%(*objectname)%(objectname)%00%(taggerdate:iso-strict)%00%(taggername)%00%(contents:subject)%00"
        let result = try await git.run(["for-each-ref", "--sort=taggerdate", GitArgument("--format=" + format), GitArgument(prefix)], readOnly: true)
        var entries: [Entry] = []
        for line in String(decoding: result.standardOutput, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 5 else { continue }
            // %(*objectname) is the tagged commit; for a plain ref only %(objectname) is set.
            let ids = fields[1]
            let commit = ids.count >= 80 ? String(ids.prefix(40)) : ids
            entries.append(Entry(
                name: String(fields[0].dropFirst(prefix.count)), commit: commit, time: fields[2], by: fields[3], message: fields[4]))
        }
        return entries
    }

    /// Deletes a checkpoint; false when there is none by that name.
    public static func delete(name: String, git: GitRunner) async throws -> Bool {
        let exists = try await git.run(["rev-parse", "-q", "--verify", GitArgument(prefix + name)], readOnly: true, acceptedExitCodes: [0, 1, 128])
        guard exists.exitCode == 0 else { return false }
        _ = try await git.run(["update-ref", "-d", GitArgument(prefix + name), GitArgument(exists.text)])
        return true
    }

    /// A checkpoint name, a commit (anything `rev-parse` takes), or nil.
    public static func resolve(_ target: String, git: GitRunner) async throws -> String? {
        for candidate in [prefix + target + "^{commit}", target + "^{commit}"] {
            let result = try await git.run(["rev-parse", "-q", "--verify", "--end-of-options", GitArgument(candidate)], readOnly: true, acceptedExitCodes: [0, 1, 128])
            if result.exitCode == 0 { return result.text }
        }
        return nil
    }

    /// The last commit of the current branch's first-parent line made at or before `time`.
    public static func commit(before time: Double, git: GitRunner) async throws -> String? {
        let result = try await git.run(["rev-list", "-1", "--first-parent", GitArgument("--before=\(Int(time))"), "HEAD"], readOnly: true, acceptedExitCodes: [0, 128])
        return result.exitCode == 0 && !result.text.isEmpty ? result.text : nil
    }
}
