import Glibc
import SyncCore

/// A failed system call: which call, on which path, and the errno it returned.
public struct SyscallError: Error, Sendable, CustomStringConvertible {
    public let call: String
    public let path: String?
    public let errno: Errno
    /// Said instead of errno's text when the call worked but the file is not what it must be.
    public let detail: String?

    public init(call: String, path: String?, errno: Errno, detail: String? = nil) {
        self.call = call
        self.path = path
        self.errno = errno
        self.detail = detail
    }

    /// A path that exists but is a directory, FIFO, socket or device where a regular file must be.
    public static func notRegular(_ path: [UInt8], kind: String) -> SyscallError {
        SyscallError(call: "open", path: Syscall.display(path), errno: Errno(EINVAL), detail: "is \(kind), not a regular file")
    }

    /// A directory, FIFO, socket or device where a regular file must be (see `notRegular`).
    public var isNotRegularFile: Bool { detail != nil }

    public var description: String {
        if let path, let detail { return "\(path) \(detail)" }
        if let path { return "\(call)(\(path)): \(errno)" }
        return "\(call): \(errno)"
    }
}

/// The one place syncd talks to the kernel through raw calls. Each wrapper retries EINTR, reads
/// errno at once, and throws a `SyscallError` that names the call and the path.
public enum Syscall {
    /// Runs `body` until it returns something other than -1 with EINTR. Returns the value, or throws
    /// the errno of the failing call.
    @inlinable
    public static func retrying<T: FixedWidthInteger>(
        _ call: String,
        path: @autoclosure () -> String? = nil,
        _ body: () -> T
    ) throws(SyscallError) -> T {
        while true {
            let result = body()
            if result != -1 { return result }
            let code = Glibc.errno
            if code == EINTR { continue }
            throw SyscallError(call: call, path: path(), errno: Errno(code))
        }
    }

    /// Calls `body` with a NUL-terminated copy of `bytes`.
    @inlinable
    public static func withCString<R>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) throws(SyscallError) -> R)
        throws(SyscallError) -> R
    {
        var terminated = bytes
        terminated.append(0)
        return try terminated.withUnsafeBufferPointer { (buffer) throws(SyscallError) -> R in
            // `terminated` holds at least the NUL, so the buffer has a base address.
            try buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                (pointer) throws(SyscallError) -> R in try body(pointer)
            }
        }
    }

    /// Opens a file that must be a regular file, such that nothing can make the call block: a FIFO
    /// (or device) planted at the path is opened with O_NONBLOCK and then refused, as are a
    /// directory and a symlink (O_NOFOLLOW). Control files, locks, the journal and state go
    /// through here, because anyone who can write the directory can plant one.
    public static func openRegular(_ path: [UInt8], flags: Int32, mode: mode_t = 0) throws(SyscallError) -> Int32 {
        let fd = try open(path, flags: flags | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY, mode: mode)
        let info: stat
        do {
            info = try fstat(fd)
        } catch {
            close(fd)
            throw error
        }
        let type = info.st_mode & S_IFMT
        guard type == S_IFREG else {
            close(fd)
            throw SyscallError.notRegular(path, kind: fileKind(type))
        }
        // Regular files ignore O_NONBLOCK; clearing it keeps later reads and writes plain.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }

    /// "a directory", "a FIFO", … for messages.
    public static func fileKind(_ type: mode_t) -> String {
        switch type {
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFCHR, S_IFBLK: return "a device"
        case S_IFLNK: return "a symlink"
        default: return "a regular file"
        }
    }

    /// open(2) with O_CLOEXEC always added.
    public static func open(_ path: [UInt8], flags: Int32, mode: mode_t = 0) throws(SyscallError) -> Int32 {
        try withCString(path) { (cPath) throws(SyscallError) -> Int32 in
            try retrying("open", path: display(path)) { Glibc.open(cPath, flags | O_CLOEXEC, mode) }
        }
    }

    /// close(2). EINTR is not retried: on Linux the descriptor is released even then.
    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// read(2) into `buffer`; returns the byte count (0 at end of file).
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SyscallError) -> Int {
        try retrying("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// write(2) of the whole buffer, looping over short writes.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(SyscallError) {
        var offset = 0
        while offset < bytes.count {
            // offset < count, so the buffer is not empty and has a base address.
            let written = bytes.withUnsafeBytes { raw in
                Result { () throws(SyscallError) -> Int in
                    try retrying("write") { Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset) }
                }
            }
            offset += try written.get()
        }
    }

    /// Reads a small file whole (for /proc values).
    public static func readSmallFile(_ path: String) throws(SyscallError) -> [UInt8] {
        try readFile(Array(path.utf8), limit: 1 << 20)
    }

    /// lstat(2): never follows a final symlink.
    public static func lstat(_ path: [UInt8]) throws(SyscallError) -> stat {
        var info = stat()
        _ = try withCString(path) { (cPath) throws(SyscallError) -> Int32 in
            try retrying("lstat", path: display(path)) { Glibc.lstat(cPath, &info) }
        }
        return info
    }

    /// A lossy text form of a byte path, for error messages only.
    public static func display(_ path: [UInt8]) -> String {
        String(decoding: path, as: UTF8.self)
    }
}
