/// Waits for a condition with a bounded deadline. Tests never sleep and hope: they wait for the
/// thing they expect, and fail with a message when it does not come in time.
public struct TimedOut: Error, CustomStringConvertible {
    public let description: String
}

/// Runs `body`; if it has not finished after `limit`, cancels it and throws `TimedOut(what)`.
public func withDeadline<T: Sendable>(
    _ limit: Duration,
    _ what: String,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await ContinuousClock().sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw TimedOut(description: "timed out after \(limit): \(what)")
        }
        return value
    }
}

/// Polls `condition` (for state no event announces, like git history) every `interval` until it
/// holds or `limit` passes.
public func waitUntil(
    _ limit: Duration = .seconds(30),
    interval: Duration = .milliseconds(20),
    _ what: String,
    _ condition: @escaping @Sendable () async throws -> Bool
) async throws {
    let clock = ContinuousClock()
    let end = clock.now.advanced(by: limit)
    while true {
        if try await condition() { return }
        if clock.now >= end { throw TimedOut(description: "timed out after \(limit): \(what)") }
        try await clock.sleep(for: interval)
    }
}
