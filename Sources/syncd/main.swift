import ArgumentParser
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

/// Exit codes of `syncd run` (README, "Exit codes").
enum ExitStatus {
    static let failure: Int32 = 1
    static let usage: Int32 = 64
    static let alreadyRunning: Int32 = 75
    /// An invalid setting, or a workspace owned by another user: restarting cannot fix either.
    static let invalidSetting: Int32 = 78
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Keep a workspace committed: watch it and commit every change in few, atomic batches.",
        discussion: """
            Settings come from git config keys syncd.* in the workspace (`git config syncd.quietPeriod 5s`); \
            each flag below overrides its key for this run. See the README for every setting.
            """
    )

    @Argument(help: "The workspace: any directory inside a git working tree.")
    var path: String = "."

    @Option(help: "Quiet time after the last change before committing (syncd.quietPeriod, default 2s).")
    var quietPeriod: String?
    @Option(help: "Longest wait for the first uncommitted change (syncd.maxLatency, default 20s).")
    var maxLatency: String?
    @Option(help: "Pending paths that trigger a commit at once (syncd.maxBatchPaths, default 20000).")
    var maxBatchPaths: String?
    @Option(help: "Commits per breaker window that open the circuit breaker (syncd.breakerMaxCommits, default 120).")
    var breakerMaxCommits: String?
    @Option(help: "Circuit breaker window and cool-down (syncd.breakerWindow, default 10m).")
    var breakerWindow: String?
    @Option(help: "Age after which an unheld index.lock is removed (syncd.staleLockAge, default 10m).")
    var staleLockAge: String?
    @Option(help: "A git call running longer is logged and shown in status (syncd.slowGitAfter, default 30s).")
    var slowGitAfter: String?
    @Option(help: "At a stop, the longest wait for git to commit what is pending (syncd.stopTimeout, default 60s).")
    var stopTimeout: String?
    @Option(help: "fsync objects, index and refs on every commit (syncd.fsync, default true).")
    var fsync: String?
    @Option(help: "Split index: auto, true or false (syncd.splitIndex, default auto).")
    var splitIndex: String?
    @Option(help: "Rescan interval for directories left unwatched (syncd.rescanInterval, default 30s).")
    var rescanInterval: String?
    @Option(help: "Journal size before rotation (syncd.journalMaxSize, default 8MiB).")
    var journalMaxSize: String?
    @Option(help: "Least severe log level: debug, info, warning, error (syncd.logLevel, default info).")
    var logLevel: String?
    @Option(help: "Directory of the lock files (syncd.lockDir, default .git/syncd).")
    var lockDir: String?
    @Option(help: "Longest writer pause lease syncd takes (syncd.writerLeaseCap, default 5m).")
    var writerLeaseCap: String?
    @Option(help: "Wait for writers holding the sync lock before naming them (syncd.writerLockTimeout, default 60s).")
    var writerLockTimeout: String?
    @Option(help: "Remote to sync with, or none (syncd.remote, default: the upstream remote, else origin).")
    var remote: String?
    @Option(help: "Least time between two sync cycles (syncd.syncInterval, default 5m).")
    var syncInterval: String?
    @Option(help: "How soon after a commit it is pushed (syncd.pushDelay, default 2s).")
    var pushDelay: String?
    @Option(help: "Limit for one fetch or push (syncd.networkTimeout, default 2m).")
    var networkTimeout: String?
    @Option(help: "Bundle backups kept (syncd.backupKeep, default 20).")
    var backupKeep: String?
    @Option(help: "Oldest bundle backup kept (syncd.backupMaxAge, default 30d).")
    var backupMaxAge: String?
    @Option(help: "Off-site copy of every bundle backup: an absolute directory on another disk (syncd.backupDir).")
    var backupDir: String?
    @Option(help: "How often git status looks for changes the watcher missed; 0 = never (syncd.reconcileInterval, default 1h).")
    var reconcileInterval: String?
    @Option(help: "Push syncd's own commits to the branch as one per window, like 1h; 0 = off (syncd.squash, default off).")
    var squash: String?
    @Option(help: "How long the unsquashed originals stay reachable locally (syncd.squashKeep, default 30d).")
    var squashKeep: String?
    @Option(help: "Diverged histories: merge or rebase (syncd.integrate, default merge).")
    var integrate: String?
    @Option(help: "Settle merge conflicts for ours (local) or theirs (remote), or none (syncd.strategyOption, default none).")
    var strategyOption: String?
    @Option(help: "Prometheus text file to keep up to date (syncd.metricsFile).")
    var metricsFile: String?
    @Option(help: "Shell command run with a JSON description when a failure persists (syncd.alertCommand).")
    var alertCommand: String?
    @Option(help: "How long a push or commit failure lasts before the alert (syncd.alertAfter, default 10m).")
    var alertAfter: String?

    var overrides: [(name: String, value: String)] {
        [
            ("syncd.quietPeriod", quietPeriod), ("syncd.maxLatency", maxLatency), ("syncd.maxBatchPaths", maxBatchPaths),
            ("syncd.breakerMaxCommits", breakerMaxCommits), ("syncd.breakerWindow", breakerWindow),
            ("syncd.staleLockAge", staleLockAge), ("syncd.slowGitAfter", slowGitAfter), ("syncd.stopTimeout", stopTimeout), ("syncd.fsync", fsync), ("syncd.splitIndex", splitIndex),
            ("syncd.rescanInterval", rescanInterval), ("syncd.journalMaxSize", journalMaxSize), ("syncd.logLevel", logLevel),
            ("syncd.lockDir", lockDir), ("syncd.writerLeaseCap", writerLeaseCap), ("syncd.writerLockTimeout", writerLockTimeout),
            ("syncd.remote", remote), ("syncd.syncInterval", syncInterval), ("syncd.pushDelay", pushDelay), ("syncd.networkTimeout", networkTimeout),
            ("syncd.backupKeep", backupKeep), ("syncd.backupMaxAge", backupMaxAge), ("syncd.backupDir", backupDir),
            ("syncd.reconcileInterval", reconcileInterval), ("syncd.squash", squash), ("syncd.squashKeep", squashKeep),
            ("syncd.integrate", integrate), ("syncd.strategyOption", strategyOption),
            ("syncd.metricsFile", metricsFile), ("syncd.alertCommand", alertCommand), ("syncd.alertAfter", alertAfter),
        ].compactMap { name, value in value.map { (name, $0) } }
    }

    func run() async throws {
        SignalStream.ignoreSIGPIPE()
        SignalStream.makeAbortFatal()
        var log = StandardErrorLog(minimum: .info)
        do {
            // Before git runs and before anything is created: root must not write into a user's repository.
            try OwnershipCheck.refuseRootOnForeignWorkspace(path)
            let repository = try await Repository.discover(at: path)
            let (settings, warnings) = try await Settings.load(git: repository.git, overrides: overrides)
            log = StandardErrorLog(minimum: LogLevel(rawValue: settings.logLevel.rawValue) ?? .info)
            for warning in warnings { log.sink(.warning, warning) }
            // Before the lock directory or the metrics file is created: never where syncd would
            // commit its own writes or hide a person's files.
            try await OwnPaths.check(settings, repository: repository)
            let service = try SyncService(repository: repository, settings: settings, overrides: overrides, log: log.sink)
            // The first SIGTERM/SIGINT is a graceful stop (commit what is pending, push, return);
            // a second one cancels.
            try await runUntilStopped({ try await service.run() }, gracefulStop: { await service.requestStop() })
        } catch let error as SyncError {
            log.sink(.error, error.detailedDescription)
            switch error.code {
            case .invalidSetting, .wrongOwner: throw ExitCode(ExitStatus.invalidSetting)
            case .alreadyRunning: throw ExitCode(ExitStatus.alreadyRunning)
            default: throw ExitCode(ExitStatus.failure)
            }
        }
    }
}
