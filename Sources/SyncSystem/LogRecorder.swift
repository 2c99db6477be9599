import Logging
import Synchronization

/// Keeps what is logged through its ``logger(label:forwardingTo:)``: the start-up repairs kept for
/// the journal (`RecoveryNotes`), and what tests check was said (`LogCollector` in SyncTestKit).
/// Everything is recorded, whatever the level the forwarded-to logger writes.
public final class LogRecorder: Sendable {
    public struct Entry: Sendable, Equatable {
        public var level: Logger.Level
        public var message: String
        /// The logger's metadata and the message's, merged (not what a `forwardingTo` logger adds).
        public var metadata: Logger.Metadata
    }

    private let store = Mutex<[Entry]>([])

    public init() {}

    public var entries: [Entry] { store.withLock { $0 } }

    /// The entries so far, forgotten.
    public func take() -> [Entry] {
        store.withLock { entries in
            defer { entries = [] }
            return entries
        }
    }

    /// A logger that records every message here, then hands it to `next` (which filters by its
    /// own level and adds its own metadata), if given.
    public func logger(label: String = "syncd", forwardingTo next: Logger? = nil) -> Logger {
        Logger(label: label) { _ in Handler(recorder: self, next: next) }
    }

    fileprivate func append(_ entry: Entry) { store.withLock { $0.append(entry) } }

    private struct Handler: LogHandler {
        let recorder: LogRecorder
        let next: Logger?
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var all = metadata
            if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
            if let attached = event.metadata { all.merge(attached) { _, new in new } }
            recorder.append(Entry(level: event.level, message: event.message.description, metadata: all))
            next?.log(
                level: event.level, event.message, error: event.error, metadata: all.isEmpty ? nil : all,
                source: event.source, file: event.file, function: event.function, line: event.line)
        }
    }
}

extension Logger {
    /// Writes nothing: for callers with nobody to tell (doctor's read-only checks, benchmarks).
    public static let discarding = Logger(label: "syncd") { _ in SwiftLogNoOpLogHandler() }
}
