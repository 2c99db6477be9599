import ArgumentParser
import Subprocess
import SyncGit
import SyncCore
import SyncEngine
import SyncSystem

/// `syncctl as-writer -- CMD`: the writer's side of the protocol (docs/PROTOCOL.md) around a command.
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
                    warn("\(error); the commit will not name this writer")
                }
            }
            lock.unlock()
        }
        SignalStream.ignoreSIGPIPE()
        do {
            let result = try await Subprocess.run(
                .command(executable), arguments: Arguments(Array(command.dropFirst())),
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
