import ArgumentParser
import SyncCore
import SyncEngine
import SyncSystem

/// `-C DIR` / `--workspace DIR` after the command: the workspace it works on.
struct WorkspaceOptions: ParsableArguments {
    @Option(name: [.customShort("C"), .long], help: "The workspace (any directory inside its working tree).")
    var workspace: String = "."

    /// `forWriting`: the command records a request, so syncd's directories are created if syncd
    /// has not run here yet.
    func client(forWriting: Bool = false) async throws -> ControlClient {
        do {
            let client = try await ControlClient.open(at: workspace)
            if forWriting { try client.prepareForWriting() }
            return client
        } catch let error as SyncError {
            throw Failure(error.description)
        }
    }
}

func parseTimeout(_ text: String) throws -> Duration {
    guard let value = Settings.parseDuration(text), value > .zero else {
        throw ValidationError("--timeout \(text): expected a duration like 10s")
    }
    return value
}

/// A reason is shown in status, logs and alerts: one line of bounded length.
func checkReason(_ reason: String) throws {
    guard reason.count <= ControlFile.maxReason else {
        throw ValidationError("--reason is \(reason.count) characters long; at most \(ControlFile.maxReason) are kept: shorten it")
    }
    guard !reason.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) else {
        throw ValidationError("--reason holds newlines or control characters; give it as one line of plain text")
    }
}

func say(_ line: String) {
    try? Syscall.writeAll(1, Array((line + "\n").utf8))
}

/// One line on stderr, `syncctl: ` first: what the user should know beside the output.
func warn(_ line: String) {
    try? Syscall.writeAll(2, Array("syncctl: \(line)\n".utf8))
}

extension String {
    /// Left-aligned in `width` columns, for the check tables of `doctor` and `verify`.
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
