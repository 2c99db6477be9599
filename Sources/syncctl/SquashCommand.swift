import ArgumentParser
import SyncCore
import SyncEngine
import SyncGit

/// `syncctl squash`: syncd's own unpushed commits folded into one with a person's message, then
/// pushed (the same path as `syncd.squash`, asked for now).
struct SquashCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squash",
        abstract: "Commit what is pending, fold syncd's own unpushed commits into one with your message, and push it.",
        discussion: """
            Only commits the remote lacks, made by syncd, after the last one that is not (a person's \
            commit or a merge) are folded; the originals stay under refs/syncd/squashed/ and on the \
            remote's refs/syncd/wip/HOST-ID/BRANCH. Needs a remote.
            """)
    @OptionGroup var options: WorkspaceOptions
    @Option(name: .shortAndLong, help: "The message of the folded commit.")
    var message: String
    @Option(help: "Only commits after this one (a commit or checkpoint), or made within this long (2h).")
    var since: String?
    @Option(help: "How long to wait for the commit, the squash and the push.")
    var timeout = "180s"

    func validate() throws {
        _ = try parseTimeout(timeout)
        guard !message.trimmed.isEmpty, message.count <= 4000 else { throw ValidationError("--message must have 1 to 4000 characters") }
    }

    func run() async throws {
        let client = try await options.client(forWriting: true)
        let git = client.repository.git
        guard client.runningPid() != nil else {
            throw Failure("no syncd is running for \(client.repository.workTreeDisplay): it squashes and pushes; start it first", code: ExitStatus.notRunning)
        }
        guard let remote = client.state()?.remote, !remote.isEmpty else {
            throw Failure("\(client.repository.workTreeDisplay) has no remote: a squash folds the commits a remote lacks; with none, every commit is only here and none is rewritten")
        }
        var after: String?
        if let since {
            if let commit = try await Checkpoints.resolve(since, git: git) {
                after = commit
            } else if let duration = Settings.parseDuration(since) {
                let when = ControlFile.now() - Double(duration.components.seconds)
                after = try await Checkpoints.commit(before: when, git: git)
            } else {
                throw ValidationError("--since \(since): expected a commit, a checkpoint, or a duration like 2h")
            }
        }
        let request = ControlRequest(command: "squash", serial: ControlFile.newSerial(), by: ControlClient.requester, message: message, since: after)
        let state: StatusSnapshot
        switch try await client.syncRequest(request, timeout: try parseTimeout(timeout)) {
        case .confirmed(let confirmed): state = confirmed
        case .notRunning: throw Failure("syncd stopped meanwhile; nothing was squashed", code: ExitStatus.notRunning)
        case .notConfirmed: throw Failure("the squash did not finish within \(timeout): see `syncctl status`", code: ExitStatus.notConfirmed)
        }
        let outcome = state.syncOutcome
        guard outcome == "pushed" || outcome == "synced" else { throw Failure("not squashed and pushed: \(outcome); see `syncctl status`") }
        let head = try await git.run(["log", "-1", "--format=%h %s", "HEAD"], readOnly: true).text
        let subject = message.split(separator: "\n").first.map(String.init) ?? message
        if head.hasSuffix(" " + subject) {
            say("squashed and pushed to \(remote): \(head)")
        } else {
            say("nothing to squash (no unpushed commits of syncd's after the last one that is not); \(remote) has HEAD \(head)")
        }
    }
}
