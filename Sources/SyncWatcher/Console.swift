import Glibc
import SyncCore
import SyncSystem
import Synchronization

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

/// Log lines on stderr: `syncd: level: message`. Under systemd (`JOURNAL_STREAM` set, stderr
/// going to the journal) each line starts with its syslog priority (`<3>` error … `<7>` debug),
/// so `journalctl -p warning` filters them. The same message repeated within a minute is written
/// once; the next one says how many were held back.
public struct StandardErrorLog: Sendable {
    public let minimum: LogLevel
    public let journal: Bool
    private let limiter = RepeatLimiter(window: .seconds(60))

    public init(minimum: LogLevel, journal: Bool = getenv("JOURNAL_STREAM") != nil) {
        self.minimum = minimum
        self.journal = journal
    }

    static func priority(_ level: LogLevel) -> Int {
        switch level {
        case .error: 3
        case .warning: 4
        case .info: 6
        case .debug: 7
        }
    }

    public var sink: LogSink {
        let minimum = minimum
        let journal = journal
        let limiter = limiter
        return { level, message in
            guard level >= minimum, let text = limiter.admit(message) else { return }
            let prefix = journal ? "<\(Self.priority(level))>" : "syncd: "
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            // One record per line for the journal; the priority on each.
            let body = lines.map { "\(prefix)\(level.rawValue): \($0)" }.joined(separator: "\n")
            try? Syscall.writeAll(2, Array((body + "\n").utf8))
        }
    }
}

/// Holds back a message repeated within `window`; the next time it is let through, it carries
/// the number held back.
final class RepeatLimiter: Sendable {
    private struct Entry {
        var lastWritten: ContinuousClock.Instant
        var heldBack: Int
    }

    private let window: Duration
    private let entries = Mutex<[String: Entry]>([:])

    init(window: Duration) { self.window = window }

    /// The text to write now, or nil to hold it back.
    func admit(_ message: String) -> String? {
        let now = ContinuousClock.now
        return entries.withLock { entries in
            if entries.count > 1000 { entries.removeAll() }
            if var entry = entries[message], now - entry.lastWritten < window {
                entry.heldBack += 1
                entries[message] = entry
                return nil
            }
            let held = entries[message]?.heldBack ?? 0
            entries[message] = Entry(lastWritten: now, heldBack: 0)
            return held > 0 ? "\(message) (repeated \(held) more times in the last minute)" : message
        }
    }
}

/// Runs `body` until it finishes or SIGINT/SIGTERM arrives (then cancels it and waits).
public func runUntilSignal(_ body: @escaping @Sendable () async throws -> Void) async throws {
    try await runUntilStopped(body, gracefulStop: nil)
}

/// Runs `body` until it returns. The first SIGINT or SIGTERM calls `gracefulStop` (the service
/// finishes its step, commits and pushes, then `body` returns); a second one cancels `body`.
/// A graceful stop and a cancellation are different things: only the second tears git down.
/// Without `gracefulStop`, the first signal cancels.
public func runUntilStopped(
    _ body: @escaping @Sendable () async throws -> Void,
    gracefulStop: (@Sendable () async -> Void)?
) async throws {
    let signals = SignalStream.make([SIGINT, SIGTERM])
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await body() }
        group.addTask {
            var received = 0
            for await _ in signals {
                received += 1
                guard received == 1, let gracefulStop else { throw CancellationError() }
                await gracefulStop()
            }
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
