import SyncCore

/// The systemd side of `syncctl enable`: the instance name of a workspace and the drop-in that
/// makes the instance run as the workspace's owner and lets it write outside the workspace where
/// syncd must (a git directory elsewhere, a lock directory, the metrics file, a local remote).
public enum ServiceUnit {
    public static let template = "syncd@.service"
    /// The drop-in file `syncctl enable` writes and `syncctl disable` removes.
    public static let dropInName = "owner.conf"

    /// The instance's drop-in text. `user`/`group` are nil for a user manager's unit (it runs as
    /// its user already).
    public static func ownerDropIn(workspace: String, user: String?, group: String?, writablePaths: [String]) -> String {
        var lines = [
            "# Written by `syncctl enable \(workspace)`; `syncctl disable \(workspace)` removes it.",
        ]
        if user != nil { lines.append("# syncd runs as the owner of the workspace, so every file it writes there stays theirs.") }
        if !writablePaths.isEmpty {
            lines.append("# ProtectSystem=strict keeps the rest read-only; syncd also writes these (\"-\": may be missing):")
        }
        lines.append("[Service]")
        if let user { lines.append("User=\(user)") }
        if let group { lines.append("Group=\(group)") }
        if !writablePaths.isEmpty { lines.append("ReadWritePaths=" + writablePaths.joined(separator: " ")) }
        return lines.joined(separator: "\n") + "\n"
    }

    /// One entry of a unit-file path list (`ReadWritePaths=`): `%` doubled (a specifier otherwise),
    /// quoted when it holds a space, a quote or a backslash; a leading `-` makes a missing path no error.
    public static func pathEntry(_ path: String, optional: Bool = false) -> String {
        var text = path.replacingAll("%", with: "%%")
        if text.contains(where: { $0 == " " || $0 == "\t" || $0 == "\"" || $0 == "'" || $0 == "\\" }) {
            text = "\"" + text.replacingAll("\\", with: "\\\\").replacingAll("\"", with: "\\\"") + "\""
        }
        return (optional ? "-" : "") + text
    }

    /// Paths outside the working tree that syncd writes, as `ReadWritePaths=` entries: the git
    /// directory and the common directory (a linked worktree, `--separate-git-dir`), an absolute
    /// `syncd.lockDir`, the directory of `syncd.metricsFile`, and remotes that are local paths.
    public static func writablePaths(
        workTree: String, gitDir: String, commonDir: String, lockDir: String?, metricsFile: String?, remoteURLs: [String]
    ) -> [String] {
        var entries: [String] = []
        func add(_ path: String, optional: Bool) {
            let path = normalized(path)
            guard !path.isEmpty, !isWithin(path, workTree) else { return }
            // Covered already by a parent in the list (or the same path).
            let existing = entries.map { $0.hasPrefix("-") ? String($0.dropFirst()) : $0 }
            guard !existing.contains(where: { isWithin(path, $0) }) else { return }
            entries.append(pathEntry(path, optional: optional))
        }
        add(gitDir, optional: false)
        add(commonDir, optional: false)
        if let lockDir, !lockDir.isEmpty {
            add(lockDir.hasPrefix("/") ? lockDir : workTree + "/" + lockDir, optional: true)
        }
        if let metricsFile, metricsFile.hasPrefix("/"), let slash = metricsFile.lastIndex(of: "/") {
            add(slash == metricsFile.startIndex ? "/" : String(metricsFile[..<slash]), optional: true)
        }
        for url in remoteURLs {
            if let path = localPath(ofRemote: url, workTree: workTree) { add(path, optional: true) }
        }
        return entries
    }

    /// The file-system path of a remote URL that names a local repository (`/srv/x.git`,
    /// `file:///srv/x.git`, `../x.git`), nil for network URLs (`ssh://`, `host:path`, `https://`).
    public static func localPath(ofRemote url: String, workTree: String) -> String? {
        if url.hasPrefix("file://") {
            let rest = url.dropFirst("file://".count)
            // file://host/path is not local; file:///path is.
            return rest.hasPrefix("/") ? String(rest) : nil
        }
        if url.hasPrefix("/") { return url }
        if url.hasPrefix("./") || url.hasPrefix("../") { return workTree + "/" + url }
        return nil
    }

    /// `path` with `.` and `..` components resolved and duplicate and trailing slashes removed.
    static func normalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// True when `path` is `directory` or inside it.
    static func isWithin(_ path: String, _ directory: String) -> Bool {
        let directory = normalized(directory)
        return path == directory || path.hasPrefix(directory == "/" ? "/" : directory + "/")
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var result = ""
        for character in self { if character == target { result += replacement } else { result.append(character) } }
        return result
    }
}
