import SyncCore
import SyncEngine
import SyncTestKit
import Foundation
import Testing

@Suite("Settings")
struct SettingsTests {
    @Test("durations, sizes and booleans in the forms people write")
    func parsing() {
        #expect(Settings.parseDuration("2s") == .seconds(2))
        #expect(Settings.parseDuration("500ms") == .milliseconds(500))
        #expect(Settings.parseDuration("1m30s") == .seconds(90))
        #expect(Settings.parseDuration("1h") == .seconds(3600))
        #expect(Settings.parseDuration("7") == .seconds(7))
        #expect(Settings.parseDuration("2 s") == nil)
        #expect(Settings.parseDuration("s") == nil)
        #expect(Settings.parseDuration("-1s") == nil)
        #expect(Settings.parseDuration("3 weeks") == nil)
        #expect(Settings.parseSize("8MiB") == 8 * 1024 * 1024)
        #expect(Settings.parseSize("512k") == 512 * 1024)
        #expect(Settings.parseSize("4096") == 4096)
        #expect(Settings.parseSize("lots") == nil)
        #expect(Settings.parseBool("Yes") == true)
        #expect(Settings.parseBool("off") == false)
        #expect(Settings.parseBool("maybe") == nil)
        #expect(Settings.formatDuration(.seconds(90)) == "1m30s")
        #expect(Settings.formatDuration(.milliseconds(500)) == "500ms")
    }

    @Test("git config keys are read, flags override them")
    func loadAndOverride() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        _ = try await fixture.git.run(["config", "syncd.quietPeriod", "5s"])
        _ = try await fixture.git.run(["config", "syncd.maxLatency", "1m"])
        _ = try await fixture.git.run(["config", "syncd.fsync", "no"])
        let (settings, warnings) = try await Settings.load(git: fixture.git, overrides: [("syncd.maxLatency", "30s")])
        #expect(settings.quietPeriod == .seconds(5))
        #expect(settings.maxLatency == .seconds(30))
        #expect(settings.fsync == false)
        #expect(warnings.isEmpty)
    }

    @Test("an invalid value names the key, the value and what is allowed")
    func invalidValue() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        _ = try await fixture.git.run(["config", "syncd.quietPeriod", "soon"])
        let error = await #expect(throws: SyncError.self) {
            _ = try await Settings.load(git: fixture.git)
        }
        #expect(error?.code == .invalidSetting)
        let message = error?.message ?? ""
        #expect(message.contains("syncd.quietPeriod"))
        #expect(message.contains("\"soon\""))
        #expect(message.contains("a duration"))
        #expect(message.contains("git config --unset syncd.quietPeriod"))
    }

    @Test("a bad flag value names the flag; a latency below the quiet period is refused")
    func invalidFlagAndRelation() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let flagError = await #expect(throws: SyncError.self) {
            _ = try await Settings.load(git: fixture.git, overrides: [("syncd.maxBatchPaths", "0")])
        }
        #expect(flagError?.message.contains("--max-batch-paths 0") == true)
        let relationError = await #expect(throws: SyncError.self) {
            _ = try await Settings.load(git: fixture.git, overrides: [("syncd.quietPeriod", "30s"), ("syncd.maxLatency", "10s")])
        }
        #expect(relationError?.message.contains("shorter than syncd.quietPeriod") == true)
    }

    @Test("an unknown syncd.* key is a warning that lists the known keys")
    func unknownKey() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        _ = try await fixture.git.run(["config", "syncd.quietPeriods", "5s"])
        let (_, warnings) = try await Settings.load(git: fixture.git)
        #expect(warnings.count == 1)
        #expect(warnings.first?.contains("syncd.quietperiods") == true)
        #expect(warnings.first?.contains("syncd.quietPeriod,") == true)
    }

    @Test("the README documents every setting with its flag")
    func readmeListsEverySetting() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        for key in Settings.keys {
            #expect(readme.contains("| `\(key.name)` | `\(key.flag)` |"), "README lacks \(key.name)")
        }
    }
}
