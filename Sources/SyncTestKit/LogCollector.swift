import Logging
import SyncSystem

/// What a library logged, for tests that check what it said (or that it said nothing): pass
/// `logger` where the library takes a `Logger`, then read `messages`, `lines` or `warnings`.
/// Every level is kept.
public final class LogCollector: Sendable {
    public let recorder = LogRecorder()

    public init() {}

    public var logger: Logger { recorder.logger(label: "test") }

    public var entries: [LogRecorder.Entry] { recorder.entries }
    /// The messages, whatever their level.
    public var messages: [String] { entries.map(\.message) }
    /// `level: message`, as syncd writes them (without its prefix and metadata).
    public var lines: [String] { entries.map { "\($0.level.rawValue): \($0.message)" } }
    /// The messages at warning and above.
    public var warnings: [String] { entries.filter { $0.level >= .warning }.map(\.message) }
}
