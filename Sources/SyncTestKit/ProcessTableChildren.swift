import SyncSystem

extension ProcessTable {
    /// The children of `parent` whose command line contains every one of `needles`. Only the
    /// children: the tests run in parallel, and another test's git must never be touched.
    public static func children(of parent: Int32, containing needles: [String]) -> [Int32] {
        allPids().filter { pid in
            guard self.parent(of: pid) == parent, let line = commandLine(of: pid) else { return false }
            return needles.allSatisfy { line.contains($0) }
        }
    }
}
