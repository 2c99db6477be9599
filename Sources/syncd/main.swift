import ArgumentParser
import Logging
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem
import SyncWatcher

@main
struct Syncd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "syncd",
        abstract: "Keeps a git workspace committed and synced while other programs write into it.",
        version: "syncd \(SyncdVersion.current)",
        subcommands: [Run.self, Watch.self, Demo.self]
    )
}

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print what syncd sees change in a workspace, as JSON lines (nothing is committed)."
    )

    @Argument(help: "The workspace: any directory inside a git working tree.")
    var path: String = "."

    @Option(help: "Seconds between rescans of directories the inotify watch limit left unwatched.")
    var rescanInterval: Int = 30

    func validate() throws {
        guard rescanInterval >= 1 else {
            throw ValidationError("--rescan-interval must be at least 1 second, got \(rescanInterval)")
        }
    }

    func run() async throws {
        SignalStream.ignoreSIGPIPE()
        let log = Logger(label: "syncd") { _ in StandardErrorLogHandler() }
        do {
            let repository = try await Repository.discover(at: path)
            var options = WatcherOptions()
            options.degradedRescanInterval = .seconds(rescanInterval)
            let watcher = Watcher(repository: repository, options: options, log: log)
            try await runUntilSignal {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await watcher.run() }
                    group.addTask {
                        try await WatchStream.pump(watcher) { lines in try StandardOutput.write(lines) }
                    }
                    try await group.next()
                    group.cancelAll()
                    try await group.waitForAll()
                }
            }
        } catch let error as SyncError {
            log.error("\(error.detailedDescription)")
            throw ExitCode(1)
        }
    }
}

/// Exit codes of `syncd run` (README, "Exit codes").
enum ExitStatus {
    static let failure: Int32 = 1
    static let usage: Int32 = 64
    static let alreadyRunning: Int32 = 75
    /// An invalid setting, or a workspace owned by another user: restarting cannot fix either.
    static let invalidSetting: Int32 = 78
}

struct Run: AsyncParsableCommand {
    /// The settings flags are read from the settings table (`Settings.keys`), so a key and its
    /// flag cannot drift apart; the help lists them from the same table.
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            abstract: "Keep a workspace committed: watch it and commit every change in few, atomic batches.",
            usage: "syncd run [PATH] [--SETTING VALUE ...]",
            discussion: """
                PATH is the workspace: any directory inside a git working tree (default: the current directory). \
                Settings come from git config keys syncd.* in the workspace (`git config syncd.quietPeriod 5s`); \
                each flag overrides its key for this run (`--quiet-period 5s` or `--quiet-period=5s`):
                """ + "\n" + Settings.keys.map { key in
                    "  \(key.flag) VALUE\n      \(key.help) (\(key.name), default \(Settings.defaultText(key))): \(key.allowed)"
                }.joined(separator: "\n")
        )
    }

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The workspace, then settings flags (see below).", valueName: "PATH and --SETTING VALUE"))
    var arguments: [String] = []

    /// The workspace and the setting overrides, from `arguments` and the settings table.
    static func parse(_ arguments: [String]) throws -> (path: String, overrides: [(name: String, value: String)]) {
        var path: String?
        var overrides: [(name: String, value: String)] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--"), argument.count > 2 else {
                guard path == nil else { throw ValidationError("unexpected argument \(argument): give one workspace path") }
                path = argument
                continue
            }
            let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
            guard let key = Settings.keys.first(where: { $0.flag == parts[0] }) else {
                throw ValidationError("unknown option \(parts[0]); `syncd run --help` lists the settings flags")
            }
            var value = parts.count == 2 ? parts[1] : nil
            if value == nil {
                guard index < arguments.count else { throw ValidationError("\(key.flag) needs a value: \(key.allowed)") }
                value = arguments[index]
                index += 1
            }
            overrides.append((key.name, value ?? ""))
        }
        return (path ?? ".", overrides)
    }

    func validate() throws {
        // The arguments are captured whole, help included.
        if arguments.contains(where: { $0 == "--help" || $0 == "-h" }) { throw CleanExit.helpRequest(self) }
        _ = try Self.parse(arguments)
    }


    func run() async throws {
        // Parsed once; validate() has already refused what does not parse.
        let (path, overrides) = try Self.parse(arguments)
        SignalStream.ignoreSIGPIPE()
        SignalStream.makeAbortFatal()
        // The workspace is metadata on every line, but not printed: one syncd, one workspace,
        // named by its command line or its unit.
        var log = Logger(label: "syncd") { _ in StandardErrorLogHandler(hidden: ["workspace"]) }
        do {
            // Before git runs and before anything is created: root must not write into a user's repository.
            try OwnershipCheck.refuseRootOnForeignWorkspace(path)
            let repository = try await Repository.discover(at: path)
            log[metadataKey: "workspace"] = "\(repository.workTreeDisplay)"
            let (settings, warnings) = try await Settings.load(git: repository.git, overrides: overrides)
            log.logLevel = settings.logLevel
            for warning in warnings { log.warning("\(warning)") }
            // Before the lock directory or the metrics file is created: never where syncd would
            // commit its own writes or hide a person's files.
            try await OwnPaths.check(settings, repository: repository)
            let service = try SyncService(repository: repository, settings: settings, overrides: overrides, log: log)
            // The first SIGTERM/SIGINT is a graceful stop (commit what is pending, push, return);
            // a second one cancels.
            try await runUntilStopped({ try await service.run() }, gracefulStop: { await service.requestStop() })
        } catch let error as SyncError {
            log.error("\(error.detailedDescription)")
            switch error.code {
            case .invalidSetting, .wrongOwner: throw ExitCode(ExitStatus.invalidSetting)
            case .alreadyRunning: throw ExitCode(ExitStatus.alreadyRunning)
            default: throw ExitCode(ExitStatus.failure)
            }
        }
    }
}
