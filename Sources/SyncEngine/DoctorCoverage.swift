import SyncCore
import SyncGit

extension Doctor {
    /// What syncd does not commit although it changes: the files inside nested repositories
    /// (found here), and the paths syncd reported it cannot read (state.json).
    static func coverageChecks(_ client: ControlClient) async -> [Check] {
        var checks: [Check] = []
        if let nested = await nestedRepositories(client.repository.git) {
            let clones = nested.clones.map { $0.description + "/" }
            let submodules = nested.submodules.map { $0.description + "/" }
            if !clones.isEmpty {
                checks.append(Check(level: .warn, name: "nested", detail: "the files inside " + listed(clones)
                    + " are never committed by syncd: each is a separate git repository (a nested clone). Commit them there, "
                    + "move it out of the tree, or add it to .gitignore to say it is meant to stay out"))
            }
            if !submodules.isEmpty {
                checks.append(Check(level: .ok, name: "submodules", detail: "the files inside " + listed(submodules)
                    + " (submodules) are committed in their own repositories, not by syncd; syncd commits a submodule's new commit once it is made there"))
            }
        }
        if let state = client.state() {
            let directories = state.unreadableDirectories
            let files = state.unreadableFiles
            if directories + files > 0 {
                let paths = state.unreadablePaths
                let when = client.runningPid() != nil ? "" : " (as of syncd's last run)"
                checks.append(Check(level: .warn, name: "readable", detail: "syncd cannot read \(directories) director\(directories == 1 ? "y" : "ies") "
                    + "and \(files) file\(files == 1 ? "" : "s")\(when): " + listed(paths, total: directories + files)
                    + "; they are not committed until it can: fix their permissions (for the user syncd runs as)"))
            }
        }
        return checks
    }

    /// Nested clones (untracked directories with their own `.git`, not ignored) and submodules
    /// (gitlinks in the index). Nil when git cannot say.
    static func nestedRepositories(_ git: GitRunner) async -> (clones: [RepoPath], submodules: [RepoPath])? {
        guard let others = try? await git.run(["ls-files", "-z", "--others", "--exclude-standard"], readOnly: true),
            let staged = try? await git.run(["ls-files", "-z", "--stage"], readOnly: true)
        else { return nil }
        // With every untracked file listed, only a nested repository is listed as `dir/`.
        let clones = others.nulSeparatedFields.filter { $0.last == UInt8(ascii: "/") }.map { RepoPath(bytes: Array($0.dropLast())) }
        let gitlink = Array("160000 ".utf8)
        let submodules = staged.nulSeparatedFields.filter { $0.starts(with: gitlink) }.compactMap { field -> RepoPath? in
            guard let tab = field.firstIndex(of: UInt8(ascii: "\t")) else { return nil }
            return RepoPath(bytes: Array(field[(tab + 1)...]))
        }
        return (clones.sorted(), submodules.sorted())
    }

    static func listed(_ items: [String], total: Int? = nil) -> String {
        let shown = items.prefix(5)
        let more = (total ?? items.count) - shown.count
        return shown.joined(separator: ", ") + (more > 0 ? " and \(more) more" : "")
    }
}
