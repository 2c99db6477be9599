import Glibc
import Logging
import SyncCore
import SyncGit
import SyncSystem
import Synchronization

public struct WatcherOptions: Sendable {
    /// Distinct pending changes before the set collapses to "rescan needed".
    public var pendingCapacity = 200_000
    /// Raw events queued between the reader thread and the processor before events count as lost.
    public var inboxCapacity = 1_000_000
    /// How often directories left unwatched by the watch limit are rescanned, and directories that
    /// could not be read (permissions) are tried again.
    public var degradedRescanInterval: Duration = .seconds(30)

    /// The errno to fail `inotify_add_watch` with for a directory, or nil to call the kernel.
    package typealias AddWatchFault = @Sendable (RepoPath) -> Errno?
    /// A seam for tests: tests run as root, for whom a directory without read permission is
    /// still readable (a non-root syncd gets EACCES there).
    package var addWatchFault: AddWatchFault?

    public init() {}
}

/// Watches a git working tree recursively and publishes what changed.
///
/// `run()` owns everything: the inotify descriptor, the reader thread and the processing loop.
/// Consumers read `changes`. When the watcher asks for a rescan, the consumer calls `reconcile()`,
/// which lists every path git sees as changed: events are hints, git is the truth.
public final class Watcher: Sendable {
    public let repository: Repository
    public let changes: ChangeQueue
    private let options: WatcherOptions
    private let oracle: any IgnoreOracle
    private let log: Logger
    private let readerHandle = ReaderHandle()
    private let statisticsStore = Mutex(WatcherStatistics())
    /// Fences asked for and passed (see `fence(within:)`).
    private let fences = Mutex<(asked: UInt64, passed: UInt64)>((0, 0))

    /// Counts as of the last processed batch.
    public var statistics: WatcherStatistics { statisticsStore.withLock { $0 } }

    public init(
        repository: Repository,
        options: WatcherOptions = WatcherOptions(),
        oracle: (any IgnoreOracle)? = nil,
        log: Logger = .discarding
    ) {
        self.repository = repository
        self.options = options
        self.oracle = oracle ?? GitIgnoreOracle(git: repository.git)
        self.changes = ChangeQueue(capacity: options.pendingCapacity)
        self.log = log
    }

    /// Watches until the task is cancelled. Throws when watching cannot go on: the root or its
    /// `.git` is gone, or the kernel refused the inotify descriptor.
    public func run() async throws {
        defer { changes.finish() }
        let inotify: InotifyDescriptor
        do {
            inotify = try InotifyDescriptor()
        } catch {
            throw SyncError(
                .syscall,
                "cannot create an inotify instance for \(repository.workTreeDisplay)"
                    + (error.errno == Errno(EMFILE)
                        ? ": the per-user instance limit is reached (raise fs.inotify.max_user_instances)" : ""),
                cause: error
            )
        }
        let inbox = EventInbox(capacity: options.inboxCapacity)
        let reader = try InotifyReader(inotify: inotify, inbox: inbox)
        let processor = WatchProcessor(
            repository: repository,
            inotify: inotify,
            oracle: oracle,
            queue: changes,
            inbox: inbox,
            options: options,
            log: log,
            publish: { [self] statistics in statisticsStore.withLock { $0 = statistics } }
        )
        try reader.start()
        readerHandle.set(reader)
        defer {
            readerHandle.set(nil)
            reader.stop()
            inbox.close()
        }
        let excludeFiles = await ignoreFilesOutsideTree()
        try await processor.start(excludeFiles: excludeFiles)
        let ready = processor.statistics
        processor.publishStatistics()
        changes.post(.ready(watched: ready.watched, ignored: ready.ignored, unwatched: ready.unwatched))
        for await _ in inbox.doorbell {
            let batch = inbox.take()
            if batch.isEmpty { continue }
            try await processor.process(batch)
            processor.publishStatistics()
            if batch.fence > 0 { fences.withLock { $0.passed = max($0.passed, batch.fence) } }
        }
    }

    /// A barrier: returns once every event the kernel had queued when it was called has been
    /// processed into `changes` (the reader reads its queue at once, even if it was asleep).
    /// inotify queues an event inside the write that causes it, so after a writer has released
    /// the sync lock, a fence followed by a drain of `changes` holds all of its writes. False
    /// when not watching or after `limit` (the caller then goes on with what it has).
    public func fence(within limit: Duration) async -> Bool {
        guard let reader = readerHandle.reader else { return false }
        let wanted = fences.withLock { state -> UInt64 in
            state.asked += 1
            return state.asked
        }
        reader.requestFence(wanted)
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: limit)
        while fences.withLock({ $0.passed }) < wanted {
            guard clock.now < end, (try? await Task.sleep(for: .microseconds(200))) != nil else { return false }
        }
        return true
    }

    /// Every path git sees as changed (modified, deleted, untracked, unmerged), as `status` changes
    /// flagged as coming from a rescan. The consumer calls it after a rescan request and at startup.
    public func reconcile() async throws -> [Change] {
        try await GitStatus.dirtyPaths(repository.git).map { Change(path: $0.path, kind: .status, fromRescan: true) }
    }

    /// Holds the reader thread back or lets it go on (tests and benchmarks force IN_Q_OVERFLOW with it).
    package func setReaderHeldBack(_ held: Bool) {
        readerHandle.reader?.setHeldBack(held)
    }

    private func ignoreFilesOutsideTree() async -> [[UInt8]] {
        var files = [repository.excludeFile]
        if let global = await repository.globalExcludesFile(environment: ProcessEnvironment.current) {
            files.append(global)
        }
        return files
    }
}


public struct WatcherStatistics: Sendable, Hashable {
    /// Directories with an inotify watch.
    public var watched = 0
    /// Top-most ignored directories (not watched, not listed).
    public var ignored = 0
    /// Directories without a watch: those the watch limit left unwatched (covered by periodic
    /// rescans) and the unreadable ones below.
    public var unwatched = 0
    /// Directories that could not be watched or listed for another reason than the limit (no
    /// read permission): tried again when their permissions change and every rescan interval.
    public var unreadable = 0
    /// The first few of them (at most `WatcherStatistics.pathsShown`), in order.
    public var unreadablePaths: [RepoPath] = []
    /// The initial crawl has finished.
    public var ready = false
    /// inotify records read from the kernel so far.
    public var eventsRead = 0
    /// Rescans requested so far (lost events, overflows).
    public var rescans = 0

    /// How many paths a count is shown with.
    public static let pathsShown = 20

    public init() {}
}
