import ArgumentParser
import Glibc
import SyncCore
import SyncEngine
import SyncSystem

// The root command: its subcommands (one file per command or group), the leading `-C DIR`, and
// the one exit path (`Failure` and `ExitCode` thrown to `main`).

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
        SignalStream.ignoreSIGPIPE()
        let (directories, arguments) = LeadingDirectories.split(Array(CommandLine.arguments.dropFirst()))
        for directory in directories {
            guard chdir(directory) == 0 else {
                let reason = String(cString: strerror(errno))
                // For monitoring, `status` on a workspace that is not there is "not running" (3).
                warn("-C \(directory): cannot change to that directory (\(reason))")
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
            warn("\(failure.message)")
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
