import ArgumentParser
import FoundationEssentials
import Logging
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem

/// Asks syncd to commit what is pending now (a `commit` request: no push to wait for) and
/// returns HEAD. Without a running syncd only a clean tree passes (nothing to commit).
func commitPending(_ client: ControlClient, timeout: Duration, timeoutText: String) async throws -> String {
    let request = ControlRequest(command: "commit", serial: ControlFile.newSerial(), by: ControlClient.requester)
    switch try await client.syncRequest(request, timeout: timeout) {
    case .confirmed(let state):
        let outcome = state.syncOutcome
        if outcome.hasPrefix("refused") || outcome.hasPrefix("superseded") {
            throw Failure("not committed: \(outcome); see `syncctl status`")
        }
    case .notConfirmed:
        let reason = client.state()?.reason ?? ""
        throw Failure("syncd did not commit within \(timeoutText)" + (reason.isEmpty ? "" : ": \(reason)"), code: ExitStatus.notConfirmed)
    case .notRunning:
        let dirty = try await GitStatus.dirtyPaths(client.repository.git).filter { !$0.isNestedRepository }
        if !dirty.isEmpty {
            throw Failure("no syncd is running for \(client.repository.workTreeDisplay) and \(dirty.count) path(s) are not committed "
                + "(\(dirty.prefix(3).map(\.path.description).joined(separator: ", "))): start syncd (`syncctl enable` or `syncd run`) and try again",
                code: ExitStatus.notRunning)
        }
    }
    guard let head = try? await client.repository.git.run(["rev-parse", "-q", "--verify", "HEAD"], readOnly: true).text, !head.isEmpty else {
        throw Failure("\(client.repository.workTreeDisplay) has no commit yet: nothing to mark")
    }
    return head
}

/// `20261203-125501-123`: names made by syncctl sort by time (milliseconds, so two rewinds in
/// one second get two names).
func compactNow() -> String {
    let text = WallClock.rfc3339()  // 2026-12-03T12:55:01.123Z
    let seconds = String(text.prefix(19)).filter { $0 != "-" && $0 != ":" }.replacing("T", with: "-")
    return seconds + "-" + text.dropFirst(20).prefix(3)
}

struct CheckpointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Commit what is pending now and mark that commit with a named checkpoint (refs/syncd/checkpoints/NAME), kept until deleted.",
        discussion: "Rewind to it with `syncctl rewind NAME`; list with `syncctl checkpoints`.")
    @OptionGroup var options: WorkspaceOptions
    @Option(name: .shortAndLong, help: "What this state is (default: checkpoint).")
    var message = "checkpoint"
    @Option(help: "The checkpoint's name (default: the time, like 20261203-125501-123).")
    var name: String?
    @Option(help: "How long to wait for syncd to commit.")
    var timeout = "60s"

    func validate() throws {
        _ = try parseTimeout(timeout)
        try checkReason(message)
    }

    func run() async throws {
        let client = try await options.client(forWriting: true)
        let git = client.repository.git
        let name = name ?? compactNow()
        if let problem = try await Checkpoints.validate(name, git: git) { throw ValidationError("--name: \(problem)") }
        let head = try await commitPending(client, timeout: try parseTimeout(timeout), timeoutText: timeout)
        do {
            try await Checkpoints.create(name: name, commit: head, message: message, by: ControlClient.requester, git: git)
        } catch let error as SyncError {
            throw Failure(error.description)
        }
        say("checkpoint \(name) at \(head.prefix(12)): \(message)")
    }
}

struct CheckpointsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoints", abstract: "List the checkpoints, oldest first (or delete one).")
    @OptionGroup var options: WorkspaceOptions
    @Option(help: "Delete this checkpoint (the commits stay in history).")
    var delete: String?
    @Flag(help: "JSON lines: name, commit, time, by, message.")
    var json = false

    func run() async throws {
        let client = try await options.client()
        let git = client.repository.git
        if let delete {
            guard try await Checkpoints.delete(name: delete, git: git) else { throw Failure("no checkpoint named \(delete) (see `syncctl checkpoints`)") }
            say("deleted checkpoint \(delete)")
            return
        }
        let entries = try await Checkpoints.list(git: git)
        if entries.isEmpty, !json { say("no checkpoints yet (`syncctl checkpoint -m MESSAGE` makes one)") }
        for entry in entries {
            if json {
                var line = JSONLine()
                line.add("name", entry.name)
                line.add("commit", entry.commit)
                line.add("time", entry.time)
                line.add("by", entry.by)
                line.add("message", entry.message)
                say(line.text)
            } else {
                say("\(entry.name)  \(entry.commit.prefix(12))  \(entry.time)  \(OneLine.make(entry.by, limit: 60))  \(OneLine.make(entry.message, limit: 200))")
            }
        }
    }
}

struct RewindCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rewind",
        abstract: "Bring the working tree (or some paths) back to a checkpoint, a commit or a time, as a new commit on top.",
        discussion: """
            History is never rewritten: syncd commits the rewound files like any change. The state just \
            before is checkpointed first (`before-rewind-TIME`), so `syncctl rewind before-rewind-TIME` \
            undoes it. Only paths that differ are touched, each atomically; untracked and ignored files \
            never are. Examples: `syncctl rewind before-refactor`, `syncctl rewind --to 30m -- notes/`.
            """)
    @OptionGroup var options: WorkspaceOptions
    @Argument(help: "A checkpoint name or a commit.")
    var target: String?
    @Option(name: .customLong("to"), help: "Instead of TARGET: the state of that long ago (30m, 2h) or that time (2026-12-03T10:00).")
    var time: String?
    @Option(help: "Longest wait for writers, syncd's commits and the lock.")
    var wait = "2m"
    @Argument(parsing: .postTerminator, help: "Only these paths (after --), relative to the top of the working tree.")
    var paths: [String] = []

    func validate() throws {
        guard (target == nil) != (time == nil) else { throw ValidationError("give a checkpoint or commit, or --to TIME (one of them)") }
        if let time, JournalQuery.time(time, now: ControlFile.now()) == nil {
            throw ValidationError("--to \(time): expected a duration like 30m or a time like 2026-12-03T10:00")
        }
        _ = try parseTimeout(wait)
    }

    func run() async throws {
        let client = try await options.client(forWriting: true)
        guard client.runningPid() != nil else {
            throw Failure("no syncd is running for \(client.repository.workTreeDisplay): a rewind is committed by syncd; start it first (`syncctl enable` or `syncd run`)", code: ExitStatus.notRunning)
        }
        let git = client.repository.git
        let limit = try parseTimeout(wait)
        let label: String
        let commit: String
        if let target {
            guard let resolved = try await Checkpoints.resolve(target, git: git) else { throw Failure("\(target) is neither a checkpoint (`syncctl checkpoints`) nor a commit") }
            (label, commit) = (target, resolved)
        } else {
            let when = JournalQuery.time(time ?? "", now: ControlFile.now()) ?? 0
            guard let resolved = try await Checkpoints.commit(before: when, git: git) else { throw Failure("no commit of this branch is that old (\(time ?? ""))") }
            (label, commit) = ("\(time ?? "") ago (\(resolved.prefix(12)))", resolved)
        }
        let selected = paths.map { RepoPath(bytes: Array($0.utf8)) }
        // Writers that keep changing the paths are waited out until --wait, then reported.
        let deadline = ContinuousClock.now.advanced(by: limit)
        while ContinuousClock.now < deadline {
            // Everything written so far goes into a commit first: the rewind never overwrites
            // anything that is not in history.
            let head = try await commitPending(client, timeout: limit, timeoutText: wait)
            let lock = try await acquireWriterLock(client, within: limit, limitText: wait, purpose: "rewinding")
            let now = try? await git.run(["rev-parse", "HEAD"], readOnly: true).text
            guard now == head else {
                lock.unlock()
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            let plan = try await Rewind.plan(to: commit, paths: selected, repository: client.repository)
            switch plan {
            case .dirty:
                // A writer changed something since the commit: commit again, then retry.
                lock.unlock()
                try await Task.sleep(for: .milliseconds(100))
                continue
            case .blocked(let paths):
                lock.unlock()
                throw Failure("\(label) has \(paths.prefix(3).map(\.description).joined(separator: ", ")) where an untracked or ignored file, a directory "
                    + "or a nested repository stands here; syncd never overwrites those: move them away, then rewind again")
            case .changes(let changes):
                if changes.isEmpty {
                    lock.unlock()
                    say("nothing to do: \(selected.isEmpty ? "the working tree" : "those paths") already match \(label)")
                    return
                }
                let before = "before-rewind-\(compactNow())"
                do {
                    try await Checkpoints.create(name: before, commit: head, message: "before rewinding to \(label)", by: ControlClient.requester, git: git)
                    try await Rewind.apply(changes, repository: client.repository, log: Logger(label: "syncctl") { _ in StandardErrorLogHandler(program: "syncctl") })
                    try WriterLog.append(name: "syncctl rewind to \(label)", to: client.lockDirectory)
                } catch {
                    lock.unlock()
                    throw Failure("\((error as? SyncError)?.description ?? "\(error)"); what was written so far is committed by syncd, and `syncctl rewind \(before)` goes back")
                }
                lock.unlock()
                let result = try await commitPending(client, timeout: limit, timeoutText: wait)
                say("rewound \(changes.count) path(s) to \(label): commit \(result.prefix(12)); undo with `syncctl rewind \(before)`")
                return
            }
        }
        throw Failure("writers kept changing the paths to rewind for \(wait) (--wait); stop them for a moment (`syncctl pause` stops only syncd) and try again", code: ExitStatus.unavailable)
    }
}
