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
        // A second signal cancelled the body: how it ended (for syncd run, the changes that
        // stayed uncommitted) is the outcome, not the cancellation.
        while let result = await group.nextResult() {
            if case .failure(let error) = result, !(error is CancellationError), failure == nil || failure is CancellationError {
                failure = error
            }
        }
        if let failure, !(failure is CancellationError) { throw failure }
    }
}
