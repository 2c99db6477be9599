import SyncCore

/// Decides which directories git ignores, so the watcher never spends watches on them.
public protocol IgnoreOracle: Sendable {
    /// The subset of `paths` that git ignores. A directory that holds tracked files is not ignored.
    func ignored(_ paths: [RepoPath]) async throws -> Set<RepoPath>
}

/// Asks `git check-ignore`, which applies every rule git applies (`.gitignore` at any depth,
/// `.git/info/exclude`, `core.excludesFile`) and knows that a directory holding tracked files is
/// not ignored. One child process per call: callers batch a whole crawl level per call.
public struct GitIgnoreOracle: IgnoreOracle {
    public let git: GitRunner
    /// false: `--no-index`, the rules alone, without reading the index (fast on big indexes; a
    /// tracked file that a rule matches is then reported too).
    public let useIndex: Bool

    public init(git: GitRunner, useIndex: Bool = true) {
        self.git = git
        self.useIndex = useIndex
    }

    public func ignored(_ paths: [RepoPath]) async throws -> Set<RepoPath> {
        guard !paths.isEmpty else { return [] }
        // Each path goes in as `./path`: a name that starts with `:` would otherwise be read as
        // pathspec magic (`:(glob)x` is a fatal error), and git echoes the `./` back.
        var input: [UInt8] = []
        for path in paths {
            input.append(contentsOf: Self.dotSlash)
            input.append(contentsOf: path.bytes)
            input.append(0)
        }
        // Exit 1 means "nothing is ignored", not a failure (man git-check-ignore).
        let result = try await git.run(
            useIndex ? ["check-ignore", "-z", "--stdin"] : ["check-ignore", "--no-index", "-z", "--stdin"],
            input: input,
            readOnly: true,
            acceptedExitCodes: [0, 1]
        )
        return Set(result.nulSeparatedFields.map { field in
            RepoPath(bytes: field.starts(with: Self.dotSlash) ? Array(field.dropFirst(2)) : field)
        })
    }

    private static let dotSlash: [UInt8] = [UInt8(ascii: "."), UInt8(ascii: "/")]
}
