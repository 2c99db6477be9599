import ArgumentParser
import FoundationEssentials
import SyncEngine

/// `syncctl verify`: is everything written here safe, and where (Verify in SyncEngine).
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Prove that what was written here is safe: fsck, every backup chain restored in a scratch repository, the working tree, the remote, the off-site copy.",
        discussion: "One line per check (OK/WARN/FAIL). Exit 0: all OK; 1: a WARN (pending changes, unpushed commits); 2: a FAIL (damaged objects or backups, an unreachable syncd.backupDir).")
    @OptionGroup var options: WorkspaceOptions
    @Flag(help: "One JSON object: {\"result\": ok|warn|fail, \"checks\": [{level, name, detail}]}.")
    var json = false

    struct Report: Encodable {
        struct Item: Encodable {
            var level: String
            var name: String
            var detail: String
        }
        var result: String
        var checks: [Item]
    }

    func run() async throws {
        let client = try await options.client()
        let checks = await Verify.run(client)
        let code = Verify.exitCode(checks)
        if json {
            let report = Report(
                result: ["ok", "warn", "fail"][Int(code)],
                checks: checks.map { Report.Item(level: $0.level.rawValue.lowercased(), name: $0.name, detail: $0.detail) })
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            say(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            for check in checks {
                say("\(check.level.rawValue.padding(4)) \(check.name.padding(10)) \(check.detail)")
            }
        }
        if code != 0 { throw ExitCode(code) }
    }
}
