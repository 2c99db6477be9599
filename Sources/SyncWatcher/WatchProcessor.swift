import Glibc
import Logging
import SyncCore
import SyncGit
import SyncSystem

/// Turns raw inotify events into changes and keeps the watches in step with the tree.
///
/// Owned by the watcher's single processing task: events are handled strictly in order, so the
/// watch table always matches the order in which the kernel reported things.
final class WatchProcessor {
    private let repository: Repository
    private let inotify: InotifyDescriptor
    private let oracle: any IgnoreOracle
    private let queue: ChangeQueue
    private let inbox: EventInbox
    private let options: WatcherOptions
    private let log: Logger
    private let publish: @Sendable (WatcherStatistics) -> Void

    private var table = WatchTable()
    private var rootWD: Int32 = -1
    /// Watches on directories outside the tree whose files decide what is ignored:
    /// the repository's info/ (exclude) and the global excludes file's directory.
    private var controlWatches: [Int32: (path: [UInt8], name: [UInt8])] = [:]
    /// Top-most ignored directories (never watched, never listed).
    private(set) var ignoredDirectories: Set<RepoPath> = []
    /// Directories left unwatched by the watch limit, covered by periodic rescans.
    private(set) var unwatchedDirectories: Set<RepoPath> = []
    /// Directories that could not be watched or listed for another reason (no read permission,
    /// mostly): tried again when their permissions change (IN_ATTRIB on them or their parent) and
    /// at every tick, and counted as unwatched until then.
    private(set) var unreadableDirectories: Set<RepoPath> = []
    private var ticker: Task<Void, Never>?
    private(set) var eventsRead = 0
    private(set) var rescans = 0
    /// The initial crawl has finished.
    private var ready = false

    var watchedCount: Int { table.count }

    /// The counts as of now.
    var statistics: WatcherStatistics {
        var statistics = WatcherStatistics()
        statistics.watched = table.count
        statistics.ignored = ignoredDirectories.count
        statistics.unwatched = unwatchedDirectories.count + unreadableDirectories.count
        statistics.unreadable = unreadableDirectories.count
        statistics.unreadablePaths = Array(unreadableDirectories.sorted().prefix(WatcherStatistics.pathsShown))
        statistics.ready = ready
        statistics.eventsRead = eventsRead
        statistics.rescans = rescans
        return statistics
    }

    /// Hands the counts to the watcher's readers. Called after each batch, and before every
    /// notice, so a consumer woken by a notice reads counts that include what it announces.
    func publishStatistics() {
        publish(statistics)
    }

    private func post(_ notice: WatcherNotice) {
        publishStatistics()
        queue.post(notice)
    }

    init(
        repository: Repository,
        inotify: InotifyDescriptor,
        oracle: any IgnoreOracle,
        queue: ChangeQueue,
        inbox: EventInbox,
        options: WatcherOptions,
        log: Logger,
        publish: @escaping @Sendable (WatcherStatistics) -> Void = { _ in }
    ) {
        self.repository = repository
        self.inotify = inotify
        self.oracle = oracle
        self.queue = queue
        self.inbox = inbox
        self.options = options
        self.log = log
        self.publish = publish
    }

    deinit {
        ticker?.cancel()
    }

    // MARK: - Start

    /// Watches the whole tree (no changes reported: the consumer's startup reconcile covers what
    /// happened while syncd was not running) and the ignore files that live outside it.
    func start(excludeFiles: [[UInt8]]) async throws {
        try await resync(.root, reportNew: false)
        guard let wd = table.wd(of: .root) else {
            throw SyncError(.rootGone, "cannot watch the workspace root \(repository.workTreeDisplay): it vanished or is not readable")
        }
        rootWD = wd
        for file in excludeFiles {
            guard let slash = file.lastIndex(of: UInt8(ascii: "/")) else { continue }
            let directory = Array(file[..<slash])
            let name = Array(file[(slash + 1)...])
            // A missing directory (no ~/.config/git) is fine: there is nothing to watch yet.
            if let wd = try? inotify.addWatch(directory) {
                controlWatches[wd] = (directory, name)
            }
        }
        ready = true
    }

    // MARK: - Events

    func process(_ batch: EventInbox.Batch) async throws {
        if let failure = batch.readerFailure {
            throw SyncError(.syscall, "the inotify reader stopped in \(repository.workTreeDisplay)", cause: failure)
        }
        eventsRead += batch.events.count
        var rescan: RescanReason? = batch.lostEvents ? .readerQueueFull : nil
        var changes: [Change] = []
        var newDirectories: [RepoPath] = []
        var ignoreRulesChanged: Set<RepoPath> = []
        var allIgnoreRulesChanged = false
        /// Unreadable directories whose permissions (or owner, or ACL) changed: worth a new try.
        var readableAgain: Set<RepoPath> = []

        for event in batch.events {
            if event.isOverflow {
                rescan = .kernelQueueOverflow
                continue
            }
            if let control = controlWatches[event.wd] {
                if event.isIgnored {
                    controlWatches[event.wd] = nil
                } else if event.name == control.name {
                    allIgnoreRulesChanged = true
                }
                continue
            }
            guard let directory = table.path(of: event.wd) else {
                if table.isRetired(event.wd) {
                    if event.isIgnored { table.forget(event.wd) }
                } else if !event.isIgnored {
                    rescan = rescan ?? .unknownWatch
                }
                continue
            }
            if event.isIgnored {
                if event.wd == rootWD { throw rootGone() }
                table.forget(event.wd)
                continue
            }
            if event.name.isEmpty {
                // DELETE_SELF / MOVE_SELF of a watched directory: the parent's event names it;
                // for the root there is no parent inside the tree.
                if event.wd == rootWD, event.has(Int32(IN_DELETE_SELF)) || event.has(Int32(IN_MOVE_SELF)) {
                    throw rootGone()
                }
                // Watched but not listed (it became unreadable in between): its own ATTRIB.
                if event.has(Int32(IN_ATTRIB)), unreadableDirectories.contains(directory) { readableAgain.insert(directory) }
                continue
            }
            if event.name == Crawler.dotGit {
                if directory.isRoot, event.has(Int32(IN_DELETE)) || event.has(Int32(IN_MOVED_FROM)) {
                    throw SyncError(
                        .rootGone,
                        "the git directory of \(repository.workTreeDisplay) was deleted or moved away: "
                            + "the workspace is no longer a repository; restore .git and start syncd again"
                    )
                }
                continue
            }
            let path = directory.appending(event.name)
            if event.name == Self.dotGitignore { ignoreRulesChanged.insert(directory) }
            if event.isDirectory {
                if event.has(Int32(IN_CREATE)) || event.has(Int32(IN_MOVED_TO)) {
                    newDirectories.append(path)
                    let kind: ChangeKind = event.has(Int32(IN_CREATE)) ? .created : .movedTo
                    changes.append(Change(path: path, kind: kind, isDirectory: true))
                } else if event.has(Int32(IN_DELETE)) || event.has(Int32(IN_MOVED_FROM)) {
                    forgetSubtree(path)
                    let kind: ChangeKind = event.has(Int32(IN_DELETE)) ? .deleted : .movedFrom
                    changes.append(Change(path: path, kind: kind, isDirectory: true))
                } else if event.has(Int32(IN_ATTRIB)), unreadableDirectories.contains(path) {
                    readableAgain.insert(path)  // chmod, chown or an ACL on a directory syncd could not read
                }
                continue
            }
            guard let kind = Self.kind(of: event) else { continue }
            changes.append(Change(path: path, kind: kind))
        }

        queue.append(Self.collapsingRepeats(changes))
        if !newDirectories.isEmpty {
            try await watchNewDirectories(newDirectories)
        }
        if !readableAgain.isEmpty {
            try await retryUnreadable(readableAgain)
        }
        if allIgnoreRulesChanged {
            try await resync(.root, reportNew: true)
        } else {
            for directory in Self.outermost(ignoreRulesChanged) {
                try await resync(directory, reportNew: true)
            }
        }
        if let rescan {
            log.warning("events were lost (\(rescan.rawValue)) in \(repository.workTreeDisplay): re-watching the tree and rescanning")
            rescans += 1
            try await resync(.root, reportNew: false)
            queue.requestRescan(rescan)
        }
        if batch.tick {
            try await retryUnreadable(unreadableDirectories)
            try await rescanUnwatched()
            updateTicker()
        }
    }

    private func rootGone() -> SyncError {
        SyncError(
            .rootGone,
            "the workspace root \(repository.workTreeDisplay) was deleted or moved away while syncd watched it: "
                + "restore it (or start syncd on its new location)"
        )
    }

    static let dotGitignore: [UInt8] = Array(".gitignore".utf8)

    static func kind(of event: InotifyEvent) -> ChangeKind? {
        if event.has(Int32(IN_CREATE)) { return .created }
        if event.has(Int32(IN_DELETE)) { return .deleted }
        if event.has(Int32(IN_MOVED_FROM)) { return .movedFrom }
        if event.has(Int32(IN_MOVED_TO)) { return .movedTo }
        if event.has(Int32(IN_MODIFY)) || event.has(Int32(IN_CLOSE_WRITE)) { return .modified }
        if event.has(Int32(IN_ATTRIB)) { return .attributes }
        return nil
    }

    /// Drops a change equal to the one just before it (a write is MODIFY…MODIFY, CLOSE_WRITE).
    static func collapsingRepeats(_ changes: [Change]) -> [Change] {
        var out: [Change] = []
        out.reserveCapacity(changes.count)
        for change in changes where out.last != change {
            out.append(change)
        }
        return out
    }

    /// The paths of `paths` that do not lie below another one of them.
    static func outermost(_ paths: Set<RepoPath>) -> [RepoPath] {
        let sorted = paths.sorted()
        var out: [RepoPath] = []
        for path in sorted where !(out.last.map { path.isWithin($0) } ?? false) {
            out.append(path)
        }
        return out
    }

    /// A directory left the tree (deleted or moved away): drop every watch at or below it, so
    /// writes in a moved-out subtree are not taken for writes in the workspace.
    private func forgetSubtree(_ path: RepoPath) {
        for (_, wd) in table.watched(within: path) {
            inotify.removeWatch(wd)
            table.retire(wd)
        }
        ignoredDirectories = ignoredDirectories.filter { !$0.isWithin(path) }
        unwatchedDirectories = unwatchedDirectories.filter { !$0.isWithin(path) }
        unreadableDirectories = unreadableDirectories.filter { !$0.isWithin(path) }
    }

    /// New or moved-in directories: skip the ignored ones, watch the rest and report all they hold.
    private func watchNewDirectories(_ directories: [RepoPath]) async throws {
        let ignored = try await oracle.ignored(directories)
        ignoredDirectories.formUnion(ignored)
        let toWatch = directories.filter { !ignored.contains($0) }
        try await crawl(toWatch, report: { _ in true })
    }

    // MARK: - Crawling

    /// Re-decides, for every directory at or below `subtree`, whether it is watched: after an ignore
    /// rule changed (both ways), after lost events, at startup. With `reportNew`, the contents of
    /// directories that were not watched before (they just stopped being ignored) are reported.
    func resync(_ subtree: RepoPath, reportNew: Bool) async throws {
        if !subtree.isRoot, try await oracle.ignored([subtree]).contains(subtree) {
            forgetSubtree(subtree)
            ignoredDirectories.insert(subtree)
            return
        }
        let before = Set(table.watched(within: subtree).map(\.path))
        ignoredDirectories = ignoredDirectories.filter { !$0.isWithin(subtree) }
        unwatchedDirectories = unwatchedDirectories.filter { !$0.isWithin(subtree) }
        let unreadableBefore = unreadableDirectories.filter { $0.isWithin(subtree) }
        unreadableDirectories.subtract(unreadableBefore)
        let crawled = try await crawl([subtree], known: unreadableBefore, report: { reportNew && !before.contains($0) })
        for path in before.subtracting(crawled.reached) {
            if let wd = table.wd(of: path) {
                inotify.removeWatch(wd)
                table.retire(wd)
            }
        }
    }

    /// Breadth-first crawl from `roots` (already known not to be ignored). Returns every directory
    /// reached (watched or not) and those that could not be watched or listed (now in
    /// `unreadableDirectories`; the warning is not repeated for those in `known`). One
    /// `git check-ignore` per level decides which subdirectories to enter.
    @discardableResult
    private func crawl(
        _ roots: [RepoPath], known: Set<RepoPath> = [], report: @escaping @Sendable (RepoPath) -> Bool
    ) async throws -> (reached: Set<RepoPath>, problems: Set<RepoPath>) {
        var level = roots
        var reached: Set<RepoPath> = []
        var problems: Set<RepoPath> = []
        var limitReached = !unwatchedDirectories.isEmpty
        var newlyUnwatched = 0
        let repository = repository
        let inotify = inotify
        let fault = options.addWatchFault
        while !level.isEmpty {
            let directories = level
            let carried = limitReached
            let result = try await Blocking.run {
                Crawler.crawlLevel(
                    directories, repository: repository, inotify: inotify, limitReached: carried, fault: fault, report: report)
            }
            limitReached = result.limitReached
            reached.formUnion(directories)
            for (path, wd) in result.added {
                if let displaced = table.record(wd, at: path) {
                    inotify.removeWatch(displaced)
                    table.retire(displaced)
                }
            }
            unwatchedDirectories.formUnion(result.unwatched)
            newlyUnwatched += result.unwatched.count
            for (path, error) in result.problems {
                problems.insert(path)
                // Once per directory, not at every new try.
                guard unreadableDirectories.insert(path).inserted, !known.contains(path) else { continue }
                log.warning("""
                    cannot watch \(path)/ in \(repository.workTreeDisplay): \(error); what it holds is not committed until syncd \
                    can read it (fix its permissions: syncd tries again when they change, and every \
                    \(options.degradedRescanInterval.components.seconds)s)
                    """)
            }
            if !result.found.isEmpty {
                // The counts first: a consumer woken by these changes reads them.
                publishStatistics()
                queue.append(result.found)
            }
            let next = try await Crawler.entered(result.subdirectories, oracle: oracle)
            ignoredDirectories.formUnion(next.ignored)
            level = next.entered
        }
        if newlyUnwatched > 0 {
            let message = WatchLimitMessage.text(
                workspace: repository.workTreeDisplay,
                limits: InotifyLimits.read(),
                watched: table.count,
                needed: table.count + unwatchedDirectories.count,
                rescanInterval: options.degradedRescanInterval
            )
            log.error("\(message)")
            post(.degraded(message: message))
        }
        updateTicker()
        return (reached, problems)
    }

    // MARK: - Degraded mode

    /// Ticks while some directory is not watched (the limit, or no permission); stops once every
    /// directory is.
    private func updateTicker() {
        if unwatchedDirectories.isEmpty && unreadableDirectories.isEmpty {
            ticker?.cancel()
            ticker = nil
            return
        }
        guard ticker == nil else { return }
        let interval = options.degradedRescanInterval
        let inbox = inbox
        ticker = Task {
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                inbox.requestTick()
            }
        }
    }

    /// Tries again to watch and list directories that could not be read. Those that can be read
    /// now are watched and everything they hold is reported (it was never seen).
    private func retryUnreadable(_ candidates: Set<RepoPath>) async throws {
        let retry = candidates.intersection(unreadableDirectories)
        guard !retry.isEmpty else { return }
        let ignored = try await oracle.ignored(Array(retry))
        ignoredDirectories.formUnion(ignored)
        unreadableDirectories.subtract(ignored)
        let roots = Self.outermost(retry.subtracting(ignored))
        guard !roots.isEmpty else { return }
        // Out of the set while crawling (the counts a consumer reads then are right); back in,
        // without a second warning, when they still cannot be read.
        unreadableDirectories.subtract(retry)
        let crawled = try await crawl(roots, known: retry, report: { _ in true })
        for path in roots where !crawled.problems.contains(path) && table.wd(of: path) != nil {
            log.info("\(path)/ in \(repository.workTreeDisplay) can be read again: it is watched, and what it holds is committed")
        }
        publishStatistics()
    }

    /// Covers unwatched directories: tries to watch them again (the limit may have been raised),
    /// and reports what `git status` says changed below the ones still unwatched.
    private func rescanUnwatched() async throws {
        guard !unwatchedDirectories.isEmpty else { return }
        let roots = Self.outermost(unwatchedDirectories)
        unwatchedDirectories = []
        try await crawl(roots, report: { _ in false })
        if unwatchedDirectories.isEmpty {
            log.info("every directory the watch limit left unwatched in \(repository.workTreeDisplay) is watched again (\(table.count) watches)")
            post(.recovered(watched: table.count))
        }
        let status = try await GitStatus.dirtyPaths(repository.git, limitedTo: roots)
        queue.append(status.map { Change(path: $0.path, kind: .status, fromRescan: true) })
    }
}
