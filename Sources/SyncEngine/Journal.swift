import FoundationEssentials
import Glibc
import Logging
import SyncCore
import SyncSystem

/// The append-only record of every batch: one JSON object per line, fsynced before syncd acts on
/// it, rotated by size (`journal.jsonl` → `journal.1.jsonl` … `journal.3.jsonl`).
///
/// Lines carry `time`, `event` (`start`, `batch`, `commit`, `unchanged`, `deferred`, `failed`,
/// `breaker-open`, `stop`), the `batch` id and what happened.
final class Journal {
    static let keptRotations = 3
    let directory: [UInt8]
    let maxBytes: Int
    private var fd: Int32 = -1
    private var size = 0

    var path: [UInt8] { directory + Array("/journal.jsonl".utf8) }

    init(directory: [UInt8], maxBytes: Int) throws(SyscallError) {
        self.directory = directory
        self.maxBytes = maxBytes
        try open()
    }

    deinit {
        if fd >= 0 { Syscall.close(fd) }
    }

    private func open() throws(SyscallError) {
        fd = try Syscall.openRegular(path, flags: O_WRONLY | O_APPEND | O_CREAT, mode: 0o644)
        size = Int(try Syscall.fstat(fd).st_size)
    }

    /// Appends `record` (with the time first) and fsyncs it.
    func append(_ event: String, _ fill: (inout JSONLine) -> Void) throws(SyscallError) {
        var line = JSONLine()
        line.add("time", WallClock.rfc3339())
        line.add("event", event)
        fill(&line)
        let bytes = Array((line.text + "\n").utf8)
        if size > 0, size + bytes.count > maxBytes { try rotate() }
        try Syscall.writeAll(fd, bytes)
        try Syscall.fsync(fd, path: path)
        size += bytes.count
    }

    /// Opens the journal again when its file was deleted or replaced under it (its directory
    /// removed while syncd runs); true when it did.
    func reopenIfReplaced() throws(SyscallError) -> Bool {
        if fd >= 0, let held = try? Syscall.fstat(fd), let now = try? Syscall.lstat(path),
            held.st_dev == now.st_dev, held.st_ino == now.st_ino
        {
            return false
        }
        if fd >= 0 { Syscall.close(fd) }
        fd = -1
        try open()
        return true
    }

    private func rotate() throws(SyscallError) {
        Syscall.close(fd)
        fd = -1
        func rotated(_ number: Int) -> [UInt8] { directory + Array("/journal.\(number).jsonl".utf8) }
        try Syscall.unlink(rotated(Self.keptRotations))
        for number in stride(from: Self.keptRotations - 1, through: 1, by: -1) where Syscall.exists(rotated(number)) {
            try Syscall.rename(rotated(number), to: rotated(number + 1))
        }
        try Syscall.rename(path, to: rotated(1))
        try Syscall.fsyncDirectory(directory)
        try open()
    }

    /// How the previous run ended, read before this run writes its `start`: nil when it stopped
    /// (its last record is `stop`) or there was none; else what a crash or kill -9 left: the
    /// batch it had open (journaled, neither committed nor found unchanged), if any.
    static func previousEnding(in directory: [UInt8]) -> (crashed: Bool, openBatch: Int?)? {
        guard let bytes = try? Syscall.readFile(directory + Array("/journal.jsonl".utf8), limit: 64 * 1024 * 1024) else { return nil }
        var open: Int?
        var last: String?
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            guard let record = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line)),
                case .string(let event) = record["event"]
            else { continue }
            last = event
            let batch = record["batch"]?.number.map { Int($0) }
            switch event {
            case "batch": open = batch
            case "commit", "unchanged": if batch == open { open = nil }
            case "start", "stop": open = nil
            default: break
            }
        }
        guard let last, last != "stop" else { return nil }
        return (true, open)
    }

    /// The highest batch id recorded in the current and the previous journal (0 when none), so ids
    /// stay monotonic across restarts even when the state file is lost.
    static func lastBatch(in directory: [UInt8]) -> Int {
        var best = 0
        for name in ["/journal.jsonl", "/journal.1.jsonl"] {
            guard let bytes = try? Syscall.readFile(directory + Array(name.utf8), limit: 64 * 1024 * 1024) else { continue }
            let key = Array("\"batch\":".utf8)
            var index = 0
            while index + key.count < bytes.count {
                if bytes[index] == key[0], bytes[index..<(index + key.count)].elementsEqual(key) {
                    var value = 0
                    var position = index + key.count
                    while position < bytes.count, (48...57).contains(bytes[position]) {
                        value = value * 10 + Int(bytes[position] - 48)
                        position += 1
                    }
                    best = max(best, value)
                    index = position
                } else {
                    index += 1
                }
            }
        }
        return best
    }
}

/// Messages of the start-up repairs, logged as they happen and kept for the journal's
/// `recovery` records: `log` records each message and hands it on to the logger given.
final class RecoveryNotes: Sendable {
    private let recorder: LogRecorder
    let log: Logger

    init(_ log: Logger) {
        let recorder = LogRecorder()
        self.recorder = recorder
        self.log = recorder.logger(label: log.label, forwardingTo: log)
    }

    var messages: [String] { recorder.entries.map(\.message) }

    /// The messages so far, forgotten.
    func take() -> [String] { recorder.take().map(\.message) }
}
