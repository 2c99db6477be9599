import ArgumentParser
import SyncEngine
import SyncGit
import SyncSystem

/// `syncctl log`: what syncd did (JournalQuery in SyncEngine).
struct LogCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "What syncd did: commits, syncs, pauses, stops, failures, recoveries, from its journals (rotated ones included), oldest first.",
        discussion: "Types: \(JournalQuery.groups.keys.sorted().joined(separator: ", ")), or an event name (for example sync-conflict).")
    @OptionGroup var options: WorkspaceOptions
    @Option(help: "From this long ago (2h, 7d) or this time (2026-12-03, 2026-12-03T10:00, RFC 3339).")
    var since: String?
    @Option(help: "Up to this long ago or this time.")
    var until: String?
    @Option(name: .customLong("type"), help: "Only these types (repeat, or comma-separated).")
    var types: [String] = []
    @Option(help: "Only commits that touched this path (relative to the top of the working tree).")
    var path: String?
    // Unconditional, like --last: `--batch -1` is a bad number, not a missing value.
    @Option(parsing: .unconditional, help: "Only this batch.")
    var batch: Int?
    @Option(help: "Only commits holding this writer's changes (`as-writer --name`).")
    var writer: String?
    // Unconditional: `--last -1` is a bad count, not a missing value followed by a flag `-1`.
    @Option(parsing: .unconditional, help: "Only the last N records.")
    var last: Int?
    @Flag(help: "The records as JSON lines, as the journal holds them.")
    var json = false

    func validate() throws {
        let now = ControlFile.now()
        if let since, JournalQuery.time(since, now: now) == nil { throw ValidationError("--since \(since): expected a duration like 2h or a time like 2026-12-03T10:00") }
        if let until, JournalQuery.time(until, now: now) == nil { throw ValidationError("--until \(until): expected a duration like 2h or a time like 2026-12-03T10:00") }
        if let batch, batch < 1 { throw ValidationError("--batch \(batch): expected a batch number (1 or more), as `syncctl log` shows them") }
        if let last, last < 1 { throw ValidationError("--last \(last): expected a positive whole number of records, like --last 20") }
        if case .failure(let unknown) = JournalQuery.events(for: types) {
            throw ValidationError("--type \(unknown): expected one of \(JournalQuery.groups.keys.sorted().joined(separator: ", ")) or an event name")
        }
    }

    func run() async throws {
        let client = try await options.client()
        let now = ControlFile.now()
        var query = JournalQuery()
        query.since = since.flatMap { JournalQuery.time($0, now: now) }
        query.until = until.flatMap { JournalQuery.time($0, now: now) }
        if !types.isEmpty, case .success(let events) = JournalQuery.events(for: types) { query.events = events }
        query.batch = batch
        query.writer = writer
        if let path {
            let touched = try await client.repository.git.run(
                ["log", "--all", "--format=%H", "--", GitArgument(":(top,literal)" + path)], readOnly: true)
            query.commits = Set(String(decoding: touched.standardOutput, as: UTF8.self).split(separator: "\n").map(String.init))
        }
        // Printed as they are read (months of journal never sit in memory); `--last N` keeps
        // only the newest N, in a ring.
        let files = JournalQuery.files(in: client.stateDirectory)
        let malformed: Int
        if let last {
            var ring: [JournalQuery.Record] = []
            var next = 0
            malformed = query.forEach(files: files) { record in
                if ring.count < last {
                    ring.append(record)
                } else if last > 0 {
                    ring[next] = record
                    next = (next + 1) % last
                }
            }
            for record in ring[next...] + ring[..<next] { say(json ? record.line : JournalQuery.describe(record)) }
        } else {
            malformed = query.forEach(files: files) { record in say(json ? record.line : JournalQuery.describe(record)) }
        }
        if malformed > 0 {
            warn("\(malformed) journal line(s) are not JSON records and were skipped (a line torn by a crash, or a file edited by hand)")
        }
    }
}
