import FoundationEssentials
import Glibc
import SyncCore
import SyncGit
import SyncSystem

/// What `syncctl` needs: find the workspace's files and its running syncd, write a request,
/// signal syncd, and wait until state.json confirms it.
public struct ControlClient: Sendable {
    public let repository: Repository
    public let lockDirectory: LockDirectory
    public let stateDirectory: [UInt8]

    public static func open(at path: String) async throws -> ControlClient {
        let repository = try await Repository.discover(at: path, asOwner: true)
        let configured = try await repository.git.run(
            ["config", "--get", "syncd.lockDir"], readOnly: true, acceptedExitCodes: [0, 1])
        let value = configured.text
        return ControlClient(
            repository: repository,
            lockDirectory: LockDirectory.resolve(repository, configured: configured.exitCode == 0 ? value : nil),
            stateDirectory: SyncService.stateDirectory(of: repository))
    }

    /// Creates syncd's state and lock directories and the sync lock when syncd has not run here
    /// yet, so a request made before the first start is recorded (it applies when syncd starts).
    /// Made by root for another user's workspace, they are given to the owner of the git directory:
    /// a root-owned directory would lock the owner's syncd out.
    public func prepareForWriting() throws {
        let owner = try? Syscall.lstat(repository.gitDir)
        func giveAway(_ path: [UInt8]) {
            guard getuid() == 0, let owner, owner.st_uid != 0 else { return }
            _ = Syscall.withCStringResult(path) { lchown($0, owner.st_uid, owner.st_gid) }
        }
        for directory in [stateDirectory, lockDirectory.path] where !Syscall.exists(directory) {
            do {
                try Syscall.makeDirectory(directory)
            } catch {
                throw SyncError(.syscall, "cannot create \(Syscall.display(directory)) for syncd's control files: check the permissions of its parent (syncctl runs as uid \(getuid()))", cause: error)
            }
            giveAway(directory)
        }
        if !Syscall.exists(lockDirectory.syncLock) {
            _ = try? FileLock(path: lockDirectory.syncLock)
            giveAway(lockDirectory.syncLock)
        }
    }

    /// The pid of the syncd that holds this workspace's instance lock, if one runs.
    public func runningPid() -> Int32? {
        let lock = SyncService.instanceLock(stateDirectory)
        guard let bytes = try? Syscall.readFile(lock, limit: 64),
            let pid = Int32(String(decoding: bytes, as: UTF8.self).filter(\.isNumber)), pid > 0
        else { return nil }
        // The pid file may be stale (syncd killed): the pid must still have the lock file open.
        return ProcessTable.processesHolding(lock, among: [pid]).isEmpty ? nil : pid
    }

    /// state.json, as syncd wrote it; nil when there is none or it cannot be read.
    public func state() -> StatusSnapshot? {
        guard let bytes = try? Syscall.readFile(stateDirectory + Array("/state.json".utf8), limit: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(StatusSnapshot.self, from: Data(bytes))
    }

    /// Why state.json cannot be read although syncd runs: something else is in its place.
    public func stateProblem() -> String? {
        let path = stateDirectory + Array("/state.json".utf8)
        guard let info = try? Syscall.lstat(path), info.st_mode & S_IFMT != S_IFREG else { return nil }
        return "syncd cannot write its status file: " + ControlFile.notAFile(path, .notRegular(path, kind: Syscall.fileKind(info.st_mode & S_IFMT)))
    }

    /// Tells the running syncd to re-read the control files. False when none runs.
    @discardableResult
    public func notify() -> Bool {
        guard let pid = runningPid() else { return false }
        return kill(pid, SIGUSR1) == 0
    }

    /// Waits until `confirmed(state)` holds, up to `timeout`.
    public func waitForState(timeout: Duration, _ confirmed: (StatusSnapshot) -> Bool) async -> StatusSnapshot? {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: timeout)
        while clock.now < end {
            if let state = state(), confirmed(state) { return state }
            try? await clock.sleep(for: .milliseconds(20))
        }
        return nil
    }

    /// Who runs this command, for the `by` field of requests.
    public static var requester: String {
        let user = getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid\(getuid())"
        return "\(user)@\(ProcessTable.hostName) (pid \(getpid()))"
    }
}

/// A JSON value, for reading journal lines without a schema.
public enum JSONValue: Codable, Sendable, Equatable, CustomStringConvertible {
    case string(String), number(Double), bool(Bool), null, array([JSONValue]), object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        // Strings first, then numbers: most values are, and each failed try costs an error.
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .null: try container.encodeNil()
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    public var string: String? { if case .string(let value) = self { value } else { nil } }
    public var number: Double? { if case .number(let value) = self { value } else { nil } }
    public var bool: Bool? { if case .bool(let value) = self { value } else { nil } }

    public var description: String {
        switch self {
        case .string(let value): value
        case .number(let value): value == value.rounded() ? String(Int64(value)) : String(value)
        case .bool(let value): value ? "true" : "false"
        case .null: "null"
        case .array(let values): "[" + values.map(\.description).joined(separator: ", ") + "]"
        case .object(let values): "{" + values.keys.sorted().map { "\($0): \(values[$0]!)" }.joined(separator: ", ") + "}"
        }
    }
}
