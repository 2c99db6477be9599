import Foundation
import SyncCore
import SyncGit

/// A temporary git repository with an identity, for tests and benchmarks.
public struct GitFixture: Sendable {
    public let directory: TemporaryDirectory
    public var path: String { directory.path }
    public var git: GitRunner { GitRunner(workTree: Array(path.utf8)) }

    public init(prefix: String = "syncd-repo") async throws {
        directory = try TemporaryDirectory(prefix: prefix)
        _ = try await git.run(["init", "-q", "-b", "main"])
        _ = try await git.run(["config", "user.name", "syncd test"])
        _ = try await git.run(["config", "user.email", "test@syncd.invalid"])
    }

    public func repository() async throws -> Repository {
        try await Repository.discover(at: path)
    }

    public func file(_ relative: String) -> String { path + "/" + relative }

    public func remove() { directory.remove() }
}
