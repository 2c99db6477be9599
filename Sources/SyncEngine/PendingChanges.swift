import SyncCore
import SyncWatcher

/// What changed and is not committed yet: the paths the watcher (or the reconcile) reported,
/// the directories among them, and whether the next batch must ask git for everything instead
/// (a full scan: at the start, after lost events, past `capacity`). Pure state; the service
/// feeds it and the committer reads it.
struct PendingChanges {
    private(set) var paths: Set<RepoPath> = []
    private(set) var directoryHints: Set<RepoPath> = []
    var fullScan = false
    /// Paths a waiting full scan found changed (`git status`), so pending is never 0 while they wait.
    var scanned = 0
    /// Most paths kept one by one; past it the next batch asks git for everything instead.
    let capacity: Int
    /// syncd's lock directory when it is inside the tree: never a change.
    let excluded: RepoPath?

    init(capacity: Int, excluded: RepoPath?) {
        self.capacity = capacity
        self.excluded = excluded
    }

    var count: Int { paths.count }
    var isEmpty: Bool { paths.isEmpty }
    /// The count `state.json` shows.
    var shownCount: Int { max(paths.count, scanned) }
    /// The count the batcher weighs: a full scan is at least one path.
    var batchCount: Int { fullScan ? max(paths.count, 1) : paths.count }

    /// The paths a person counts in a log line or an error: a new directory whose files are
    /// pending too is not one path more (5,000 files in a new directory are 5,000 paths, not
    /// 5,001). A directory with nothing pending inside it (moved in or out, deleted, or created
    /// empty) stays: it stands for what it holds. Computed on demand (at a stop, not per event).
    var namedPaths: [RepoPath] {
        guard !directoryHints.isEmpty else { return Array(paths) }
        var parents: Set<RepoPath> = []
        for path in paths {
            var parent = path.parent
            while !parent.isRoot, parents.insert(parent).inserted { parent = parent.parent }
        }
        return paths.filter { !(directoryHints.contains($0) && parents.contains($0)) }
    }

    /// Takes the watcher's changes; returns how many were syncd's business (not its lock directory).
    mutating func take(_ changes: [Change]) -> Int {
        var relevant = 0
        for change in changes {
            if let excluded, change.path.isWithin(excluded) { continue }
            relevant += 1
            paths.insert(change.path)
            if change.isDirectory { directoryHints.insert(change.path) }
        }
        if paths.count > capacity {
            paths = []
            directoryHints = []
            fullScan = true
        }
        return relevant
    }

    /// Paths found changed without an event (the periodic reconcile).
    mutating func add(_ found: [RepoPath]) {
        paths.formUnion(found)
    }

    /// `path` or one of its directories is pending already.
    func contains(_ path: RepoPath) -> Bool {
        if paths.contains(path) { return true }
        var bytes = path.bytes
        while let slash = bytes.lastIndex(of: UInt8(ascii: "/")) {
            bytes = Array(bytes[..<slash])
            let parent = RepoPath(bytes: bytes)
            if paths.contains(parent) || directoryHints.contains(parent) { return true }
        }
        return false
    }

    /// The batch is committed (or nothing had changed): nothing is pending.
    mutating func clear() {
        paths = []
        directoryHints = []
        scanned = 0
        fullScan = false
    }
}
