import Foundation
import SyncCore
import SyncSystem
import SyncTestKit
import Testing

@testable import SyncEngine

@Suite("Journal and state file")
struct JournalTests {
    @Test("records are JSON lines; the journal rotates by size and keeps three old files")
    func rotation() throws {
        let directory = try TemporaryDirectory(prefix: "syncd-journal")
        defer { directory.remove() }
        let journal = try Journal(directory: Array(directory.path.utf8), maxBytes: 1024)
        for batch in 1...200 {
            try journal.append("batch") { line in
                line.add("batch", batch)
                line.add("paths", batch * 3)
            }
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(names == ["journal.1.jsonl", "journal.2.jsonl", "journal.3.jsonl", "journal.jsonl"])
        for name in names {
            let text = try String(contentsOfFile: directory.sub(name), encoding: .utf8)
            #expect(text.utf8.count <= 1024)
            for line in text.split(separator: "\n") {
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                #expect(object?["event"] as? String == "batch")
                #expect(object?["time"] is String)
            }
        }
        let last = try String(contentsOfFile: directory.sub("journal.jsonl"), encoding: .utf8)
        #expect(last.contains("\"batch\":200"))
        #expect(Journal.lastBatch(in: Array(directory.path.utf8)) == 200)
    }

    @Test("the last batch id survives a rotation that left the current journal empty")
    func lastBatchAcrossRotation() throws {
        let directory = try TemporaryDirectory(prefix: "syncd-journal")
        defer { directory.remove() }
        try Files.write(directory.sub("journal.1.jsonl"), "{\"event\":\"commit\",\"batch\":41}\n{\"event\":\"batch\",\"batch\":42}\n")
        try Files.write(directory.sub("journal.jsonl"), "")
        #expect(Journal.lastBatch(in: Array(directory.path.utf8)) == 42)
    }

    @Test("the state file is replaced atomically: whole old or whole new content, no temp file left")
    func atomicState() throws {
        let directory = try TemporaryDirectory(prefix: "syncd-state")
        defer { directory.remove() }
        let path = Array((directory.path + "/state.json").utf8)
        var status = StatusSnapshot()
        status.phase = .deferred
        status.reason = "a rebase is in progress"
        try status.write(to: path)
        status.phase = .idle
        status.reason = ""
        try status.write(to: path)
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory.path + "/state.json"))) as? [String: Any]
        #expect(object?["phase"] as? String == "idle")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["state.json"])
    }
}
