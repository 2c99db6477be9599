import Glibc
import Subprocess
import Synchronization
import SyncCore
import SyncSystem

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
/// - glibc keeps freed heap (`GLIBC_TUNABLES`, see `mallocTunables`): object writes do not
///   fault their zlib memory in again each time;
/// - systemd's notify and watchdog variables removed: a child must not talk to systemd for us;
/// - automatic gc and maintenance off (they detach and outlive the call);
/// - no hooks when `hooksPath` names a directory without any (`core.hooksPath`);
/// - its own process group: git and everything it starts (filters, hooks, ssh) are signalled
///   together, so a teardown leaves no orphan behind.
/// Arguments are bytes, so paths are never re-encoded. Read-only calls pass `readOnly: true`
/// (`GIT_OPTIONAL_LOCKS=0`: `git status` then leaves `.git/index` alone and makes no events).
public struct GitRunner: Sendable {
    public let workTree: [UInt8]
    public var executable: String
    /// `core.hooksPath` for every call (a directory with no hooks: none runs); nil leaves the
    /// repository's hooks in place.
    public var hooksPath: [UInt8]?
    /// Reports calls that run long and ends calls at a deadline; nil for none.
    public var monitor: GitMonitor?
    /// The user git runs as, when not the caller: root's `syncctl` in another user's workspace
    /// runs git as that user (git refuses a repository that belongs to someone else, and
    /// anything git writes there must stay the owner's).
    public var user: GitUser?

    public init(workTree: [UInt8], executable: String = "git", hooksPath: [UInt8]? = nil, monitor: GitMonitor? = nil) {
        self.workTree = workTree
        self.executable = executable
        self.hooksPath = hooksPath
        self.monitor = monitor
    }

    public static let baseArguments = ["-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "core.quotePath=false"]

    /// git deflates every object it writes with a fresh zlib stream (~256 KiB of state), and
    /// glibc gives that memory back to the kernel on each free and faults it in again on the
    /// next: staging 10,000 small files spent 0.45 s in the kernel, 0.10 s with the heap top
    /// kept (measured in BENCHMARKS.md). A git child keeps up to 16 MiB of freed heap instead.
    /// Tunables syncd itself was started with are passed on; its own trim_threshold, if set, wins.
    static let mallocTunables: String = {
        let keep = "glibc.malloc.trim_threshold=16777216"
        guard let inherited = getenv("GLIBC_TUNABLES").map({ String(cString: $0) }), !inherited.isEmpty else { return keep }
        return inherited.contains("glibc.malloc.trim_threshold") ? inherited : keep + ":" + inherited
    }()

    /// How long git gets after SIGTERM before swift-subprocess's final SIGKILL: git's signal
    /// handlers remove its lock files and exit at once, so in practice git is never SIGKILLed.
    static let terminationGrace: Duration = .seconds(3600)

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
        if let user {
            // The owner's own configuration (~/.gitconfig), not root's.
            environment["HOME"] = user.home
            environment["XDG_CONFIG_HOME"] = nil
            environment["USER"] = user.name
            environment["LOGNAME"] = user.name
        }
        environment["GLIBC_TUNABLES"] = Self.mallocTunables
        for (key, value) in extra { environment[Environment.Key(stringLiteral: key)] = value }
        // swift-subprocess strdup()s raw-byte arguments: each needs its NUL terminator.
        // Automatic gc stays off (it detaches and outlives the call) except for the one call that
        // runs maintenance on purpose with the user's own thresholds.
        var prefix = (userMaintenanceSettings ? ["-c", "core.quotePath=false"] : Self.baseArguments).map { Array($0.utf8) }
        if let hooksPath { prefix += [Array("-c".utf8), Array("core.hooksPath=".utf8) + hooksPath] }
        var allArguments = (prefix + arguments.map(\.bytes)).map { $0 + [0] }
        var program = executable
        if let user {
            // Through setpriv (util-linux), not swift-subprocess's own uid switch: that calls
            // setgroups() in the forked child of a threaded process, which can hang in glibc.
            program = "setpriv"
            allArguments = (user.setprivArguments + ["--", executable]).map { Array($0.utf8) + [0] } + allArguments
        }
        var options = PlatformOptions()
        // A process group of its own (setpgid(0, 0) at spawn): the teardown signals all of it.
        options.processGroupID = 0
        // On cancellation or at the monitor's deadline: SIGTERM to the group; git's own signal
        // handlers remove its lock files.
        options.teardownSequence = [.gracefulShutDown(toProcessGroup: true, allowedDurationToNextStep: Self.terminationGrace)]
        let configuration = Configuration(
            executable: .command(program),
            arguments: Arguments(allArguments),
            environment: .inherit.updating(environment),
            workingDirectory: FilePath(String(decoding: workTree, as: UTF8.self)),
            platformOptions: options
        )
        let commandLine = "git " + arguments.map(\.display).joined(separator: " ")
        let monitor = monitor
        let callID = monitor?.begin(Self.shortCommand(arguments))
        let child = ChildProcess()
        var stopped = false
        defer { if let callID { monitor?.end(callID, stopped: stopped) } }
        if let monitor, monitor.deadlinePassed {
            // Past the deadline nothing new starts.
            stopped = true
            throw stoppedError(commandLine, callID: callID)
        }
        do {
            var finished: (code: Int32, output: [UInt8], error: String)?
            var deadlineReached = false
            do {
                try await withThrowingTaskGroup(of: CallEvent.self) { group in
                    group.addTask {
                        let result = try await Subprocess.run(
                            configuration,
                            input: GitInput(bytes: input ?? []),
                            output: .bytes(limit: outputLimit),
                            error: .string(limit: 64 * 1024)
                        ) { execution in
                            child.pid.withLock { $0 = execution.processIdentifier.value }
                            if let callID { monitor?.started(callID, pid: execution.processIdentifier.value) }
                        }
                        let code: Int32
                        switch result.terminationStatus {
                        case .exited(let value): code = value
                        case .signaled(let signal): code = 128 + signal
                        }
                        return .finished(code: code, output: result.standardOutput, error: result.standardError)
                    }
                    if let monitor, let callID {
                        let workTree = workTree
                        group.addTask {
                            do {
                                try await monitor.watch(callID) { pid in Self.workingFile(of: pid, in: workTree) }
                                return .deadline
                            } catch {
                                return .watchEnded
                            }
                        }
                    }
                    for try await event in group {
                        switch event {
                        case .finished(let code, let output, let error):
                            finished = (code, output, error)
                            group.cancelAll()
                        case .deadline:
                            // Cancelling the call runs its teardown: SIGTERM to the group.
                            if finished == nil {
                                deadlineReached = true
                                group.cancelAll()
                            }
                        case .watchEnded:
                            break
                        }
                    }
                }
            } catch {
                if deadlineReached || Task.isCancelled { await child.reapLeftovers() }
                if deadlineReached {
                    stopped = true
                    throw stoppedError(commandLine, callID: callID)
                }
                throw error
            }
            if deadlineReached || Task.isCancelled { await child.reapLeftovers() }
            guard let finished else { throw CancellationError() }
            if deadlineReached && !acceptedExitCodes.contains(finished.code) {
                stopped = true
                throw stoppedError(commandLine, callID: callID)
            }
            let gitResult = GitResult(exitCode: finished.code, standardOutput: finished.output, standardError: finished.error)
            guard acceptedExitCodes.contains(finished.code) else {
                let firstLine = gitResult.standardError.split(separator: "\n").first.map(String.init) ?? ""
                throw SyncError(
                    Self.isDiskFull(gitResult.standardError) ? .diskFull : .git,
                    "`\(commandLine)` failed with exit code \(finished.code) in \(String(decoding: workTree, as: UTF8.self))"
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

    /// The error of a call ended at the monitor's deadline: which call, on which file, why.
    private func stoppedError(_ commandLine: String, callID: Int?) -> SyncError {
        let call = callID.flatMap { monitor?.call($0) }
        let seconds = call.map { (ContinuousClock.now - $0.started).components.seconds }
        let reason = monitor?.deadlineReason ?? ""
        return SyncError(
            .git,
            "`\(call?.command ?? commandLine)` was stopped" + (seconds.map { " after \($0) s" } ?? "")
                + (call?.path.map { " while it worked on \($0)" } ?? "")
                + " (SIGTERM to git and the processes it started)" + (reason.isEmpty ? "" : ": \(reason)"))
    }

    /// `git …` without the leading `-c key=value` settings: the command a person recognises.
    static func shortCommand(_ arguments: [GitArgument]) -> String {
        var rest = arguments[...]
        while rest.count >= 2, rest.first?.display == "-c" { rest = rest.dropFirst(2) }
        return "git " + rest.map(\.display).joined(separator: " ")
    }

    /// The working-tree file `pid` has open (outside `.git`), relative to `workTree`; nil when none.
    static func workingFile(of pid: Int32, in workTree: [UInt8]) -> String? {
        let prefix = workTree + [UInt8(ascii: "/")]
        for file in ProcessTable.openFiles(of: pid) where file.starts(with: prefix) {
            let relative = Array(file.dropFirst(prefix.count))
            if relative.split(separator: UInt8(ascii: "/")).contains(where: { $0.elementsEqual(".git".utf8) }) { continue }
            return String(decoding: relative, as: UTF8.self)
        }
        return nil
    }
}

/// What one child task of a monitored call reports.
private enum CallEvent: Sendable {
    case finished(code: Int32, output: [UInt8], error: String)
    /// The monitor's deadline passed while the call ran.
    case deadline
    /// The watch ended because the call did.
    case watchEnded
}

/// The git child of one call, once spawned.
private final class ChildProcess: Sendable {
    let pid = Mutex<Int32?>(nil)

    /// After a teardown (SIGTERM to the group, git gone): whatever git started and that ignored
    /// the SIGTERM (a filter, a hook) would be orphaned; it gets SIGKILL after 2 s. git itself
    /// has exited and been reaped by then, so this never kills git. The group's id cannot be
    /// reused while the group has members.
    func reapLeftovers() async {
        guard let group = pid.withLock({ $0 }) else { return }
        await Task {
            let clock = ContinuousClock()
            let end = clock.now.advanced(by: .seconds(2))
            while !ProcessTable.members(ofGroup: group, running: true).isEmpty {
                if clock.now >= end {
                    kill(-group, SIGKILL)
                    return
                }
                try? await clock.sleep(for: .milliseconds(50))
            }
        }.value
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
    public init(rawBytes: [UInt8]) { bytes = rawBytes }
    /// A pathspec that matches `path` and nothing else (no glob or magic characters).
    public static func literal(_ path: RepoPath) -> GitArgument { GitArgument(rawBytes: Array(":(literal)".utf8) + path.bytes) }
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

/// A user git runs as (see `GitRunner.user`), from the user database.
public struct GitUser: Sendable, Equatable {
    public var uid: uid_t
    public var gid: gid_t
    public var groups: [gid_t]
    public var name: String?
    public var home: String?

    /// setpriv's options that make its command run as this user.
    var setprivArguments: [String] {
        ["--reuid=\(uid)", "--regid=\(gid)", groups.isEmpty ? "--clear-groups" : "--groups=" + groups.map(String.init).joined(separator: ",")]
    }

    /// `uid` as the user database has it (its primary group, its groups, its home); a uid the
    /// database does not know runs with `gid` alone and no home.
    public static func lookUp(uid: uid_t, gid: gid_t) -> GitUser {
        guard let account = WorkspaceOwner.account(uid) else { return GitUser(uid: uid, gid: gid, groups: [gid], name: nil, home: nil) }
        return GitUser(uid: uid, gid: account.gid, groups: account.groups, name: account.name, home: account.home)
    }
}

/// The bytes a git call gets on its standard input. A git that exits before it has read them
/// all (it failed at once, or was killed) makes the write fail with EPIPE. That is not an error
/// of its own: git's exit code and its stderr say what happened. swift-subprocess's own array
/// input would leave the pipe open after a failed write, which it treats as a fatal error.
struct GitInput: InputProtocol {
    let bytes: [UInt8]

    func write(with writer: StandardInputWriter) async throws {
        guard !bytes.isEmpty else { return }
        do {
            _ = try await writer.write(bytes)
        } catch {
            // git stopped reading; the pipe is closed by the caller's finish().
        }
    }
}
