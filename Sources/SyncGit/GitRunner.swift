import Subprocess
import SyncCore

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// The outcome of one git child process.
public struct GitResult: Sendable {
    public var exitCode: Int32
    public var standardOutput: [UInt8]
    public var standardError: String

    public init(exitCode: Int32, standardOutput: [UInt8], standardError: String) {
        self.exitCode = exitCode
        self.standardOutput = standardOutput
        self.standardError = standardError
    }

    /// stdout split at NUL bytes (the `-z` format), empty trailing field dropped.
    public var nulSeparatedFields: [[UInt8]] {
        var fields = standardOutput.split(separator: 0, omittingEmptySubsequences: false).map(Array.init)
        if fields.last?.isEmpty == true { fields.removeLast() }
        return fields
    }

}

/// The one way syncd runs git: as a child process through swift-subprocess, in the workspace, with
/// a fixed, safe environment:
/// - `GIT_TERMINAL_PROMPT=0` and ssh in batch mode: never wait for a password;
/// - `LC_ALL=C`: messages syncd parses are stable;
/// - systemd's notify and watchdog variables removed: a child must not talk to systemd for us;
/// - automatic gc and maintenance off (they detach and outlive the call).
/// Arguments are bytes, so paths are never re-encoded. Read-only calls pass `readOnly: true`
/// (`GIT_OPTIONAL_LOCKS=0`: `git status` then leaves `.git/index` alone and makes no events).
public struct GitRunner: Sendable {
    public let workTree: [UInt8]
    public var executable: String

    public init(workTree: [UInt8], executable: String = "git") {
        self.workTree = workTree
        self.executable = executable
    }

    public static let baseArguments = ["-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "core.quotePath=false"]

    /// Runs `git <arguments>`; throws `SyncError(.git)` unless the exit code is in `acceptedExitCodes`.
    public func run(
        _ arguments: [GitArgument],
        input: [UInt8]? = nil,
        readOnly: Bool = false,
        acceptedExitCodes: Set<Int32> = [0],
        outputLimit: Int = 512 * 1024 * 1024,
        environment extra: [String: String] = [:],
        userMaintenanceSettings: Bool = false
    ) async throws -> GitResult {
        var environment: [Environment.Key: String?] = [
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
            "LC_ALL": "C",
            "NOTIFY_SOCKET": nil,
            "WATCHDOG_PID": nil,
            "WATCHDOG_USEC": nil,
        ]
        if readOnly { environment["GIT_OPTIONAL_LOCKS"] = "0" }
        for (key, value) in extra { environment[Environment.Key(stringLiteral: key)] = value }
        // swift-subprocess strdup()s raw-byte arguments: each needs its NUL terminator.
        // Automatic gc stays off (it detaches and outlives the call) except for the one call that
        // runs maintenance on purpose with the user's own thresholds.
        let base = userMaintenanceSettings ? ["-c", "core.quotePath=false"] : Self.baseArguments
        let allArguments = (base.map { Array($0.utf8) } + arguments.map(\.bytes)).map { $0 + [0] }
        var options = PlatformOptions()
        // On cancellation: SIGTERM, then wait; git's own signal handlers remove its lock files.
        options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: .seconds(5))]
        let configuration = Configuration(
            executable: .name(executable),
            arguments: Arguments(allArguments),
            environment: .inherit.updating(environment),
            workingDirectory: FilePath(String(decoding: workTree, as: UTF8.self)),
            platformOptions: options
        )
        let commandLine = "git " + arguments.map(\.display).joined(separator: " ")
        do {
            let result = try await Subprocess.run(
                configuration,
                input: .array(input ?? []),
                output: .bytes(limit: outputLimit),
                error: .string(limit: 64 * 1024)
            )
            let code: Int32
            switch result.terminationStatus {
            case .exited(let value): code = value
            case .signaled(let signal): code = 128 + signal
            }
            let gitResult = GitResult(
                exitCode: code,
                standardOutput: result.standardOutput,
                standardError: result.standardError
            )
            guard acceptedExitCodes.contains(code) else {
                let firstLine = gitResult.standardError.split(separator: "\n").first.map(String.init) ?? ""
                throw SyncError(
                    Self.isDiskFull(gitResult.standardError) ? .diskFull : .git,
                    "`\(commandLine)` failed with exit code \(code) in \(String(decoding: workTree, as: UTF8.self))"
                        + (firstLine.isEmpty ? "" : ": \(firstLine)")
                )
            }
            return gitResult
        } catch let error as SyncError {
            throw error
        } catch let error as CancellationError {
            throw error
        } catch {
            throw SyncError(
                .git,
                "could not run `\(commandLine)` in \(String(decoding: workTree, as: UTF8.self)): is git installed and on PATH?",
                cause: UnderlyingError(error)
            )
        }
    }
}

extension GitRunner {
    /// True when git's message says the disk (or quota) is full.
    public static func isDiskFull(_ standardError: String) -> Bool {
        standardError.contains("No space left on device") || standardError.contains("Out of diskspace")
            || standardError.contains("Disk quota exceeded")
    }
}

/// One argument: text, or raw path bytes.
public struct GitArgument: Sendable, ExpressibleByStringInterpolation {
    public let bytes: [UInt8]
    public init(_ text: String) { bytes = Array(text.utf8) }
    public init(stringLiteral value: String) { bytes = Array(value.utf8) }
    public init(path: RepoPath) { bytes = path.bytes }
    public init(rawBytes: [UInt8]) { bytes = rawBytes }
    var display: String { String(decoding: bytes, as: UTF8.self) }
}

extension GitResult {
    /// stdout as text without the trailing newline (hashes, single values).
    public var text: String {
        var bytes = standardOutput[...]
        while bytes.last == UInt8(ascii: "\n") { bytes = bytes.dropLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}
