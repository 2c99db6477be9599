import Glibc
import FoundationEssentials
import SyncCore
import SyncSystem

/// `syncctl log`: what syncd did, from its journals (the current one and the rotated ones),
/// oldest first, filtered. A record is one JSON line with `time` first, so a time filter skips
/// lines by their first bytes without decoding them.
public struct JournalQuery: Sendable {
    /// Groups of events `--type` accepts (an event name works too).
    public static let groups: [String: Set<String>] = [
        "commit": ["commit"],
        "batch": ["batch", "unchanged", "deferred"],
        "sync": ["sync-start", "sync-done", "integrated", "sync-conflict", "sync-failed"],
        "pause": ["pause", "resume", "emergency-stop", "emergency-cleared"],
        "stop": ["start", "stop", "reload"],
        "failure": ["failed", "sync-failed", "breaker-open", "alert"],
        "recovery": ["recovery", "reconcile"],
    ]

    public var since: Double?
    public var until: Double?
    public var events: Set<String>?
    public var batch: Int?
    public var writer: String?
    /// Only commit records whose commit is in this set (`--path`: the commits that touched it).
    public var commits: Set<String>?

    public init() {}

    public struct Record: Sendable {
        public var line: String
        public var fields: [String: JSONValue]
        public var event: String { fields["event"]?.string ?? "" }
        public var time: String { fields["time"]?.string ?? "" }
    }

    /// The journal files of a state directory, oldest first.
    public static func files(in stateDirectory: [UInt8]) -> [[UInt8]] {
        let rotated = stride(from: Journal.keptRotations, through: 1, by: -1).map { stateDirectory + Array("/journal.\($0).jsonl".utf8) }
        return (rotated + [stateDirectory + Array("/journal.jsonl".utf8)]).filter { Syscall.exists($0) }
    }

    /// The matching records of `files`, oldest first.
    public func run(files: [[UInt8]]) -> [Record] {
        var records: [Record] = []
        _ = forEach(files: files) { records.append($0) }
        return records
    }

    /// Hands each matching record of `files` to `body`, oldest first, one file in memory at a
    /// time (a file is at most `syncd.journalMaxSize`); returns how many lines were not JSON
    /// records (a torn last line after a crash, or a file edited by hand).
    @discardableResult
    public func forEach(files: [[UInt8]], _ body: (Record) -> Void) -> Int {
        var malformed = 0
        let prefix = Array("{\"time\":\"".utf8)
        for file in files {
            guard let bytes = try? Syscall.readFile(file, limit: 1 << 30) else { continue }
            for line in bytes.split(separator: UInt8(ascii: "\n")) {
                if since != nil || until != nil, line.starts(with: prefix) {
                    let start = line.startIndex + prefix.count
                    if let end = line[start...].firstIndex(of: UInt8(ascii: "\"")),
                        let time = WallClock.seconds(rfc3339: String(decoding: line[start..<end], as: UTF8.self))
                    {
                        if let since, time < since { continue }
                        if let until, time > until { continue }
                    }
                }
                // The event is the second field: a type filter skips a line without decoding it.
                if let events, let event = Self.event(in: line), !events.contains(event) { continue }
                if let writer, Self.find(Array(writer.utf8), in: line) == nil { continue }
                guard let fields = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line)) else {
                    malformed += 1
                    continue
                }
                let record = Record(line: String(decoding: line, as: UTF8.self), fields: fields)
                if matches(record) { body(record) }
            }
        }
        return malformed
    }

    /// The value of `"event":"…"` in a journal line, without decoding it.
    static func event(in line: ArraySlice<UInt8>) -> String? {
        let key = Array("\"event\":\"".utf8)
        guard let found = find(key, in: line) else { return nil }
        let start = found + key.count
        guard let end = line[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        return String(decoding: line[start..<end], as: UTF8.self)
    }

    /// Where `needle` starts in `line`, by a plain scan over the bytes (the generic
    /// `firstRange(of:)` was most of the time spent).
    static func find(_ needle: [UInt8], in line: ArraySlice<UInt8>) -> Int? {
        guard let first = needle.first, line.count >= needle.count else { return nil }
        return line.withUnsafeBufferPointer { haystack in
            needle.withUnsafeBufferPointer { pattern in
                var index = 0
                let last = haystack.count - pattern.count
                while index <= last {
                    if haystack[index] == first {
                        var matched = 1
                        while matched < pattern.count, haystack[index + matched] == pattern[matched] { matched += 1 }
                        if matched == pattern.count { return line.startIndex + index }
                    }
                    index += 1
                }
                return nil
            }
        }
    }

    func matches(_ record: Record) -> Bool {
        if let events, !events.contains(record.event) { return false }
        if let batch, record.fields["batch"]?.number.map({ Int($0) }) != batch { return false }
        if let writer {
            guard record.event == "commit", let names = record.fields["writer"]?.string,
                names.split(separator: ",").contains(where: { String($0).trimmed == writer })
            else { return false }
        }
        if let commits {
            guard record.event == "commit", let commit = record.fields["commit"]?.string, commits.contains(commit) else { return false }
        }
        return true
    }

    /// `--type` values to event names, or the first unknown value.
    public enum Events {
        case success(Set<String>)
        case failure(String)
    }

    public static func events(for types: [String]) -> Events {
        var events: Set<String> = []
        for type in types.flatMap({ $0.split(separator: ",").map(String.init) }) {
            if let group = groups[type] {
                events.formUnion(group)
            } else if groups.values.contains(where: { $0.contains(type) }) {
                events.insert(type)
            } else {
                return .failure(type)
            }
        }
        return .success(events)
    }

    /// `2h`, `30m`, `7d` (that long ago), or a time: `2026-12-03`, `2026-12-03T10:00`, RFC 3339.
    public static func time(_ text: String, now: Double) -> Double? {
        if let duration = Settings.parseDuration(text) {
            return now - duration.inSeconds
        }
        var candidate = text
        if candidate.count == 10 { candidate += "T00:00:00" }
        if candidate.count == 16 { candidate += ":00" }
        if !candidate.hasSuffix("Z"), !candidate.contains("+") { candidate += "Z" }
        if !candidate.contains(".") { candidate = String(candidate.dropLast()) + ".000Z" }
        return WallClock.seconds(rfc3339: candidate)
    }

    /// One line for people: time, event, and what matters about it.
    public static func describe(_ record: Record) -> String {
        let f = record.fields
        func text(_ key: String) -> String { f[key]?.description ?? "" }
        let detail: String
        switch record.event {
        case "commit":
            var parts = ["batch \(text("batch"))", "→ \(text("commit").prefix(12))", "\(text("files")) file(s)"]
            if f["trigger"] != nil { parts.append(text("trigger")) }
            if let writer = f["writer"]?.string { parts.append("writer: \(writer)") }
            detail = parts.joined(separator: "  ")
        case "sync-done": detail = f["pushed"]?.bool == true ? "pushed" : "fetched, nothing to push"
        case "integrated": detail = "\(text("how")) → \(text("commit").prefix(12))"
        case "sync-conflict": detail = "conflict in \(text("files")); the local side is on \(text("branch"))"
        default:
            detail = f.keys.filter { $0 != "time" && $0 != "event" }.sorted().map { "\($0)=\(OneLine.make(f[$0]!.description, limit: 200))" }.joined(separator: "  ")
        }
        let event = record.event.count >= 14 ? record.event : record.event + String(repeating: " ", count: 14 - record.event.count)
        return "\(record.time)  \(event) \(detail)"
    }
}
