import Glibc
import SyncCore
import SyncSystem

/// Writes lines to stdout in one write(2) per batch (no stdio buffering: a pipe reader sees each
/// batch at once). A closed stdout (EPIPE) ends the program quietly.
public enum StandardOutput {
    public static func write(_ lines: [String]) throws {
        guard !lines.isEmpty else { return }
        var bytes: [UInt8] = []
        for line in lines {
            bytes.append(contentsOf: line.utf8)
            bytes.append(UInt8(ascii: "\n"))
        }
        do {
            try Syscall.writeAll(1, bytes)
        } catch {
            if error.errno == Errno(EPIPE) { throw CancellationError() }
            throw SyncError(.syscall, "cannot write to standard output", cause: error)
        }
    }
}

/// Log lines on stderr: `syncd: level: message`.
public struct StandardErrorLog: Sendable {
    public let minimum: LogLevel
    public init(minimum: LogLevel) { self.minimum = minimum }

    public var sink: LogSink {
        let minimum = minimum
        return { level, message in
            guard level >= minimum else { return }
            try? Syscall.writeAll(2, Array("syncd: \(level.rawValue): \(message)\n".utf8))
        }
    }
}

/// Runs `body` until it finishes or SIGINT/SIGTERM arrives (then cancels it and waits).
public func runUntilSignal(_ body: @escaping @Sendable () async throws -> Void) async throws {
    let signals = SignalStream.make([SIGINT, SIGTERM])
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await body() }
        group.addTask {
            for await _ in signals { return }
        }
        var failure: (any Error)?
        do {
            _ = try await group.next()
        } catch {
            failure = error
        }
        group.cancelAll()
        if let failure, !(failure is CancellationError) { throw failure }
    }
}
