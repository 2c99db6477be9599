import SyncCore

/// One path `git status` reports as different from HEAD (or untracked).
public struct StatusEntry: Sendable, Hashable {
    public enum State: Sendable, Hashable {
        case changed, unmerged, untracked
    }

    public var path: RepoPath
    public var state: State

    /// `?? dir/`: a nested repository (git does not look inside), never one of syncd's changes.
    public var isNestedRepository: Bool { state == .untracked && path.bytes.last == UInt8(ascii: "/") }
}

public enum GitStatus {
    /// Every path that differs from HEAD, is untracked (each file, not just its directory), or is
    /// unmerged, optionally limited to `paths`. Read-only: it takes no optional lock.
    public static func dirtyPaths(_ git: GitRunner, limitedTo paths: [RepoPath] = []) async throws -> [StatusEntry] {
        var arguments: [GitArgument] = [
            "status", "--porcelain=v2", "-z", "--untracked-files=all", "--no-renames", "--ignore-submodules=dirty",
        ]
        if !paths.isEmpty {
            arguments.append("--")
            arguments.append(contentsOf: paths.map(GitArgument.literal))
        }
        let result = try await git.run(arguments, readOnly: true)
        return try parse(result.standardOutput)
    }

    /// Parses `git status --porcelain=v2 -z --no-renames` output (man git-status).
    public static func parse(_ output: [UInt8]) throws -> [StatusEntry] {
        var entries: [StatusEntry] = []
        let fields = output.split(separator: 0, omittingEmptySubsequences: true)
        var index = fields.startIndex
        while index < fields.endIndex {
            let field = fields[index]
            index += 1
            guard let tag = field.first else { continue }
            switch tag {
            case UInt8(ascii: "1"):
                entries.append(StatusEntry(path: try pathAfter(spaces: 8, in: field), state: .changed))
            case UInt8(ascii: "2"):
                // Renames do not appear with --no-renames; accept them anyway: the next field is the origin.
                entries.append(StatusEntry(path: try pathAfter(spaces: 9, in: field), state: .changed))
                if index < fields.endIndex {
                    entries.append(StatusEntry(path: RepoPath(bytes: Array(fields[index])), state: .changed))
                    index += 1
                }
            case UInt8(ascii: "u"):
                entries.append(StatusEntry(path: try pathAfter(spaces: 10, in: field), state: .unmerged))
            case UInt8(ascii: "?"):
                entries.append(StatusEntry(path: try pathAfter(spaces: 1, in: field), state: .untracked))
            default:
                continue  // "!" ignored and "#" headers: not changes.
            }
        }
        return entries
    }

    private static func pathAfter(spaces: Int, in field: ArraySlice<UInt8>) throws -> RepoPath {
        var seen = 0
        var position = field.startIndex
        while position < field.endIndex, seen < spaces {
            if field[position] == UInt8(ascii: " ") { seen += 1 }
            position += 1
        }
        guard seen == spaces, position < field.endIndex else {
            throw SyncError(.malformed, "unexpected `git status --porcelain=v2` record: \(String(decoding: field, as: UTF8.self))")
        }
        return RepoPath(bytes: Array(field[position...]))
    }
}
