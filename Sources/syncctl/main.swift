import ArgumentParser
import FoundationEssentials
import Glibc
import Subprocess
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Exit codes (README, "syncctl").
enum ExitStatus {
    static let failure: Int32 = 1
    /// No syncd runs for the workspace; what was asked is recorded and applies at its next start.
    static let notRunning: Int32 = 3
    /// syncd did not confirm in time.
    static let notConfirmed: Int32 = 4
    /// as-writer: an emergency stop is set, or the pause or the lock did not clear in time.
    static let unavailable: Int32 = 75
}

@main
struct Syncctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "syncctl",
        abstract: "Control syncd: status, pause and resume, sync now, emergency stop, and run writers under the protocol.",
        discussion: """
            Every command works on the workspace that contains the current directory, or -C DIR. As with git, \
            `syncctl -C DIR COMMAND` (before the command) runs as if syncctl was started in DIR; \
            `syncctl COMMAND -C DIR` names the workspace.
            """,
        version: "syncctl \(SyncdVersion.current)",
        subcommands: [
            Status.self, Pause.self, Resume.self, Sync.self, EmergencyStop.self, AsWriter.self, Backups.self, Restore.self,
            LogCommand.self, CheckpointCommand.self, CheckpointsCommand.self, RewindCommand.self, SquashCommand.self, Conflicts.self, Doctor.self, VerifyCommand.self, Enable.self, Disable.self,
        ]
    )

    /// `-C DIR` before the command works as git's does: as if syncctl was started in DIR.
    static func main() async {
        let (directories, arguments) = LeadingDirectories.split(Array(CommandLine.arguments.dropFirst()))
        for directory in directories {
            guard chdir(directory) == 0 else {
                let reason = String(cString: strerror(errno))
                // For monitoring, `status` on a workspace that is not there is "not running" (3).
                try? Syscall.writeAll(2, Array("syncctl: -C \(directory): cannot change to that directory (\(reason))\n".utf8))
                Self.exit(withError: ExitCode(arguments.first == "status" ? StatusHealth.Level.notRunning.rawValue : ExitStatus.failure))
            }
        }
        // What AsyncParsableCommand.main(_:) does, spelled out: a bare `main(arguments)` could
        // also resolve to ParsableCommand's synchronous one.
        do {
            var command = try await asyncParseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as Failure {
            try? Syscall.writeAll(2, Array("syncctl: \(failure.message)\n".utf8))
            Self.exit(withError: ExitCode(failure.code))
        } catch {
            Self.exit(withError: error)
        }
    }
}

/// The leading `-C DIR` options (also `-CDIR`, `--workspace DIR`, `--workspace=DIR`) before the
/// command name, and the arguments after them.
enum LeadingDirectories {
    static func split(_ arguments: [String]) -> (directories: [String], rest: [String]) {
        var directories: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "-C" || argument == "--workspace" {
                // A missing value is left to the parser, which names the option.
                guard index + 1 < arguments.count else { break }
                directories.append(arguments[index + 1])
                index += 2
            } else if argument.hasPrefix("--workspace=") {
                directories.append(String(argument.dropFirst("--workspace=".count)))
                index += 1
            } else if argument.hasPrefix("-C"), argument.count > 2 {
                directories.append(String(argument.dropFirst(2)))
                index += 1
            } else {
                break
            }
        }
        return (directories, Array(arguments[index...]))
    }
}

struct WorkspaceOptions: ParsableArguments {
    @Option(name: [.customShort("C"), .long], help: "The workspace (any directory inside its working tree).")
    var workspace: String = "."

    /// `forWriting`: the command records a request, so syncd's directories are created if syncd
    /// has not run here yet.
    func client(forWriting: Bool = false) async throws -> ControlClient {
        do {
            let client = try await ControlClient.open(at: workspace)
            if forWriting { try client.prepareForWriting() }
            return client
        } catch let error as SyncError {
            throw Failure(error.description)
        }
    }
}

/// Why a command failed, for a person: thrown, and said once by `main` ("syncctl: MESSAGE" on
/// stderr) before it exits with `code`. Every command ends through `main`: no exit() elsewhere.
struct Failure: Error {
    let message: String
    let code: Int32
    init(_ message: String, code: Int32 = ExitStatus.failure) {
        self.message = message
        self.code = code
    }
}

/// A reason is shown in status, logs and alerts: one line of bounded length.
func checkReason(_ reason: String) throws {
    guard reason.count <= ControlFile.maxReason else {
        throw ValidationError("--reason is \(reason.count) characters long; at most \(ControlFile.maxReason) are kept: shorten it")
    }
    guard !reason.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) else {
        throw ValidationError("--reason holds newlines or control characters; give it as one line of plain text")
    }
}

func say(_ line: String) {
    try? Syscall.writeAll(1, Array((line + "\n").utf8))
}

struct Pause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop committing (changes are still collected and committed as one batch on resume or expiry).")
    @OptionGroup var options: WorkspaceOptions
    @Option(name: .customLong("for"), help: "How long, like 10m or 1h (default: until `syncctl resume`).")
    var duration: String?
    @Option(help: "Why, shown in status and logs.")
    var reason = "paused with syncctl"
    @Option(help: "How long to wait for syncd to confirm.")
    var timeout = "10s"

    /// Usage errors are found here, while parsing, so they print this command's usage.
    func validate() throws {
        if let duration { _ = try Self.parseFor(duration) }
        _ = try parseTimeout(timeout)
        try checkReason(reason)
    }

    static func parseFor(_ text: String) throws -> Duration {
        guard let value = Settings.parseDuration(text), value > .zero else {
            throw ValidationError("--for \(text): expected a duration like 10m, 1h or 90s")
        }
        return value
    }

    func run() async throws {
        let client = try await options.client(forWriting: true)
        var until: Double?
        if let duration {
            let value = try Self.parseFor(duration)
            until = ControlFile.now() + Double(value.components.seconds) + Double(value.components.attoseconds) / 1e18
        }
        let wait = try parseTimeout(timeout)
        switch try await client.pause(reason: reason, until: until, timeout: wait) {
        case .notRunning:
            throw Failure("no syncd is running for \(client.repository.workTreeDisplay); the pause is recorded and applies when it starts", code: ExitStatus.notRunning)
        case .notConfirmed:
            throw Failure("syncd did not confirm the pause within \(timeout); it is recorded in \(Syscall.display(client.lockDirectory.daemonPause))"
                + (client.stateProblem().map { ", but \($0)" } ?? ""), code: ExitStatus.notConfirmed)
        case .confirmed: break
        }
        say("paused" + (until.map { " until \(WallClock.rfc3339(seconds: $0))" } ?? " until `syncctl resume`") + ": \(reason)")
    }
}

func parseTimeout(_ text: String) throws -> Duration {
    guard let value = Settings.parseDuration(text), value > .zero else {
        throw ValidationError("--timeout \(text): expected a duration like 10s")
    }
    return value
}

struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "End a pause (and, with --clear-emergency, an emergency stop).")
    @OptionGroup var options: WorkspaceOptions
    @Flag(help: "Also clear an emergency stop.")
    var clearEmergency = false
    @Option(help: "How long to wait for syncd to confirm.")
    var timeout = "10s"

    func validate() throws { _ = try parseTimeout(timeout) }

    func run() async throws {
        let client = try await options.client(forWriting: true)
        let wait = try parseTimeout(timeout)
        let emergencySet = Syscall.exists(client.lockDirectory.emergencyStop)
        if emergencySet && !clearEmergency {
            throw Failure("an emergency stop is set for \(client.repository.workTreeDisplay); clear it on purpose with `syncctl resume --clear-emergency`")
        }
        switch try await client.resume(clearEmergency: clearEmergency, timeout: wait) {
        case .notRunning:
            throw Failure("no syncd is running for \(client.repository.workTreeDisplay); nothing is paused now, so it commits normally when it starts", code: ExitStatus.notRunning)
        case .notConfirmed:
            throw Failure("syncd did not confirm within \(timeout)" + (client.stateProblem().map { ": \($0)" } ?? ""), code: ExitStatus.notConfirmed)
        case .confirmed: break
        }
        say(clearEmergency && emergencySet ? "emergency stop cleared; syncd resumed" : "resumed")
    }
}

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

struct EmergencyStop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emergency-stop",
        abstract: "Halt all of syncd's git activity now; persists across restarts until `syncctl resume --clear-emergency`.")
    @OptionGroup var options: WorkspaceOptions
    @Option(help: "Why, shown in status and logs.")
    var reason = "emergency stop with syncctl"
    @Option(help: "How long to wait for syncd to confirm.")
    var timeout = "10s"

    func validate() throws {
        _ = try parseTimeout(timeout)
        try checkReason(reason)
    }

    func run() async throws {
        let client = try await options.client(forWriting: true)
        let wait = try parseTimeout(timeout)
        let started = ContinuousClock.now
        switch try await client.emergencyStop(reason: reason, timeout: wait) {
        case .notRunning:
            throw Failure("no syncd is running for \(client.repository.workTreeDisplay); the emergency stop is recorded and holds when it starts", code: ExitStatus.notRunning)
        case .notConfirmed:
            throw Failure("syncd did not confirm within \(timeout); the stop is recorded", code: ExitStatus.notConfirmed)
        case .confirmed: break
        }
        let elapsed = ContinuousClock.now - started
        say("emergency stop confirmed in \(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000) ms: no git activity until `syncctl resume --clear-emergency`")
    }
}

struct AsWriter: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "as-writer",
        abstract: "Run a command as a well-behaved writer: wait out a pause lease, hold the shared sync lock while it runs, return its exit status.",
        discussion: "Example: syncctl as-writer -C ~/notes -- ./regenerate-status.sh")
    @OptionGroup var options: WorkspaceOptions
    @Option(help: "Longest wait for a pause lease or the lock before giving up (exit 75).")
    var wait = "10m"
    @Option(help: "The writer's name: the commit that holds its changes carries `Syncd-Writer: NAME` (`syncctl log --writer NAME` finds it).")
    var name: String?
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        guard command.count > (command.first == "--" ? 1 : 0) else { throw ValidationError("name the command to run after --") }
        _ = try parseTimeout(wait)
        if let name {
            guard !name.isEmpty, name.count <= WriterLog.maxName, !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw ValidationError("--name must be one line of 1 to \(WriterLog.maxName) characters")
            }
        }
    }

    func run() async throws {
        var command = command
        if command.first == "--" { command.removeFirst() }
        guard let executable = command.first else { throw ValidationError("name the command to run after --") }
        let limit = try parseTimeout(wait)
        let client = try await options.client(forWriting: true)
        let directory = client.lockDirectory
        let lock = try await acquireWriterLock(client, within: limit, limitText: wait, purpose: "running \(executable)")
        defer {
            // Before the lock is released: syncd cannot snapshot until then, so the name lands
            // in the commit that holds this session's changes.
            if let name {
                do {
                    try WriterLog.append(name: name, to: directory)
                } catch {
                    try? Syscall.writeAll(2, Array("syncctl: \(error); the commit will not name this writer\n".utf8))
                }
            }
            lock.unlock()
        }
        SignalStream.ignoreSIGPIPE()
        do {
            let result = try await Subprocess.run(
                .name(executable), arguments: Arguments(Array(command.dropFirst())),
                input: .currentStandardInput, output: .currentStandardOutput, error: .currentStandardError)
            switch result.terminationStatus {
            case .exited(let code): if code != 0 { throw ExitCode(code) }
            case .signaled(let signal): throw ExitCode(128 + signal)
            }
        } catch let error as ExitCode {
            throw error
        } catch {
            throw Failure("cannot run \(executable): \(error)", code: 127)
        }
    }
}

struct Backups: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the bundle backups, newest first.")
    @OptionGroup var options: WorkspaceOptions

    func run() async throws {
        let client = try await options.client()
        let directory = client.stateDirectory + Array("/backups".utf8)
        let backups = BundleStore(directory: directory).list()
        guard !backups.isEmpty else {
            say("no backups yet in \(Syscall.display(directory)) (syncd writes one per sync cycle that has new commits)")
            return
        }
        for backup in backups {
            let header = BundleHeader.read(backup.path)
            let kind = header.isFull ? "full" : "incremental"
            let tips = header.refs.map { "\($0.name) \($0.commit.prefix(12))" }.joined(separator: ", ")
            say("\(backup.name)  \(WallClock.rfc3339(seconds: backup.modified))  \(backup.size) bytes  \(kind)  \(tips)")
        }
    }
}

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a bundle backup into a new branch of the workspace, or into a new directory; never over the working tree.")
    @OptionGroup var options: WorkspaceOptions
    @Argument(help: "A bundle name from `syncctl backups`, or a path.")
    var bundle: String
    @Option(help: "The new branch to create (default: syncd/restore/<bundle name>).")
    var branch: String?
    @Option(help: "Restore into this new directory instead (a fresh clone with the chain of bundles up to this one).")
    var into: String?

    func run() async throws {
        // A bundle given by path restores --into a new directory without any workspace: the
        // off-site copy after the disk with the repository died.
        let standalone = bundle.contains("/") && into != nil
        let client: ControlClient? = standalone ? try? await ControlClient.open(at: options.workspace) : try await options.client()
        let path: [UInt8]
        if bundle.contains("/") {
            path = Array(bundle.utf8)
        } else if let client {
            path = client.stateDirectory + Array("/backups/\(bundle)".utf8)
        } else {
            throw Failure("no workspace at \(options.workspace) to find \(bundle) in; give the bundle's path")
        }
        guard Syscall.exists(path) else { throw Failure("no bundle \(bundle) (see `syncctl backups`)") }
        let header = BundleHeader.read(path)
        guard header.isBundle, let tip = header.refs.first else { throw Failure("\(Syscall.display(path)) is not a git bundle (no refs in its header)") }
        let stem = String(decoding: path.split(separator: UInt8(ascii: "/")).last ?? [], as: UTF8.self)
        let stemName = stem.hasSuffix(".bundle") ? String(stem.dropLast(".bundle".count)) : stem
        if let into {
            guard !Syscall.exists(Array(into.utf8)) else { throw Failure("\(into) exists; restore needs a new directory") }
            // The chain: the full bundle this one builds on and every bundle between, oldest first.
            let store = BundleStore(directory: AtomicFile.parentDirectory(of: path))
            let chain = store.chains().first { $0.contains { $0.name == stem } }.map { chain in
                chain.filter { $0.name <= stem }.map(\.path)
            } ?? [path]
            let target = GitRunner(workTree: Array(into.utf8))
            _ = try await GitRunner(workTree: Array(".".utf8)).run(["init", "-q", GitArgument(into)])
            // Bundles made by syncd ≥ 0.12 hold everything since the full one; older ones left
            // out what the remote had, so the remote is fetched too when there is one.
            var fetched = ""
            if let client {
                let branch = GitDirectoryState.currentBranch(client.repository)
                if let remote = await Syncer.configuredRemote(client.repository, branch: branch),
                    let url = try? await client.repository.git.run(["remote", "get-url", GitArgument(remote)], readOnly: true).standardOutput,
                    !url.isEmpty
                {
                    let location = String(decoding: url, as: UTF8.self).filter { $0 != "\n" }
                    let fetch = try await target.run(["fetch", "-q", GitArgument(location), "+refs/heads/*:refs/remotes/origin/*"], acceptedExitCodes: Set(0...255))
                    fetched = fetch.exitCode == 0 ? " (with the history of \(remote))" : ""
                }
            }
            for part in chain {
                let result = try await target.run(["bundle", "unbundle", GitArgument(rawBytes: part)], acceptedExitCodes: [0, 1, 128])
                if result.exitCode != 0 {
                    throw Failure("cannot apply \(Syscall.display(part)): \(result.standardError.split(separator: "\n").first ?? "")"
                        + " (its base is neither in an older bundle nor on the remote; restore with --branch inside the workspace instead)")
                }
            }
            let local = tip.name.hasPrefix("refs/heads/") ? tip.name : "refs/heads/restored"
            _ = try await target.run(["update-ref", GitArgument(local), GitArgument(tip.commit)])
            _ = try await target.run(["symbolic-ref", "HEAD", GitArgument(local)])
            _ = try await target.run(["reset", "-q", "--hard"])
            say("restored \(tip.name) at \(tip.commit.prefix(12)) into \(into) from \(chain.count) bundle(s)\(fetched)")
            return
        }
        guard let client else { throw Failure("no workspace at \(options.workspace)") }
        let git = client.repository.git
        let newBranch = branch ?? "syncd/restore/\(stemName)"
        let unbundled = try await git.run(["bundle", "unbundle", GitArgument(rawBytes: path)], acceptedExitCodes: [0, 1, 128])
        guard unbundled.exitCode == 0 else {
            throw Failure("cannot apply \(Syscall.display(path)): \(unbundled.standardError.split(separator: "\n").first ?? "")")
        }
        // The empty old value makes update-ref refuse to replace an existing branch.
        let created = try await git.run(["update-ref", GitArgument("refs/heads/\(newBranch)"), GitArgument(tip.commit), ""], acceptedExitCodes: [0, 128])
        guard created.exitCode == 0 else { throw Failure("branch \(newBranch) exists already; pick another with --branch") }
        say("restored \(tip.name) at \(tip.commit.prefix(12)) as branch \(newBranch) (the working tree is untouched)")
    }
}

struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check what syncd needs: git, the repository, the remote, inotify limits, disk, locks, the service. Exits 1 on any FAIL.")
    @OptionGroup var options: WorkspaceOptions

    func run() async throws {
        let client = try await options.client()
        let checks = await SyncEngine.Doctor.run(client)
        for check in checks {
            say("\(check.level.rawValue.padding(4)) \(check.name.padding(10)) \(check.detail)")
        }
        if checks.contains(where: { $0.level == .fail }) { throw ExitCode(1) }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
