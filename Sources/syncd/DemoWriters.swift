import Glibc
import SyncCore
import SyncEngine
import SyncSystem
import Synchronization

/// What the demo says: lines on stdout, each written whole; timed lines carry the seconds since
/// the demo's service started.
final class DemoOutput: Sendable {
    private let start = Mutex<ContinuousClock.Instant?>(nil)
    private let writing = Mutex(())

    /// From now on, timed lines count from here.
    func startClock() { start.withLock { $0 = .now } }

    /// `[ 12.3s] text`, continuation lines indented under the text.
    func say(_ text: String) {
        let elapsed = start.withLock { $0.map { ContinuousClock.now - $0 } } ?? .zero
        let tenths = elapsed.wholeMilliseconds / 100
        var stamp = "\(tenths / 10).\(tenths % 10)s"
        stamp = String(repeating: " ", count: max(0, 6 - stamp.count)) + stamp
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let body = lines.enumerated().map { index, line in (index == 0 ? "[\(stamp)] " : String(repeating: " ", count: 10)) + line }
        write(body.joined(separator: "\n"))
    }

    /// A line without a time.
    func plain(_ text: String) { write(text) }

    /// A problem of the demo itself, on stderr.
    func error(_ text: String) {
        try? Syscall.writeAll(2, Array("syncd: error: \(text)\n".utf8))
    }

    private func write(_ text: String) {
        writing.withLock { _ in try? Syscall.writeAll(1, Array((text + "\n").utf8)) }
    }
}

/// The demo's "stop soon": set by its timeline's end or by the first Ctrl-C. Waits end early
/// when it is set; steps in progress (a writer's update, a merge) finish first.
final class DemoStop: Sendable {
    private let flag = Mutex(false)

    var requested: Bool { flag.withLock { $0 } }
    func request() { flag.withLock { $0 = true } }

    /// Sleeps until `deadline`; false when a stop came first. Throws only on cancellation.
    func sleep(until deadline: ContinuousClock.Instant) async throws -> Bool {
        let clock = ContinuousClock()
        while clock.now < deadline {
            if requested { return false }
            try await clock.sleep(until: min(deadline, clock.now.advanced(by: .milliseconds(50))))
        }
        return !requested
    }

    func sleep(for duration: Duration) async throws -> Bool {
        try await sleep(until: .now.advanced(by: duration))
    }

    /// Polls `condition` every 100 ms until it holds (true), `limit` passes or a stop comes (false).
    func wait(_ limit: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now.advanced(by: limit)
        while true {
            if try await condition() { return true }
            if requested || ContinuousClock.now >= deadline { return false }
            try await ContinuousClock().sleep(for: .milliseconds(100))
        }
    }
}

/// One write the demo made into a repository, for the summary's check.
struct DemoWrite: Sendable {
    enum Writer: String, Sendable {
        /// The plain writer (ignores the protocol).
        case notes
        /// The protocol writer: one round of its multi-file status.
        case status
        /// A person at the laptop (the conflict's local side).
        case person
        /// The other machine (committed and pushed there).
        case desk
    }

    var writer: Writer
    var path: String
    var content: String
    /// The status writer's round; the line it appended to status/history.log is `content`.
    var round = 0
}

/// Every write, in order, also appended to `writes.jsonl` so a person (or a test) can check the
/// summary independently.
final class DemoRecord: Sendable {
    private let writes = Mutex<[DemoWrite]>([])
    private let manifest: [UInt8]

    init(manifest: String) { self.manifest = Array(manifest.utf8) }

    var all: [DemoWrite] { writes.withLock { $0 } }

    func add(_ write: DemoWrite) {
        writes.withLock { $0.append(write) }
        var line = JSONLine()
        line.add("writer", write.writer.rawValue)
        line.add("path", write.path)
        line.add("content", write.content)
        if write.round > 0 { line.add("round", write.round) }
        guard let fd = try? Syscall.open(manifest, flags: O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, mode: 0o644) else { return }
        defer { Syscall.close(fd) }
        try? Syscall.writeAll(fd, Array((line.text + "\n").utf8))
    }
}

/// Plain file writes, as any program makes them: open, write, close.
enum DemoFiles {
    static func write(_ path: String, _ text: String) throws(SyscallError) {
        let fd = try Syscall.open(Array(path.utf8), flags: O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o644)
        defer { Syscall.close(fd) }
        try Syscall.writeAll(fd, Array(text.utf8))
    }

    static func append(_ path: String, _ text: String) throws(SyscallError) {
        let fd = try Syscall.open(Array(path.utf8), flags: O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, mode: 0o644)
        defer { Syscall.close(fd) }
        try Syscall.writeAll(fd, Array(text.utf8))
    }

    static func read(_ path: String) -> String? {
        (try? Syscall.readFile(Array(path.utf8))).map { String(decoding: $0, as: UTF8.self) }
    }

    static func makeDirectory(_ path: String) throws(SyscallError) {
        try Syscall.makeDirectory(Array(path.utf8))
    }

    /// The time of day, for the writers' contents.
    static func clock() -> String {
        let text = WallClock.rfc3339()
        // 2026-11-22T07:02:03.123Z → 07:02:03
        guard let t = text.firstIndex(of: "T") else { return text }
        return String(text[text.index(after: t)...].prefix(8))
    }
}

/// The writer that knows nothing of syncd: a new note every `period`, written with plain
/// open/write/close, whatever syncd is doing (paused, stopped, committing).
struct NoteTaker: Sendable {
    let workspace: String
    let period: Duration
    let record: DemoRecord
    let output: DemoOutput
    let stop: DemoStop

    func run() async throws {
        try DemoFiles.makeDirectory(workspace + "/notes")
        let start = ContinuousClock.now
        var number = 0
        while !stop.requested {
            number += 1
            let path = "notes/note-\(number < 10 ? "00" : number < 100 ? "0" : "")\(number).md"
            let content = "# Note \(number)\n\nWritten by the note taker at \(DemoFiles.clock()); it knows nothing of syncd.\n"
            do {
                try DemoFiles.write(workspace + "/" + path, content)
                record.add(DemoWrite(writer: .notes, path: path, content: content))
            } catch {
                output.say("the note taker could not write \(path): \(error)")
            }
            guard try await stop.sleep(until: start.advanced(by: period * number)) else { return }
        }
    }
}

/// The writer under the protocol, with the code `syncctl as-writer` runs (`WriterTurn`): every
/// `period` it rewrites a status that must stay consistent across files (status/summary.md and
/// status/status.json name the same round) and appends the round to status/history.log, all
/// while it holds the sync lock shared. Each update takes about `updateTime` (it "computes"
/// between the files), long enough for syncd to have to wait for it now and then.
struct StatusWriter: Sendable {
    let workspace: String
    let lockDirectory: LockDirectory
    let period: Duration
    let updateTime: Duration
    let record: DemoRecord
    let output: DemoOutput
    let stop: DemoStop

    func run() async throws {
        try DemoFiles.makeDirectory(workspace + "/status")
        let lock = try FileLock(path: lockDirectory.syncLock)
        let start = ContinuousClock.now
        var round = 0
        var tick = 0
        var stoppedBefore = false
        while !stop.requested {
            tick += 1
            let turn = try await WriterTurn.take(lock, in: lockDirectory, until: .now.advanced(by: .seconds(60))) { lease in
                output.say("the status writer waits: syncd asked writers to pause (\(lease.reason)); `syncctl as-writer` waits the same way")
            }
            switch turn {
            case .emergencyStop:
                if !stoppedBefore {
                    output.say("the status writer does not write: an emergency stop is set (`syncctl as-writer` refuses to run then, exit 75)")
                }
                stoppedBefore = true
            case .gaveUp(let leaseInForce):
                output.say("the status writer gave up waiting for its turn (" + (leaseInForce ? "a pause lease stayed in force" : "syncd held the sync lock") + " for 60 s)")
            case .granted:
                if stoppedBefore {
                    output.say("the status writer writes again: the emergency stop is cleared")
                    stoppedBefore = false
                }
                round += 1
                defer { lock.unlock() }
                try await update(round: round)
            }
            guard try await stop.sleep(until: start.advanced(by: period * tick)) else { return }
        }
    }

    /// One round, all under the shared lock: the summary first, then (after "computing") the JSON
    /// that must agree with it, then the history line.
    private func update(round: Int) async throws {
        let time = DemoFiles.clock()
        let summary = "# Status\n\nround \(round), at \(time)\nall systems nominal\n"
        let json = "{\"round\":\(round),\"at\":\"\(time)\",\"state\":\"nominal\"}\n"
        let history = "round \(round) at \(time)\n"
        try DemoFiles.write(workspace + "/status/summary.md", summary)
        // A stop during the update still finishes it: a writer never leaves half an update.
        try? await ContinuousClock().sleep(for: updateTime)
        try DemoFiles.write(workspace + "/status/status.json", json)
        try DemoFiles.append(workspace + "/status/history.log", history)
        record.add(DemoWrite(writer: .status, path: "status/history.log", content: history, round: round))
    }
}
