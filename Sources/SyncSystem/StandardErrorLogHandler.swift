import Glibc
import Logging
import Synchronization

/// syncd's one log handler: lines on stderr, `syncd: level: message`. Under systemd
/// (`JOURNAL_STREAM` set, stderr going to the journal) each line starts with its syslog priority
/// instead (`<3>error: …`, `<4>warning: …`, `<6>info: …`, `<7>debug: …`), so
/// `journalctl -p warning` filters them. A message repeated within a minute is written once; the
/// next one let through says how many were held back (see ``RepeatLimiter``).
///
/// Metadata is printed after the message, keys sorted: ` [batch=12 remote=origin]`. Keys in
/// `hidden` are not printed (syncd hides `workspace`: one process, one workspace, named by its
/// command line or unit), nor are the limiter's own keys (``Logger/Metadata/limitRepeats(within:key:)``).
///
/// Copies of a `Logger` built on it (one per library, each with its own metadata) share the
/// limiter and the output.
public struct StandardErrorLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    /// `syncd` or `syncctl`: the prefix outside the journal.
    public let program: String
    /// Lines start with their syslog priority instead of the program's name.
    public let journal: Bool
    /// Metadata keys left out of the line.
    public let hidden: Set<String>
    private let limiter: RepeatLimiter
    private let write: @Sendable (String) -> Void

    /// - Parameters:
    ///   - write: where the text goes (one call per message, newline included); stderr in one
    ///     write(2) by default. Tests pass a collector.
    ///   - now: the limiter's clock; tests pass a manual one.
    public init(
        program: String = "syncd",
        journal: Bool = getenv("JOURNAL_STREAM") != nil,
        hidden: Set<String> = [],
        write: @escaping @Sendable (String) -> Void = { try? Syscall.writeAll(2, Array($0.utf8)) },
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }
    ) {
        self.program = program
        self.journal = journal
        self.hidden = hidden
        self.write = write
        self.limiter = RepeatLimiter(now: now)
    }

    /// The syslog priority of a level (sd-daemon(3)): `journalctl -p` filters on it.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .critical: 2
        case .error: 3
        case .warning: 4
        case .notice: 5
        case .info: 6
        case .debug, .trace: 7
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let attached = event.metadata { all.merge(attached) { _, new in new } }
        let message = event.message.description
        let limit = RepeatLimiter.Limit(all)
        guard let text = limiter.admit(message, key: limit.key ?? message, window: limit.window) else { return }
        write(Self.render(level: event.level, text: text, metadata: all, program: program, journal: journal, hidden: hidden))
    }

    /// The text written for one message: one line per line of `text`, each with the prefix (one
    /// journal record each, the priority on each); the metadata at the end of the last one.
    static func render(
        level: Logger.Level, text: String, metadata: Logger.Metadata, program: String, journal: Bool, hidden: Set<String>
    ) -> String {
        let prefix = journal ? "<\(priority(level))>" : "\(program): "
        let body = text + metadataSuffix(metadata, hidden: hidden)
        let lines = body.split(separator: "\n", omittingEmptySubsequences: false)
        return lines.map { "\(prefix)\(level.rawValue): \($0)" }.joined(separator: "\n") + "\n"
    }

    /// ` [batch=12 remote=origin]`: the printed metadata, keys sorted; empty when there is none.
    public static func metadataSuffix(_ metadata: Logger.Metadata, hidden: Set<String> = []) -> String {
        let shown = metadata.filter { !hidden.contains($0.key) && !$0.key.hasPrefix(RepeatLimiter.Limit.keyPrefix) }
        guard !shown.isEmpty else { return "" }
        return " [" + shown.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "]"
    }
}

extension Logger.Metadata {
    /// Asks the log handler to write this message at most once per `window` (default: a minute,
    /// what every message gets), counting the lines held back. `key` names what counts as "the
    /// same message" when the text varies (a count in it); by default the text itself.
    ///
    /// A failed batch is logged with `.limitRepeats(within: .seconds(300), key: …the error)`,
    /// a sync problem with `.limitRepeats(within: .seconds(600), key: "sync: " + …)`.
    public static func limitRepeats(within window: Duration, key: String? = nil) -> Logger.Metadata {
        var metadata: Logger.Metadata = [RepeatLimiter.Limit.windowKey: "\(window.components.seconds)"]
        if let key { metadata[RepeatLimiter.Limit.keyKey] = "\(key)" }
        return metadata
    }
}

/// Holds back a message repeated within its window; the next time it is let through, it carries
/// the number held back.
final class RepeatLimiter: Sendable {
    static let defaultWindow: Duration = .seconds(60)

    /// A message's own window and key, from its metadata (``Logger/Metadata/limitRepeats(within:key:)``).
    struct Limit {
        static let keyPrefix = "repeat."
        static let windowKey = "repeat.window"
        static let keyKey = "repeat.key"
        var window = RepeatLimiter.defaultWindow
        var key: String?

        init(_ metadata: Logger.Metadata) {
            if case .string(let seconds)? = metadata[Self.windowKey], let seconds = Int64(seconds), seconds >= 0 {
                window = .seconds(seconds)
            }
            if case .string(let key)? = metadata[Self.keyKey] { self.key = key }
        }
    }

    private struct Entry {
        var lastWritten: ContinuousClock.Instant
        var heldBack: Int
    }

    private let now: @Sendable () -> ContinuousClock.Instant
    private let entries = Mutex<[String: Entry]>([:])

    init(now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) { self.now = now }

    /// The text to write now, or nil to hold it back.
    func admit(_ message: String, key: String? = nil, window: Duration = RepeatLimiter.defaultWindow) -> String? {
        let key = key ?? message
        let now = now()
        return entries.withLock { entries in
            if entries.count > 1000 { entries.removeAll() }
            if var entry = entries[key], now - entry.lastWritten < window {
                entry.heldBack += 1
                entries[key] = entry
                return nil
            }
            let held = entries[key]?.heldBack ?? 0
            entries[key] = Entry(lastWritten: now, heldBack: 0)
            return held > 0 ? "\(message) (repeated \(held) more times in the last \(Self.describe(window)))" : message
        }
    }

    /// "minute", "10 minutes", "90 s".
    static func describe(_ window: Duration) -> String {
        let seconds = window.components.seconds
        if seconds == 60 { return "minute" }
        if seconds > 0, seconds % 60 == 0 { return "\(seconds / 60) minutes" }
        return "\(seconds) s"
    }
}
