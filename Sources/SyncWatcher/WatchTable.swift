import SyncCore

/// Which directory each watch descriptor stands for, both ways. Owned by the event processor.
struct WatchTable {
    private(set) var pathByWD: [Int32: RepoPath] = [:]
    private(set) var wdByPath: [RepoPath: Int32] = [:]
    /// Descriptors syncd removed itself; their late events (and the final IN_IGNORED) are dropped
    /// instead of being taken for unknown watches.
    private(set) var retired: Set<Int32> = []

    var count: Int { pathByWD.count }

    func path(of wd: Int32) -> RepoPath? { pathByWD[wd] }
    func wd(of path: RepoPath) -> Int32? { wdByPath[path] }
    func isRetired(_ wd: Int32) -> Bool { retired.contains(wd) }

    /// Records that `path` is watched by `wd`. inotify returns the existing descriptor for an inode
    /// it already watches, so `wd` may be known under another path (the directory moved and the
    /// rename is not processed yet); the mapping then follows the inode. Returns a descriptor that
    /// was displaced from `path` (a replaced directory), which the caller removes and retires.
    mutating func record(_ wd: Int32, at path: RepoPath) -> Int32? {
        if let previousPath = pathByWD[wd], previousPath != path {
            wdByPath[previousPath] = nil
        }
        var displaced: Int32?
        if let previousWD = wdByPath[path], previousWD != wd {
            pathByWD[previousWD] = nil
            displaced = previousWD
        }
        pathByWD[wd] = path
        wdByPath[path] = wd
        retired.remove(wd)
        return displaced
    }

    /// Forgets `wd` (after IN_IGNORED). Only the mapping that still belongs to `wd` is removed:
    /// a newer watch may already stand at the same path.
    mutating func forget(_ wd: Int32) {
        retired.remove(wd)
        guard let path = pathByWD.removeValue(forKey: wd) else { return }
        if wdByPath[path] == wd { wdByPath[path] = nil }
    }

    /// Forgets `wd` and remembers it as retired until its IN_IGNORED arrives.
    mutating func retire(_ wd: Int32) {
        forget(wd)
        retired.insert(wd)
    }

    /// Every watched directory at or below `prefix`.
    func watched(within prefix: RepoPath) -> [(path: RepoPath, wd: Int32)] {
        if prefix.isRoot { return wdByPath.map { ($0.key, $0.value) } }
        return wdByPath.compactMap { $0.key.isWithin(prefix) ? ($0.key, $0.value) : nil }
    }
}
