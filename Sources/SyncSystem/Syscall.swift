import Glibc
import SyncCore

/// A failed system call: which call, on which path, and the errno it returned.
public struct SyscallError: Error, Sendable, CustomStringConvertible {
    public let call: String
    public let path: String?
    public let errno: Errno

    public init(call: String, path: String?, errno: Errno) {
        self.call = call
        self.path = path
        self.errno = errno
    }

    public var description: String {
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
