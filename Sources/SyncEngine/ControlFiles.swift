import FoundationEssentials
import Glibc
import SyncCore
import SyncGit
import SyncSystem

/// The lock directory: the files syncd, `syncctl` and writers use to coordinate (docs/PROTOCOL.md).
/// By default it is syncd's state directory inside the git directory; `syncd.lockDir` moves it.
public struct LockDirectory: Sendable {
    public let path: [UInt8]

    public var syncLock: [UInt8] { path + Array("/sync.lock".utf8) }
    /// The writer pause lease: writers wait while an unexpired lease of a live holder exists.
    public var writerLease: [UInt8] { path + Array("/writer-pause.json".utf8) }
    /// The daemon pause (`syncctl pause`), persistent across restarts.
    public var daemonPause: [UInt8] { path + Array("/paused.json".utf8) }
    /// The emergency stop, persistent until cleared.
    public var emergencyStop: [UInt8] { path + Array("/emergency-stop.json".utf8) }
    /// The last control request (its serial is confirmed in state.json).
    public var controlRequest: [UInt8] { path + Array("/control-request.json".utf8) }
    /// The last `syncctl sync` request.
    public var syncRequest: [UInt8] { path + Array("/sync-request.json".utf8) }
    /// Named writers append a line here before they release the sync lock; syncd takes the
    /// names into its next commit's `Syncd-Writer` trailer.
    public var writerLog: [UInt8] { path + Array("/writers.jsonl".utf8) }

    public var display: String { Syscall.display(path) }

    public init(path: [UInt8]) { self.path = path }

    /// `syncd.lockDir` when set (relative to the top of the working tree), else `.git/syncd`.
    public static func resolve(_ repository: Repository, configured: String?) -> LockDirectory {
        guard let configured, !configured.isEmpty else {
            return LockDirectory(path: SyncService.stateDirectory(of: repository))
        }
        var bytes = Array(configured.utf8)
        while bytes.count > 1, bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
        if bytes.first != UInt8(ascii: "/") { bytes = repository.workTree + [UInt8(ascii: "/")] + bytes }
        return LockDirectory(path: bytes)
    }

    /// The lock directory as a path inside the working tree, when it is there (it is then kept out
    /// of commits).
    public func inside(_ repository: Repository) -> RepoPath? {
        let prefix = repository.workTree + [UInt8(ascii: "/")]
        guard path.starts(with: prefix), path.count > prefix.count else { return nil }
        return RepoPath(bytes: Array(path[prefix.count...]))
    }

    /// Creates the directory if needed and checks that this process can write there.
    public func prepare() throws {
        do {
            try Syscall.makeDirectory(path)
        } catch {
            throw SyncError(.syscall, "cannot create the lock directory \(display): check the permissions of its parent, or set syncd.lockDir", cause: error)
        }
        let writable = Syscall.withCStringResult(path) { access($0, W_OK) } == 0
        guard writable else {
            throw SyncError(
                .syscall,
                "the lock directory \(display) is not writable by this user (uid \(getuid())): "
                    + "fix its owner or mode (chmod u+w), or point syncd.lockDir elsewhere")
        }
    }
}

/// `paused.json`: syncd collects changes but neither commits nor syncs.
public struct DaemonPause: Codable, Sendable, Equatable {
    public var reason: String
    public var by: String
    /// Seconds since the epoch.
    public var since: Double
    /// nil: until `syncctl resume`.
    public var until: Double?
    public var serial: UInt64
    public init(reason: String, by: String, since: Double, until: Double?, serial: UInt64) {
        self.reason = reason
        self.by = by
        self.since = since
        self.until = until
        self.serial = serial
    }
}

/// `emergency-stop.json`: no git activity at all until cleared (`syncctl resume --clear-emergency`).
public struct EmergencyStop: Codable, Sendable, Equatable {
    public var reason: String
    public var by: String
    public var since: Double
    public var serial: UInt64
    public init(reason: String, by: String, since: Double, serial: UInt64) {
        self.reason = reason
        self.by = by
        self.since = since
        self.serial = serial
    }
}

/// `control-request.json` and `sync-request.json`: the last request from `syncctl`, by serial.
public struct ControlRequest: Codable, Sendable, Equatable {
    public var command: String
    public var serial: UInt64
    public var by: String
    /// `squash`: the message of the folded commit, and the commit after which to fold.
    public var message: String?
    public var since: String?
    public init(command: String, serial: UInt64, by: String, message: String? = nil, since: String? = nil) {
        self.command = command
        self.serial = serial
        self.by = by
        self.message = message
        self.since = since
    }
}

/// `writer-pause.json`: syncd asks writers to pause (before it snapshots while writers keep the
/// shared lock busy, and before it changes the working tree). Writers honour it only while it is
/// unexpired and its holder is alive, so a dead syncd cannot wedge them.
public struct WriterLease: Codable, Sendable, Equatable {
    public var holder: ProcessIdentity
    public var reason: String
    public var createdAt: Double
    public var expiresAt: Double

    enum CodingKeys: String, CodingKey {
        case holder, reason
        case createdAt = "created_at"
        case expiresAt = "expires_at"
    }

    public init(holder: ProcessIdentity, reason: String, createdAt: Double, expiresAt: Double) {
        self.holder = holder
        self.reason = reason
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }

    /// In force at `now` (seconds since the epoch): not expired, holder alive.
    public func isActive(at now: Double) -> Bool {
        now < expiresAt && holder.isAlive
    }
}

/// A control file with text people typed (reasons, names): anyone who can write the lock directory
/// can put anything there, so what is read is made one bounded printable line before it is shown.
public protocol UserText {
    mutating func sanitize()
}

extension DaemonPause: UserText {
    public mutating func sanitize() {
        reason = OneLine.make(reason, limit: ControlFile.maxReason)
        by = OneLine.make(by, limit: 200)
    }
}

extension EmergencyStop: UserText {
    public mutating func sanitize() {
        reason = OneLine.make(reason, limit: ControlFile.maxReason)
        by = OneLine.make(by, limit: 200)
    }
}

extension WriterLease: UserText {
    public mutating func sanitize() { reason = OneLine.make(reason, limit: ControlFile.maxReason) }
}

extension ControlRequest: UserText {
    public mutating func sanitize() {
        command = OneLine.make(command, limit: 200)
        by = OneLine.make(by, limit: 200)
        since = since.map { OneLine.make($0, limit: 100) }
        // A commit message may have lines; only control characters other than newlines go.
        message = message.map { String(String.UnicodeScalarView($0.unicodeScalars.filter { $0 == "\n" || $0.value >= 0x20 && $0.value != 0x7F }).prefix(4000)) }
    }
}

/// `writers.jsonl`: the names of writers that held the sync lock since syncd's last snapshot.
/// A writer appends one line (`{"writer":"NAME","pid":N,"time":"…"}`) with O_APPEND before it
/// releases the shared lock; syncd, holding the lock exclusively (so no writer is mid-session),
/// takes the file away and reads it. Lines are small, so concurrent appends never interleave.
public enum WriterLog {
    public static let maxName = 100

    public static func append(name: String, to directory: LockDirectory) throws {
        var line = JSONLine()
        line.add("writer", OneLine.make(name, limit: maxName))
        line.add("pid", Int(getpid()))
        line.add("time", WallClock.rfc3339())
        let fd: Int32
        do {
            fd = try Syscall.openRegular(directory.writerLog, flags: O_WRONLY | O_APPEND | O_CREAT, mode: 0o644)
        } catch {
            throw SyncError(.syscall, "cannot record the writer's name in \(Syscall.display(directory.writerLog))", cause: error)
        }
        defer { Syscall.close(fd) }
        do {
            try Syscall.writeAll(fd, Array((line.text + "\n").utf8))
        } catch {
            throw SyncError(.syscall, "cannot record the writer's name in \(Syscall.display(directory.writerLog))", cause: error)
        }
    }

    /// The names recorded since the last call, in order, each once; the file is taken away
    /// (renamed, read, removed), so a name is never counted twice. Call with the lock held.
    public static func take(from directory: LockDirectory) -> [String] {
        let taken = directory.writerLog + Array(".taken".utf8)
        guard (try? Syscall.rename(directory.writerLog, to: taken)) != nil else { return [] }
        defer { try? Syscall.unlink(taken) }
        guard let bytes = try? Syscall.readFile(taken, limit: 1 << 20) else { return [] }
        var names: [String] = []
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            guard let record = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line)),
                case .string(let name) = record["writer"]
            else { continue }
            let clean = OneLine.make(name, limit: maxName)
            if !clean.isEmpty, !names.contains(clean) { names.append(clean) }
        }
        return names
    }
}

/// Reading and writing the control files, with a clear outcome for every broken input.
public enum ControlFile {
    /// The longest reason shown (and accepted by `syncctl`), in characters.
    public static let maxReason = 1000

    /// Reads a control file with user text and sanitizes it (`UserText`).
    public static func read<Value: Decodable & UserText>(_ type: Value.Type, at path: [UInt8]) -> Read<Value> {
        let raw: Read<Value> = readRaw(type, at: path)
        guard case .value(var value) = raw else { return raw }
        value.sanitize()
        return .value(value)
    }

    public static func read<Value: Decodable>(_ type: Value.Type, at path: [UInt8]) -> Read<Value> {
        readRaw(type, at: path)
    }

    public enum Read<Value> {
        case absent
        case value(Value)
        /// Unreadable or not what it should be; the message says which file and what to do.
        case broken(String)
    }

    private static func readRaw<Value: Decodable>(_ type: Value.Type, at path: [UInt8]) -> Read<Value> {
        let bytes: [UInt8]
        do {
            // One byte more than the limit: a longer file is reported, not silently cut short.
            bytes = try Syscall.readFile(path, limit: maxBytes + 1)
        } catch {
            if error.errno == Errno(ENOENT) { return .absent }
            if error.errno == Errno(ELOOP) {
                return .broken("\(Syscall.display(path)) is a symlink; syncd never follows one there: remove it (rm \(Syscall.display(path)))")
            }
            if error.isNotRegularFile || error.errno == Errno(EISDIR) {
                return .broken(notAFile(path, error))
            }
            return .broken("cannot read \(Syscall.display(path)): \(error)")
        }
        guard bytes.count <= maxBytes else {
            return .broken("\(Syscall.display(path)) is larger than \(maxBytes / 1024) KiB, so it is not one of syncd's: remove it (rm \(Syscall.display(path)))")
        }
        do {
            return .value(try JSONDecoder().decode(Value.self, from: Data(bytes)))
        } catch {
            return .broken("\(Syscall.display(path)) is not valid (\(bytes.count) bytes, \(String(describing: error).prefix(120))): remove it (rm \(Syscall.display(path)))")
        }
    }

    /// The largest control file syncd reads (user text in them is bounded far below this).
    public static let maxBytes = 64 * 1024

    /// A directory, FIFO, socket or device in the place of a control file: what to do about it.
    static func notAFile(_ path: [UInt8], _ error: SyscallError) -> String {
        let shown = Syscall.display(path)
        let kind = error.isNotRegularFile ? (error.detail ?? "not a regular file") : "is a directory, not a regular file"
        let fix = kind.contains("directory") ? "rmdir \(shown) (or rm -r, after looking inside)" : "rm \(shown)"
        return "\(shown) \(kind), so it cannot be syncd's control file: remove it (\(fix)); syncd never blocks on it or follows it"
    }

    public static func write<Value: Encodable>(_ value: Value, to path: [UInt8]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(value)
        // Written by root (`sudo syncctl pause`) into a user's workspace: the file is the
        // directory owner's, like everything else syncd keeps there.
        var owner: (uid_t, gid_t)?
        if geteuid() == 0, let directory = try? Syscall.lstat(AtomicFile.parentDirectory(of: path)), directory.st_uid != 0 {
            owner = (directory.st_uid, directory.st_gid)
        }
        do {
            try AtomicFile.write(path, Array(data) + [UInt8(ascii: "\n")], owner: owner)
        } catch {
            if error.errno == Errno(EISDIR) || error.errno == Errno(ENOTEMPTY) || error.isNotRegularFile {
                throw SyncError(.syscall, "cannot write \(Syscall.display(path)): " + notAFile(path, error))
            }
            throw SyncError(.syscall, "cannot write \(Syscall.display(path))", cause: error)
        }
    }

    /// Removes a control file. A FIFO or socket there is removed like a file; an empty directory is
    /// removed too (it can only be a mistake); a directory with contents is left for a person.
    public static func remove(_ path: [UInt8]) throws {
        do {
            try Syscall.unlink(path)
        } catch {
            if error.errno == Errno(EISDIR) || error.errno == Errno(EPERM) {
                if Syscall.withCStringResult(path, { rmdir($0) }) == 0 { return }
                throw SyncError(
                    .syscall,
                    "cannot remove \(Syscall.display(path)): it is a directory with contents, not syncd's control file; look inside, then rm -r it")
            }
            throw SyncError(.syscall, "cannot remove \(Syscall.display(path))", cause: error)
        }
    }

    /// Seconds since the epoch, now.
    public static func now() -> Double {
        let time = WallClock.now()
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// A serial for a new request: microseconds since the epoch (increasing across processes, and
    /// below 2^53 so every JSON reader keeps it exact).
    public static func newSerial() -> UInt64 {
        let time = WallClock.now()
        return UInt64(time.tv_sec) * 1_000_000 + UInt64(time.tv_nsec / 1000)
    }
}
