import Glibc
import SyncCore

/// A kernel `flock(2)` lock on a file that is never deleted. The kernel releases it when the last
/// descriptor closes, so a crashed holder (kill -9 included) can never leave it stale. The file
/// is opened with `O_NOFOLLOW | O_CLOEXEC`: a symlink planted in its place is refused, and no
/// child process (git) inherits the lock.
public final class FileLock: @unchecked Sendable {
    // @unchecked: `fd` is immutable; flock calls on it are thread-safe in the kernel.
    public enum Kind: Sendable {
        case shared, exclusive
        var operation: Int32 { self == .shared ? LOCK_SH : LOCK_EX }
    }

    public let path: [UInt8]
    private let fd: Int32

    public init(path: [UInt8]) throws(SyscallError) {
        self.path = path
        fd = try Syscall.openRegular(path, flags: O_RDWR | O_CREAT, mode: 0o644)
    }

    deinit { Syscall.close(fd) }

    /// Takes the lock if it is free now; false when another process holds a conflicting one.
    public func tryLock(_ kind: Kind) throws(SyscallError) -> Bool {
        while true {
            if flock(fd, kind.operation | LOCK_NB) == 0 { return true }
            let code = Glibc.errno
            if code == EINTR { continue }
            if code == EWOULDBLOCK { return false }
            throw SyscallError(call: "flock", path: Syscall.display(path), errno: Errno(code))
        }
    }

    public func unlock() {
        _ = flock(fd, LOCK_UN)
    }

    /// The path still names the file this lock is on. False when the file (or its directory) was
    /// deleted or replaced: other processes that open the path now lock another file.
    public var isIntact: Bool {
        guard let held = try? Syscall.fstat(fd), let now = try? Syscall.lstat(path) else { return false }
        return held.st_dev == now.st_dev && held.st_ino == now.st_ino
    }

    /// The file's first `limit` bytes (a holder's pid, for messages); empty when unreadable.
    public func contents(limit: Int) -> [UInt8] {
        _ = lseek(fd, 0, SEEK_SET)
        return (try? Syscall.readAll(fd, limit: limit)) ?? []
    }

    /// Replaces the file's contents (best effort: the lock matters, not the text).
    public func replaceContents(_ bytes: [UInt8]) {
        _ = ftruncate(fd, 0)
        _ = lseek(fd, 0, SEEK_SET)
        try? Syscall.writeAll(fd, bytes)
    }
}

/// A process named so that a reused pid or a reboot cannot impersonate it: pid, start time in
/// clock ticks since boot (/proc/PID/stat field 22) and the boot id.
public struct ProcessIdentity: Codable, Sendable, Equatable {
    public var pid: Int32
    public var startTime: UInt64
    public var bootID: String

    public init(pid: Int32, startTime: UInt64, bootID: String) {
        self.pid = pid
        self.startTime = startTime
        self.bootID = bootID
    }

    enum CodingKeys: String, CodingKey {
        case pid
        case startTime = "start_time"
        case bootID = "boot_id"
    }

    /// This process.
    public static func current() -> ProcessIdentity {
        let pid = getpid()
        return ProcessIdentity(pid: pid, startTime: startTime(of: pid) ?? 0, bootID: bootID())
    }

    /// True while the very process it names runs: same boot, same pid, same start time.
    public var isAlive: Bool {
        guard bootID == Self.bootID(), let started = Self.startTime(of: pid) else { return false }
        return started == startTime
    }

    public static func bootID() -> String {
        let bytes = (try? Syscall.readSmallFile("/proc/sys/kernel/random/boot_id")) ?? []
        return String(decoding: bytes, as: UTF8.self).filter { !$0.isWhitespace }
    }

    /// Field 22 of /proc/PID/stat (after the parenthesised command name, which may hold spaces).
    public static func startTime(of pid: Int32) -> UInt64? {
        guard pid > 0, let stat = try? Syscall.readSmallFile("/proc/\(pid)/stat"),
            let close = stat.lastIndex(of: UInt8(ascii: ")"))
        else { return nil }
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
        // fields[0] is field 3 (state); field 22 is fields[19].
        guard fields.count > 19 else { return nil }
        return UInt64(String(decoding: fields[19], as: UTF8.self))
    }
}
