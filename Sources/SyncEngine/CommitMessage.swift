import SyncCore

/// The message of a syncd commit: a one-line summary (counts and the main paths), the paths one per
/// line, then trailers for provenance (`Syncd-Batch`, `Syncd-Host`, `Syncd-Trigger`, `Syncd-Writer`).
public enum CommitMessage {
    /// Paths listed in the body before "… and N more".
    public static let bodyLimit = 200

    public static func make(files: [CommittedFile], batch: Int, host: String, trigger: String, writer: String?) -> String {
        var lines = [summary(files)]
        lines.append("")
        for file in files.prefix(bodyLimit) {
            lines.append("\(file.status.rawValue) \(quote(file.path))")
        }
        if files.count > bodyLimit { lines.append("… and \(files.count - bodyLimit) more") }
        lines.append("")
        lines.append("Syncd-Batch: \(batch)")
        lines.append("Syncd-Host: \(host)")
        lines.append("Syncd-Trigger: \(trigger)")
        if let writer, !writer.isEmpty { lines.append("Syncd-Writer: \(writer)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `syncd: update notes/a.md`, or `syncd: 12 files (3 added, 8 modified, 1 deleted): a, b, c, …`.
    public static func summary(_ files: [CommittedFile]) -> String {
        if files.count == 1, let file = files.first {
            let verb: String
            switch file.status {
            case .added: verb = "add"
            case .deleted: verb = "delete"
            case .modified, .typeChanged: verb = "update"
            }
            return "syncd: \(verb) \(shorten(quote(file.path), to: 60))"
        }
        var counts: [String] = []
        let added = files.count { $0.status == .added }
        let modified = files.count { $0.status == .modified || $0.status == .typeChanged }
        let deleted = files.count { $0.status == .deleted }
        if added > 0 { counts.append("\(added) added") }
        if modified > 0 { counts.append("\(modified) modified") }
        if deleted > 0 { counts.append("\(deleted) deleted") }
        var text = "syncd: \(files.count) files (\(counts.joined(separator: ", "))): "
        let main = mainPaths(files)
        var shown = 0
        for name in main {
            let candidate = (shown == 0 ? "" : ", ") + name
            if text.count + candidate.count > 100 { break }
            text += candidate
            shown += 1
        }
        if shown < main.count { text += shown == 0 ? "…" : ", …" }
        return text
    }

    /// The directories that hold the changes (the files themselves when few): `notes/`, `src/a.swift`.
    static func mainPaths(_ files: [CommittedFile]) -> [String] {
        if files.count <= 3 { return files.map { quote($0.path) } }
        var seen: [String] = []
        for file in files {
            let parent = file.path.parent
            let name = parent.isRoot ? quote(file.path) : quote(parent) + "/"
            if !seen.contains(name) { seen.append(name) }
            if seen.count > 8 { break }
        }
        return seen
    }

    /// A path as message text: valid UTF-8 as is; control characters, backslashes and invalid bytes
    /// as C escapes (`\n`, `\\`, `\351`), so one name never spans two lines.
    public static func quote(_ path: RepoPath) -> String {
        if let text = path.utf8String, !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == "\\" }) {
            return text
        }
        var out = ""
        var bytes = path.bytes[...]
        while !bytes.isEmpty {
            // Take the longest valid UTF-8 prefix scalar by scalar.
            let length = scalarLength(bytes)
            if length > 0, let scalar = String(validating: bytes.prefix(length), as: UTF8.self) {
                switch scalar {
                case "\n": out += "\\n"
                case "\t": out += "\\t"
                case "\\": out += "\\\\"
                default:
                    if let first = scalar.unicodeScalars.first, first.value < 0x20 || first.value == 0x7F {
                        out += "\\" + octal(bytes.first!)
                    } else {
                        out += scalar
                    }
                }
                bytes = bytes.dropFirst(length)
            } else {
                out += "\\" + octal(bytes.first!)
                bytes = bytes.dropFirst()
            }
        }
        return out
    }

    private static func scalarLength(_ bytes: ArraySlice<UInt8>) -> Int {
        guard let first = bytes.first else { return 0 }
        let length: Int
        switch first {
        case 0x00...0x7F: length = 1
        case 0xC2...0xDF: length = 2
        case 0xE0...0xEF: length = 3
        case 0xF0...0xF4: length = 4
        default: return 0
        }
        return bytes.count >= length ? length : 0
    }

    private static func octal(_ byte: UInt8) -> String {
        let text = String(byte, radix: 8)
        return String(repeating: "0", count: 3 - text.count) + text
    }

    private static func shorten(_ text: String, to limit: Int) -> String {
        text.count <= limit ? text : "…" + text.suffix(limit - 1)
    }
}
