import Glibc
import SyncCore
import SyncSystem

/// The workspace: its working tree and git directory, found by asking git.
public struct Repository: Sendable {
    /// Absolute path of the working tree's top level.
    public let workTree: [UInt8]
    /// Absolute path of the git directory (`.git`, or elsewhere for linked worktrees).
    public let gitDir: [UInt8]
    /// Absolute path of the common git directory (refs and objects live there; differs from `gitDir`
    /// in linked worktrees).
    public let commonDir: [UInt8]
    /// Absolute path of the repository's `info/exclude` (in the common dir for linked worktrees).
    public let excludeFile: [UInt8]
    public let git: GitRunner

    public var workTreeDisplay: String { String(decoding: workTree, as: UTF8.self) }

    /// Finds the repository that contains `path` (which must exist and be a working tree).
    /// `asOwner`: when this runs as root and the workspace belongs to one other user, git runs as
    /// that user (syncctl: root may look at and control a user's workspace; syncd itself never
    /// runs as root there).
    public static func discover(at path: String, gitExecutable: String = "git", asOwner: Bool = false) async throws -> Repository {
        var probe = GitRunner(workTree: Array(path.utf8), executable: gitExecutable)
        if asOwner, geteuid() == 0, let owner = WorkspaceOwner.find(path), owner.uid != 0, owner.isOwned(by: owner.uid) {
            probe.user = GitUser.lookUp(uid: owner.uid, gid: owner.gid)
        }
        let result: GitResult
        do {
            result = try await probe.run(
                [
                    "rev-parse", "--is-inside-work-tree", "--show-toplevel", "--absolute-git-dir",
                    "--path-format=absolute", "--git-common-dir", "--git-path", "info/exclude",
                ],
                readOnly: true,
                acceptedExitCodes: [0, 128]
            )
        } catch let error as SyncError {
            throw SyncError(
                .notARepository,
                "\(path) is not inside a git working tree: run `git init` there (or clone into it), "
                    + "or pass the path of an existing repository",
                cause: error
            )
        }
        if result.exitCode != 0 {
            throw refusal(path: path, standardError: result.standardError)
        }
        let lines = result.standardOutput.split(separator: UInt8(ascii: "\n")).map(Array.init)
        guard lines.count == 5, lines[0] == Array("true".utf8) else {
            throw SyncError(
                .notARepository,
                "\(path) is not a git working tree (a bare repository or a .git directory has no files to watch): "
                    + "pass the path of a checkout"
            )
        }
        var git = GitRunner(workTree: lines[1], executable: gitExecutable, hooksPath: noHooksDirectory(gitDir: lines[2]))
        git.user = probe.user
        return Repository(workTree: lines[1], gitDir: lines[2], commonDir: lines[3], excludeFile: lines[4], git: git)
    }

    /// The directory syncd's (and syncctl's) git calls take as `core.hooksPath`: empty, in syncd's
    /// state directory, so no hook runs for them (reference-transaction, post-index-change,
    /// pre-push, post-merge, …). git finds no hook there whether or not it exists.
    public static func noHooksDirectory(gitDir: [UInt8]) -> [UInt8] {
        gitDir + Array("/syncd/no-hooks".utf8)
    }

    /// The same repository, its git calls watched by `monitor`.
    public func monitored(by monitor: GitMonitor) -> Repository {
        var git = git
        git.monitor = monitor
        return Repository(workTree: workTree, gitDir: gitDir, commonDir: commonDir, excludeFile: excludeFile, git: git)
    }

    /// Why git refused to work at `path` (exit 128), with git's own reason and fix.
    static func refusal(path: String, standardError: String) -> SyncError {
        let lines = standardError.split(separator: "\n").map { String($0).trimmed }.filter { !$0.isEmpty }
        let reason = lines.first.map { $0.hasPrefix("fatal: ") ? String($0.dropFirst("fatal: ".count)) : $0 } ?? "exit code 128"
        if reason.contains("dubious ownership") {
            // git ≥ 2.35.2 refuses a repository that belongs to another user (CVE-2022-24765).
            let owner = WorkspaceOwner.find(path)
            let me = WorkspaceOwner.describe(geteuid())
            let whose = owner.map { "it belongs to \($0.ownerDescription), not to \(me)" } ?? "this runs as \(me)"
            let top = owner?.workTreeDisplay ?? path
            let gitFix = lines.first { $0.hasPrefix("git config") }
                ?? "git config --global --add safe.directory \(top)"
            let runAs = owner.flatMap { $0.userName.map { "`sudo syncctl enable \(top)` (a service that runs as \($0))" } }
                ?? "`sudo syncctl enable \(top)`"
            return SyncError(
                .wrongOwner,
                "git refuses to work in \(top): \(reason) (\(whose)). Run syncd as the repository's owner: \(runAs); "
                    + "or, only if this user should commit there and the files may end up owned by it, `\(gitFix)`")
        }
        return SyncError(
            .notARepository,
            "\(path) is not inside a git working tree (git: \(reason)): run `git init` there (or clone into it), "
                + "or pass the path of an existing repository")
    }

    /// The absolute form of a workspace-relative path.
    public func absolute(_ path: RepoPath) -> [UInt8] {
        path.isRoot ? workTree : workTree + [UInt8(ascii: "/")] + path.bytes
    }

    /// The global excludes file git reads (core.excludesFile, else $XDG_CONFIG_HOME/git/ignore,
    /// else ~/.config/git/ignore), as an absolute path; nil when none can be named.
    public func globalExcludesFile(environment: [String: String]) async -> [UInt8]? {
        if let configured = try? await git.run(
            ["config", "--path", "--get", "core.excludesFile"],
            readOnly: true,
            acceptedExitCodes: [0, 1]
        ), configured.exitCode == 0 {
            let value = configured.standardOutput.split(separator: UInt8(ascii: "\n")).first.map(Array.init) ?? []
            if value.first == UInt8(ascii: "/") { return value }
            if !value.isEmpty { return workTree + [UInt8(ascii: "/")] + value }
        }
        if let xdg = environment["XDG_CONFIG_HOME"], !xdg.isEmpty {
            return Array((xdg + "/git/ignore").utf8)
        }
        if let home = environment["HOME"], !home.isEmpty {
            return Array((home + "/.config/git/ignore").utf8)
        }
        return nil
    }
}
