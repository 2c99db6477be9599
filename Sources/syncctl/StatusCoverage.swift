import SyncEngine

/// The lines of `syncctl status` about what syncd does not see or cannot commit: directories the
/// watch limit left unwatched, directories and files syncd cannot read, nested repositories.
enum CoverageLines {
    static func lines(_ state: StatusSnapshot) -> [String] {
        var lines: [String] = []
        let unreadableDirectories = state.unreadableDirectories
        let unreadableFiles = state.unreadableFiles
        let overLimit = state.unwatchedDirectories - unreadableDirectories
        if overLimit > 0 {
            lines.append(
                "  NOT WATCHED: \(overLimit) director\(overLimit == 1 ? "y" : "ies") (the inotify watch limit is reached): "
                    + "changes there are seen only by periodic rescans; `syncctl doctor` says how to raise the limit")
        }
        if unreadableDirectories + unreadableFiles > 0 {
            var counts: [String] = []
            if unreadableDirectories > 0 { counts.append("\(unreadableDirectories) director\(unreadableDirectories == 1 ? "y" : "ies")") }
            if unreadableFiles > 0 { counts.append("\(unreadableFiles) file\(unreadableFiles == 1 ? "" : "s")") }
            let paths = state.unreadablePaths.map(printable)
            let more = unreadableDirectories + unreadableFiles - paths.count
            lines.append(
                "  CANNOT READ \(counts.joined(separator: " and ")): " + paths.joined(separator: ", ") + (more > 0 ? " and \(more) more" : "")
                    + "; not committed until syncd can read them: fix their permissions (syncd tries again when they change)")
        }
        let nested = state.nestedRepositories.map(printable)
        if !nested.isEmpty {
            lines.append(
                "  not committed here: the files inside " + nested.map { $0 + "/" }.joined(separator: ", ")
                    + " (separate git repositories: nested clones or submodules); commit them in those repositories")
        }
        return lines
    }

    /// A path for a terminal: control characters (a newline, an escape sequence in a file name)
    /// are shown as `\u{…}`.
    static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
