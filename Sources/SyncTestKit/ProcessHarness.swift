import Foundation
import Subprocess
import Synchronization

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Runs one of the project's binaries (or any program) in the background, recording its stdout
/// lines and stderr, so an integration test can wait for output, send signals and check the exit.
public final class ProcessHarness: Sendable {
    public enum Exit: Sendable, Equatable {
        case exited(Int32)
        case signaled(Int32)
    }

    private struct State {
        var stdout = ""
        var stderr = ""
        var pid: pid_t?
        var finished: Exit?
    }

    private final class Store: Sendable {
        let state = Mutex(State())
    }

    private let store = Store()
    private let task: Task<Exit, any Error>

    /// The directory holding the built products (`syncd`, `syncctl`): next to the test bundle, or
    /// `SYNCD_BUILD_DIR`.
    public static var buildDirectory: String {
        if let configured = ProcessInfo.processInfo.environment["SYNCD_BUILD_DIR"] { return configured }
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = bundle.deletingLastPathComponent()
        // swift-testing may run from inside the .xctest bundle directory.
        while directory.path != "/", !FileManager.default.fileExists(atPath: directory.appendingPathComponent("syncd").path) {
            directory = directory.deletingLastPathComponent()
        }
        return directory.path
    }

    public static func product(_ name: String) -> String { buildDirectory + "/" + name }

    public init(_ executable: String, _ arguments: [String], workingDirectory: String? = nil, environment: [String: String?] = [:]) {
        let store = store
        var overrides: [Environment.Key: String?] = [:]
        for (key, value) in environment { overrides[Environment.Key(stringLiteral: key)] = value }
        let configuration = Configuration(
            executable: .path(FilePath(executable)),
            arguments: Arguments(arguments),
            environment: .inherit.updating(overrides),
            workingDirectory: workingDirectory.map { FilePath($0) }
        )
        task = Task {
            let result = try await Subprocess.run(configuration, input: .none, output: .sequence, error: .sequence) { execution in
                store.state.withLock { $0.pid = execution.processIdentifier.value }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await chunk in execution.standardOutput {
                            let text = chunk.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
                            store.state.withLock { $0.stdout += text }
                        }
                    }
                    group.addTask {
                        for try await chunk in execution.standardError {
                            let text = chunk.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
                            store.state.withLock { $0.stderr += text }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            let exit: Exit
            switch result.terminationStatus {
            case .exited(let code): exit = .exited(code)
            case .signaled(let signal): exit = .signaled(signal)
            }
            store.state.withLock { $0.finished = exit }
            return exit
        }
    }

    /// How the process ended, once it has.
    public var finished: Exit? { store.state.withLock { $0.finished } }

    /// Throws when the process has already ended: waiting for its output is then pointless.
    private func checkRunning(_ what: String) throws {
        if let finished {
            throw TestFailure("the process ended (\(finished)) before \(what); stderr: \(stderr.suffix(2000))")
        }
    }

    /// The child's process id, once it has started.
    public var pid: pid_t? { store.state.withLock { $0.pid } }

    public var stdout: String { store.state.withLock { $0.stdout } }
    public var stderr: String { store.state.withLock { $0.stderr } }
    /// Complete stdout lines so far.
    public var lines: [String] {
        let text = stdout
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // the part after the last newline is incomplete (or empty)
        return lines
    }

    /// Waits until a stdout line satisfies `predicate`; returns it.
    @discardableResult
    public func waitForLine(_ what: String, within limit: Duration = .seconds(30), _ predicate: @escaping @Sendable (String) -> Bool) async throws -> String {
        try await waitUntil(limit, "\(what); stderr so far: \(stderr.suffix(2000))") { [self] in
            if lines.contains(where: predicate) { return true }
            try checkRunning(what)
            return false
        }
        return lines.first(where: predicate)!
    }

    public func waitForStderr(_ needle: String, within limit: Duration = .seconds(30)) async throws {
        try await waitUntil(limit, "stderr containing \(needle); stderr so far: \(stderr.suffix(2000))") { [self] in
            if stderr.contains(needle) { return true }
            try checkRunning("stderr contained \(needle)")
            return false
        }
    }

    public func signal(_ number: Int32) {
        if let pid { kill(pid, number) }
    }

    /// Waits for the process to exit by itself.
    public func exit(within limit: Duration = .seconds(30)) async throws -> Exit {
        let task = task
        return try await withDeadline(limit, "process exit; stderr: \(stderr.suffix(2000))") { try await task.value }
    }

    /// SIGTERM, then waits for the exit.
    public func terminate(within limit: Duration = .seconds(30)) async throws -> Exit {
        signal(SIGTERM)
        return try await exit(within: limit)
    }
}
