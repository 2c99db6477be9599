import ArgumentParser
import SyncCore
import SyncEngine
import SyncSystem

/// `syncctl pause`, `resume` and `emergency-stop`: the persistent switches in the lock directory,
/// written, signalled and confirmed through `ControlClient` (ControlRequests.swift).
struct Pause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop committing (changes are still collected and committed as one batch on resume or expiry).")
    @OptionGroup var options: WorkspaceOptions
    @Option(name: .customLong("for"), help: "How long, like 10m or 1h (default: until `syncctl resume`).")
    var duration: String?
    @Option(help: "Why, shown in status and logs.")
    var reason = "paused with syncctl"
    @Option(help: "How long to wait for syncd to confirm.")
    var timeout = "10s"

    /// Usage errors are found here, while parsing, so they print this command's usage.
    func validate() throws {
        if let duration { _ = try Self.parseFor(duration) }
        _ = try parseTimeout(timeout)
        try checkReason(reason)
    }

    static func parseFor(_ text: String) throws -> Duration {
        guard let value = Settings.parseDuration(text), value > .zero else {
            throw ValidationError("--for \(text): expected a duration like 10m, 1h or 90s")
        }
        return value
    }

    func run() async throws {
        let client = try await options.client(forWriting: true)
        var until: Double?
        if let duration {
            let value = try Self.parseFor(duration)
            until = ControlFile.now() + value.inSeconds
        }
        let wait = try parseTimeout(timeout)
        switch try await client.pause(reason: reason, until: until, timeout: wait) {
        case .notRunning:
            throw Failure("no syncd is running for \(client.repository.workTreeDisplay); the pause is recorded and applies when it starts", code: ExitStatus.notRunning)
        case .notConfirmed:
            throw Failure("syncd did not confirm the pause within \(timeout); it is recorded in \(Syscall.display(client.lockDirectory.daemonPause))"
                + (client.stateProblem().map { ", but \($0)" } ?? ""), code: ExitStatus.notConfirmed)
        case .confirmed: break
        }
        say("paused" + (until.map { " until \(WallClock.rfc3339(seconds: $0))" } ?? " until `syncctl resume`") + ": \(reason)")
    }
}

struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "End a pause (and, with --clear-emergency, an emergency stop).")
    @OptionGroup var options: WorkspaceOptions
    @Flag(help: "Also clear an emergency stop.")
    var clearEmergency = false
    @Option(help: "How long to wait for syncd to confirm.")
    var timeout = "10s"

    func validate() throws { _ = try parseTimeout(timeout) }

    func run() async throws {
        let client = try await options.client(forWriting: true)
        let wait = try parseTimeout(timeout)
        let emergencySet = Syscall.exists(client.lockDirectory.emergencyStop)
        if emergencySet && !clearEmergency {
            throw Failure("an emergency stop is set for \(client.repository.workTreeDisplay); clear it on purpose with `syncctl resume --clear-emergency`")
        }
        switch try await client.resume(clearEmergency: clearEmergency, timeout: wait) {
        case .notRunning:
            throw Failure("no syncd is running for \(client.repository.workTreeDisplay); nothing is paused now, so it commits normally when it starts", code: ExitStatus.notRunning)
        case .notConfirmed:
            throw Failure("syncd did not confirm within \(timeout)" + (client.stateProblem().map { ": \($0)" } ?? ""), code: ExitStatus.notConfirmed)
        case .confirmed: break
        }
        say(clearEmergency && emergencySet ? "emergency stop cleared; syncd resumed" : "resumed")
    }
}

struct EmergencyStop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emergency-stop",
        abstract: "Halt all of syncd's git activity now; persists across restarts until `syncctl resume --clear-emergency`.")
    @OptionGroup var options: WorkspaceOptions
    @Option(help: "Why, shown in status and logs.")
    var reason = "emergency stop with syncctl"
    @Option(help: "How long to wait for syncd to confirm.")
    var timeout = "10s"

    func validate() throws {
        _ = try parseTimeout(timeout)
        try checkReason(reason)
    }

    func run() async throws {
        let client = try await options.client(forWriting: true)
        let wait = try parseTimeout(timeout)
        let started = ContinuousClock.now
        switch try await client.emergencyStop(reason: reason, timeout: wait) {
        case .notRunning:
            throw Failure("no syncd is running for \(client.repository.workTreeDisplay); the emergency stop is recorded and holds when it starts", code: ExitStatus.notRunning)
        case .notConfirmed:
            throw Failure("syncd did not confirm within \(timeout); the stop is recorded", code: ExitStatus.notConfirmed)
        case .confirmed: break
        }
        let elapsed = ContinuousClock.now - started
        say("emergency stop confirmed in \(elapsed.wholeMilliseconds) ms: no git activity until `syncctl resume --clear-emergency`")
    }
}
