import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Testing

/// `syncctl log` and the writer trailer (issue 14), with the real binaries.
@Suite("syncctl log and the writer trailer (real processes)", .serialized)
struct LogTests {
    static func syncctl(_ arguments: [String]) async throws -> (exit: ProcessHarness.Exit, lines: [String], output: String) {
        let process = syncctlProcess(arguments)
        let exit = try await process.exit(within: .seconds(60))
        return (exit, process.lines, process.stdout + process.stderr)
    }

    @Test("log filters by type, time (rotated journals included), path, writer, batch; --json gives the journal's lines; as-writer --name sets Syncd-Writer")
    func logAndWriterTrailer() async throws {
        let remote = try await RemoteSyncTests.Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        // A record in a rotated journal, from long ago.
        try Files.mkdirs(a.path + "/.git/syncd")
        try Files.write(a.path + "/.git/syncd/journal.1.jsonl",
            #"{"time":"2025-01-01T00:00:00.000Z","event":"commit","batch":0,"commit":"0000000000000000000000000000000000000000","files":1,"attempts":1,"trigger":"quiet"}"# + "\n"
                // A line torn by a crash: skipped, and said.
                + #"{"time":"2025-01-02T00:00:00.000Z","event":"comm"# + "\n")
        let syncd = SyncdHarness(a, RemoteSyncTests.fast + ["--push-delay", "0"])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()

        let writer = try await Self.syncctl(["as-writer", "-C", a.path, "--name", "report-agent", "--", "sh", "-c", "echo status > \(a.path)/agent.txt"])
        #expect(writer.exit == .exited(0), "\(writer.output)")
        try await syncd.settled()
        try Files.write(a.file("plain.txt"), "a plain writer\n")
        try await syncd.settled()
        #expect(try await Self.syncctl(["pause", "-C", a.path, "--reason", "log test"]).exit == .exited(0))
        #expect(try await Self.syncctl(["resume", "-C", a.path]).exit == .exited(0))
        try Files.move(remote.url, remote.url + "-away")
        let sync = try await Self.syncctl(["sync", "-C", a.path, "--timeout", "20s"])
        try Files.move(remote.url + "-away", remote.url)
        #expect(sync.exit != .exited(0))

        let commits = try await Self.syncctl(["log", "-C", a.path, "--type", "commit"])
        #expect(commits.exit == .exited(0), "\(commits.output)")
        #expect(commits.lines.count == 3, "\(commits.lines)")  // the old one, the writer's, the plain one
        #expect(commits.lines.allSatisfy { $0.contains(" commit ") })

        let named = try await Self.syncctl(["log", "-C", a.path, "--writer", "report-agent"])
        #expect(named.lines.count == 1, "\(named.lines)")
        #expect(named.lines.first?.contains("writer: report-agent") == true)
        let message = try await a.run(["log", "-1", "--format=%B", "--", "agent.txt"])
        #expect(message.contains("Syncd-Writer: report-agent"), "\(message)")
        let plainMessage = try await a.run(["log", "-1", "--format=%B", "--", "plain.txt"])
        #expect(!plainMessage.contains("Syncd-Writer"), "\(plainMessage)")

        let touched = try await Self.syncctl(["log", "-C", a.path, "--path", "plain.txt"])
        #expect(touched.lines.count == 1, "\(touched.lines)")
        let plainCommit = try await a.run(["log", "-1", "--format=%H", "--", "plain.txt"])
        #expect(touched.lines.first?.contains(String(plainCommit.prefix(12))) == true)

        let pauses = try await Self.syncctl(["log", "-C", a.path, "--type", "pause"])
        #expect(pauses.lines.map { $0.contains(" pause ") || $0.contains(" resume ") } == [true, true], "\(pauses.lines)")
        let failures = try await Self.syncctl(["log", "-C", a.path, "--type", "failure"])
        #expect(failures.lines.contains { $0.contains("sync-failed") }, "\(failures.lines)")

        let old = try await Self.syncctl(["log", "-C", a.path, "--until", "2025-06-01"])
        #expect(old.lines.count == 1 && old.lines[0].hasPrefix("2025-01-01"), "\(old.lines)")
        #expect(old.output.contains("1 journal line(s) are not JSON records and were skipped"), "\(old.output)")
        let recent = try await Self.syncctl(["log", "-C", a.path, "--since", "1h", "--type", "commit"])
        #expect(recent.lines.count == 2, "\(recent.lines)")
        let newest = try await Self.syncctl(["log", "-C", a.path, "--type", "commit", "--last", "1"])
        #expect(newest.lines == [recent.lines.last ?? ""], "\(newest.lines)")
        let everything = try await Self.syncctl(["log", "-C", a.path, "--type", "commit", "--last", "10"])
        #expect(everything.lines.count == 3 && everything.lines.first?.hasPrefix("2025-01-01") == true, "\(everything.lines)")

        let json = try await Self.syncctl(["log", "-C", a.path, "--json", "--type", "commit", "--since", "1h"])
        let objects = json.lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(objects.count == 2)
        let batch = try #require(objects.first?["batch"] as? Int)
        let byBatch = try await Self.syncctl(["log", "-C", a.path, "--batch", String(batch)])
        #expect(byBatch.lines.contains { $0.contains(" commit ") })
        #expect(byBatch.lines.allSatisfy { $0.contains("batch \(batch)") || $0.contains("batch=\(batch)") }, "\(byBatch.lines)")

        let bad = try await Self.syncctl(["log", "-C", a.path, "--type", "nonsense"])
        #expect(bad.exit == .exited(64))
        #expect(bad.output.contains("--type nonsense"))
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("--last and --batch take a positive whole number; a negative or zero one is said as such, not as a missing value")
    func lastMustBePositive() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        for (option, expected) in [("--last", "expected a positive whole number"), ("--batch", "expected a batch number")] {
            for count in ["-1", "0"] {
                let bad = try await Self.syncctl(["log", "-C", fixture.path, option, count])
                #expect(bad.exit == .exited(64), "\(option) \(count): \(bad.output)")
                #expect(bad.output.contains("\(option) \(count): \(expected)"), "\(option) \(count): \(bad.output)")
                #expect(!bad.output.contains("Missing value"), "\(option) \(count): \(bad.output)")
            }
        }
    }
}
