import ArgumentParser
import SyncCore
import SyncEngine
import SyncGit

/// `syncctl sync`: a `sync` request, confirmed once syncd has committed and (with a remote) pushed.
struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Commit what is pending now and push it; wait for both.",
        discussion: """
            Exits 0 only when everything is committed and, when the workspace has a remote, on the remote \
            (so `syncctl sync && poweroff` is safe); 1 when it was committed but not pushed (offline, a \
            conflict, a setup problem: the message says which), 4 when syncd did not finish in time.
            """)
    @OptionGroup var options: WorkspaceOptions
    @Option(help: "How long to wait for the commit and the push.")
    var timeout = "180s"

    func validate() throws { _ = try parseTimeout(timeout) }

    func run() async throws {
        let client = try await options.client(forWriting: true)
        let wait = try parseTimeout(timeout)
        let request = ControlRequest(command: "sync", serial: ControlFile.newSerial(), by: ControlClient.requester)
        let state: StatusSnapshot
        switch try await client.syncRequest(request, timeout: wait) {
        case .confirmed(let confirmed): state = confirmed
        case .notRunning:
            throw Failure("no syncd is running for \(client.repository.workTreeDisplay): nothing was committed (syncd commits everything pending when it starts)", code: ExitStatus.notRunning)
        case .notConfirmed:
            let reason = client.state()?.reason ?? ""
            throw Failure("the sync did not finish within \(timeout)" + (reason.isEmpty ? "" : ": \(reason)"), code: ExitStatus.notConfirmed)
        }
        let outcome = state.syncOutcome.isEmpty ? "done" : state.syncOutcome
        // HEAD, which after an integration is the merge, not syncd's last commit.
        let head = try? await client.repository.git.run(["rev-parse", "--short=12", "HEAD"], readOnly: true, acceptedExitCodes: [0, 128])
        let commit = head.map { String(decoding: $0.standardOutput, as: UTF8.self).trimmed }.flatMap { $0.isEmpty ? nil : $0 } ?? "none"
        if outcome.hasPrefix("refused") { throw Failure("not synced: \(outcome.dropFirst("refused: ".count)); see `syncctl status`") }
        if outcome.hasPrefix("superseded") { throw Failure("not confirmed: \(outcome.dropFirst("superseded: ".count))", code: ExitStatus.notConfirmed) }
        if outcome.hasPrefix("committed; not pushed: ") {
            throw Failure("committed (last commit \(commit)) but NOT pushed: \(outcome.dropFirst("committed; not pushed: ".count)); see `syncctl status`")
        }
        let remote = state.remote
        say(remote.isEmpty
            ? "synced: HEAD \(commit) (no remote: committed locally)"
            : "synced: HEAD \(commit), on \(remote)")
    }
}
