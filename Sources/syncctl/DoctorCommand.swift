import ArgumentParser
import SyncEngine

/// `syncctl doctor`: the checks of `SyncEngine.Doctor`, one line each.
struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check what syncd needs: git, the repository, the remote, inotify limits, disk, locks, the service. Exits 1 on any FAIL.")
    @OptionGroup var options: WorkspaceOptions

    func run() async throws {
        let client = try await options.client()
        let checks = await SyncEngine.Doctor.run(client)
        for check in checks {
            say("\(check.level.rawValue.padding(4)) \(check.name.padding(10)) \(check.detail)")
        }
        if checks.contains(where: { $0.level == .fail }) { throw ExitCode(1) }
    }
}
