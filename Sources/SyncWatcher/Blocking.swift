import Dispatch

/// Runs blocking work (directory listing, inotify_add_watch on thousands of directories) on a
/// dispatch queue instead of Swift's cooperative pool, and awaits the result.
enum Blocking {
    private static let queue = DispatchQueue(label: "syncd.blocking-io", attributes: .concurrent)

    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body() })
            }
        }
    }
}
