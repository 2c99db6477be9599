import ArgumentParser
import SyncCore
import SyncGit
import SyncSystem
import SyncWatcher

@main
struct Syncd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "syncd",
        abstract: "Keeps a git workspace committed and synced while other programs write into it.",
        subcommands: [Watch.self]
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
        let log = StandardErrorLog(minimum: .info)
        do {
            let repository = try await Repository.discover(at: path)
            var options = WatcherOptions()
            options.degradedRescanInterval = .seconds(rescanInterval)
            let watcher = Watcher(repository: repository, options: options, log: log.sink)
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
            log.sink(.error, error.detailedDescription)
            throw ExitCode(1)
        }
    }
}
