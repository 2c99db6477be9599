import Foundation
import SyncCore
import SyncGit
import SyncSystem

/// A temporary git repository with an identity, for tests and benchmarks.
public struct GitFixture: Sendable {
    public let directory: TemporaryDirectory
    public var path: String { directory.path }
    public var git: GitRunner { GitRunner(workTree: Array(path.utf8)) }

    public init(prefix: String = "syncd-repo") async throws {
        try await self.init(directory: try TemporaryDirectory(prefix: prefix))
    }

    /// A repository at `path` (created), for example on a filesystem a test mounted.
    public init(in path: String) async throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try await self.init(directory: TemporaryDirectory(existing: path))
    }

    private init(directory: TemporaryDirectory) async throws {
        // As in syncd and syncctl: a git child that exits before reading its input must be an
        // EPIPE for the test's own git calls, not a SIGPIPE that ends the whole test process.
        SignalStream.ignoreSIGPIPE()
        self.directory = directory
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

/// Questions tests ask of a repository's history.
extension GitFixture {
    /// HEAD's tree, path bytes → "mode sha".
    public func headTree() async throws -> [[UInt8]: String] {
        let result = try await git.run(["ls-tree", "-r", "-z", "--full-tree", "HEAD"], readOnly: true, acceptedExitCodes: [0, 128])
        var tree: [[UInt8]: String] = [:]
        for field in result.nulSeparatedFields {
            guard let tab = field.firstIndex(of: UInt8(ascii: "\t")) else { continue }
            let meta = String(decoding: field[..<tab], as: UTF8.self).split(separator: " ")
            tree[Array(field[(tab + 1)...])] = "\(meta[0]) \(meta[2])"
        }
        return tree
    }

    /// `git status` lines (porcelain v2, every untracked file); empty when HEAD, index and working
    /// tree agree, ignored files aside.
    public func statusLines() async throws -> [String] {
        let result = try await git.run(["status", "--porcelain=v2", "-z", "--untracked-files=all"], readOnly: true)
        return result.nulSeparatedFields.map { String(decoding: $0, as: UTF8.self) }
    }

    /// Staged paths (index against HEAD).
    public func stagedPaths() async throws -> [String] {
        let result = try await git.run(["diff", "--cached", "--name-only", "-z"], readOnly: true)
        return result.nulSeparatedFields.map { String(decoding: $0, as: UTF8.self) }
    }

    public func commitCount() async throws -> Int {
        let result = try await git.run(["rev-list", "--count", "HEAD"], readOnly: true, acceptedExitCodes: [0, 128])
        guard result.exitCode == 0 else { return 0 }
        return Int(String(decoding: result.standardOutput, as: UTF8.self).filter(\.isNumber)) ?? 0
    }

    public func head() async throws -> String? {
        let result = try await git.run(["rev-parse", "-q", "--verify", "HEAD"], readOnly: true, acceptedExitCodes: [0, 1])
        return result.exitCode == 0 ? String(decoding: result.standardOutput, as: UTF8.self).filter { !$0.isWhitespace } : nil
    }

    /// `git fsck --full --strict`; throws with git's output when it finds anything.
    public func fsck() async throws {
        let result = try await git.run(["fsck", "--full", "--strict", "--no-dangling"], readOnly: true, acceptedExitCodes: [0, 1, 2, 3, 4, 5, 6, 7, 8])
        if result.exitCode != 0 || !result.standardError.isEmpty && result.standardError.contains("error") {
            throw TestFailure("git fsck failed (\(result.exitCode)): \(result.standardError)")
        }
    }

    /// Runs git in the fixture and returns stdout as text.
    @discardableResult
    public func run(_ arguments: [GitArgument], accepting codes: Set<Int32> = [0]) async throws -> String {
        let result = try await git.run(arguments, acceptedExitCodes: codes)
        return String(decoding: result.standardOutput, as: UTF8.self)
    }
}
