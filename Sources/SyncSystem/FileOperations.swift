import CSyncShims
import Glibc
import SyncCore

extension Syscall {
    /// fsync(2) of an open descriptor.
    public static func fsync(_ fd: Int32, path: [UInt8]) throws(SyscallError) {
        _ = try retrying("fsync", path: display(path)) { Glibc.fsync(fd) }
    }

    /// fsync(2) of a regular file by path, so its contents survive power loss.
    public static func fsyncFile(_ path: [UInt8]) throws(SyscallError) {
        let fd = try open(path, flags: O_RDONLY | O_NOFOLLOW)
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    /// fsync(2) of a directory, so a rename or a new entry in it survives power loss.
    public static func fsyncDirectory(_ path: [UInt8]) throws(SyscallError) {
        let fd = try open(path, flags: O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    /// syncfs(2) on the filesystem that holds `path`: every write made so far (objects and the
    /// directory entries that name them) is on disk when it returns.
    public static func syncFileSystem(containing path: [UInt8]) throws(SyscallError) {
        let fd = try open(path, flags: O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        _ = try retrying("syncfs", path: display(path)) { csync_syncfs(fd) }
    }

    /// mkdir(2); an existing directory is not an error.
    public static func makeDirectory(_ path: [UInt8], mode: mode_t = 0o755) throws(SyscallError) {
        let result = withCStringResult(path) { Glibc.mkdir($0, mode) }
        if result == 0 { return }
        let code = Glibc.errno
        if code == EEXIST, let info = try? lstat(path), (info.st_mode & S_IFMT) == S_IFDIR { return }
        throw SyscallError(call: "mkdir", path: display(path), errno: Errno(code))
    }

    /// rename(2).
    public static func rename(_ from: [UInt8], to: [UInt8]) throws(SyscallError) {
        let result = withCStringResult(from) { cFrom in withCStringResult(to) { cTo in Glibc.rename(cFrom, cTo) } }
        if result != 0 { throw SyscallError(call: "rename", path: display(from) + " -> " + display(to), errno: Errno(Glibc.errno)) }
    }

    /// link(2): a second name for the file at `from`.
    public static func link(_ from: [UInt8], to: [UInt8]) throws(SyscallError) {
        let result = withCStringResult(from) { cFrom in withCStringResult(to) { cTo in Glibc.link(cFrom, cTo) } }
        if result != 0 { throw SyscallError(call: "link", path: display(from) + " -> " + display(to), errno: Errno(Glibc.errno)) }
    }

    /// unlink(2); a missing file is not an error.
    public static func unlink(_ path: [UInt8]) throws(SyscallError) {
        let result = withCStringResult(path) { Glibc.unlink($0) }
        if result != 0, Glibc.errno != ENOENT {
            throw SyscallError(call: "unlink", path: display(path), errno: Errno(Glibc.errno))
        }
    }

    /// fstat(2).
    public static func fstat(_ fd: Int32) throws(SyscallError) -> stat {
        var info = stat()
        _ = try retrying("fstat") { Glibc.fstat(fd, &info) }
        return info
    }

    /// Reads a whole regular file (bounded by `limit` bytes). A FIFO, device or directory at the
    /// path is refused without blocking (`openRegular`); so is a symlink.
    public static func readFile(_ path: [UInt8], limit: Int = 16 * 1024 * 1024) throws(SyscallError) -> [UInt8] {
        let fd = try openRegular(path, flags: O_RDONLY)
        defer { close(fd) }
        return try readAll(fd, limit: limit)
    }

    /// Reads from `fd` until end of file or `limit` bytes.
    public static func readAll(_ fd: Int32, limit: Int) throws(SyscallError) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while result.count < limit {
            let count = try chunk.withUnsafeMutableBytes { raw in
                Result { () throws(SyscallError) -> Int in try read(fd, into: raw) }
            }.get()
            if count == 0 { break }
            result.append(contentsOf: chunk[..<min(count, limit - result.count)])
        }
        return result
    }

    /// realpath(3): the path with every symlink, `.` and `..` resolved, as bytes; nil when any part
    /// is missing or unreadable.
    public static func realPath(_ path: [UInt8]) -> [UInt8]? {
        withCStringResult(path) { cPath -> [UInt8]? in
            guard let resolved = realpath(cPath, nil) else { return nil }
            defer { free(resolved) }
            return resolved.withMemoryRebound(to: UInt8.self, capacity: strlen(resolved)) {
                Array(UnsafeBufferPointer(start: $0, count: strlen(resolved)))
            }
        }
    }

    /// Removes a directory syncd made for itself (a scratch repository) and all it holds. Never
    /// follows a symlink: one inside is removed as a link. A missing path is not an error.
    public static func removeTree(_ path: [UInt8]) throws(SyscallError) {
        guard let info = try? lstat(path) else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            for entry in try DirectoryListing.list(path) {
                let child = path + [UInt8(ascii: "/")] + entry.name
                if entry.type == .directory { try removeTree(child) } else { try unlink(child) }
            }
            _ = try retrying("rmdir", path: display(path)) { withCStringResult(path) { rmdir($0) } }
        } else {
            try unlink(path)
        }
    }

    /// A path exists (lstat succeeds).
    public static func exists(_ path: [UInt8]) -> Bool {
        (try? lstat(path)) != nil
    }

    /// Calls `body` with a NUL-terminated copy of `bytes` and returns its result (no errno handling).
    public static func withCStringResult<R>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> R) -> R {
        var terminated = bytes
        terminated.append(0)
        return terminated.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { body($0) }
        }
    }
}

/// A file replaced atomically: written to a temporary name in the same directory, fsynced, renamed
/// over the target, then the directory fsynced. A reader sees the old or the new content, never a
/// mix, even after a crash or power loss.
public enum AtomicFile {
    /// `owner`: the file is given to this user and group before it takes its name (root writing
    /// into a user's directory; on the open file, so no path is followed).
    public static func write(_ path: [UInt8], _ contents: [UInt8], mode: mode_t = 0o644, owner: (uid_t, gid_t)? = nil) throws(SyscallError) {
        let temporary = path + Array(".tmp-\(getpid())".utf8)
        let fd = try Syscall.openRegular(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        do {
            if let owner { _ = try Syscall.retrying("fchown", path: Syscall.display(temporary)) { fchown(fd, owner.0, owner.1) } }
            try Syscall.writeAll(fd, contents)
            try Syscall.fsync(fd, path: temporary)
            Syscall.close(fd)
        } catch {
            Syscall.close(fd)
            try? Syscall.unlink(temporary)
            throw error
        }
        do {
            try Syscall.rename(temporary, to: path)
        } catch {
            try? Syscall.unlink(temporary)
            throw error
        }
        try Syscall.fsyncDirectory(parentDirectory(of: path))
    }

    public static func parentDirectory(of path: [UInt8]) -> [UInt8] {
        guard let slash = path.lastIndex(of: UInt8(ascii: "/")) else { return Array(".".utf8) }
        return slash == 0 ? [UInt8(ascii: "/")] : Array(path[..<slash])
    }
}

/// An exclusive kernel lock (flock(2)) on a file, held for the life of the process. The kernel
/// releases it when the process dies, so it can never go stale. The file holds the owner's pid.
public final class ProcessLock: Sendable {
    private let lock: FileLock
    public var path: [UInt8] { lock.path }

    public enum Outcome: Sendable {
        case acquired(ProcessLock)
        /// Another process holds it; its pid as written in the file, if readable.
        case heldBy(pid: Int32?)
    }

    private init(_ lock: FileLock) { self.lock = lock }

    /// The lock file is still the one this process locked (see `FileLock.isIntact`).
    public var isIntact: Bool { lock.isIntact }

    /// Tries to take the lock without waiting. The file is opened with O_NOFOLLOW: a symlink
    /// planted in its place is refused, not followed.
    public static func acquire(_ path: [UInt8]) throws(SyscallError) -> Outcome {
        let lock = try FileLock(path: path)
        guard try lock.tryLock(.exclusive) else {
            let text = String(decoding: lock.contents(limit: 64), as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
            return .heldBy(pid: Int32(text))
        }
        lock.replaceContents(Array("\(getpid())\n".utf8))
        return .acquired(ProcessLock(lock))
    }
}

/// What the kernel says about other processes (through /proc).
public enum ProcessTable {
    /// The command line of `pid`, spaces between arguments; nil when it cannot be read.
    public static func commandLine(of pid: Int32) -> String? {
        guard let bytes = try? Syscall.readSmallFile("/proc/\(pid)/cmdline"), !bytes.isEmpty else { return nil }
        return bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
    }

    /// Processes (that this user may inspect) with `path` open, found by reading /proc/*/fd links;
    /// only among `candidates` when given.
    public static func processesHolding(_ path: [UInt8], among candidates: [Int32]? = nil) -> [Int32] {
        let pids = candidates ?? allPids()
        var holders: [Int32] = []
        var link = [CChar](repeating: 0, count: 4096)
        for pid in pids {
            guard let fds = opendir("/proc/\(pid)/fd") else { continue }
            defer { closedir(fds) }
            while let fdEntry = readdir(fds) {
                let fdName = withUnsafeBytes(of: fdEntry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                guard Int(fdName) != nil else { continue }
                let count = readlink("/proc/\(pid)/fd/\(fdName)", &link, link.count - 1)
                guard count > 0 else { continue }
                let target = link[..<count].map { UInt8(bitPattern: $0) }
                if target == path {
                    holders.append(pid)
                    break
                }
            }
        }
        return holders
    }

    /// git processes whose working directory is `directory` or below it (a person's `git commit`
    /// waiting in an editor holds `index.lock` without keeping it open).
    public static func gitProcesses(within directory: [UInt8]) -> [Int32] {
        var found: [Int32] = []
        var link = [CChar](repeating: 0, count: 4096)
        for pid in allPids() where pid != getpid() {
            guard let comm = try? Syscall.readSmallFile("/proc/\(pid)/comm"),
                comm.starts(with: Array("git".utf8))
            else { continue }
            if parent(of: pid) == getpid() { continue }  // syncd's own git children
            let count = readlink("/proc/\(pid)/cwd", &link, link.count - 1)
            guard count > 0 else { continue }
            let cwd = link[..<count].map { UInt8(bitPattern: $0) }
            if cwd == directory || cwd.starts(with: directory + [UInt8(ascii: "/")]) { found.append(pid) }
        }
        return found
    }

    /// The files `pid` has open (the targets of its /proc/PID/fd links); empty when they cannot be read.
    public static func openFiles(of pid: Int32) -> [[UInt8]] {
        guard let fds = opendir("/proc/\(pid)/fd") else { return [] }
        defer { closedir(fds) }
        var files: [[UInt8]] = []
        var link = [CChar](repeating: 0, count: 4096)
        while let fdEntry = readdir(fds) {
            let fdName = withUnsafeBytes(of: fdEntry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard Int(fdName) != nil else { continue }
            let count = readlink("/proc/\(pid)/fd/\(fdName)", &link, link.count - 1)
            if count > 0 { files.append(link[..<count].map { UInt8(bitPattern: $0) }) }
        }
        return files
    }

    /// The processes in process group `group` (field 5 of /proc/PID/stat); with `running`, zombies
    /// (dead, not yet reaped) are left out.
    public static func members(ofGroup group: Int32, running: Bool = false) -> [Int32] {
        allPids().filter { pid in
            guard let fields = statFields(of: pid), fields.count > 2,
                Int32(String(decoding: fields[2], as: UTF8.self)) == group
            else { return false }
            return !running || isRunning(fields)
        }
    }

    /// True while `pid` runs (a zombie, dead and not yet reaped, does not count).
    public static func running(_ pid: Int32) -> Bool {
        statFields(of: pid).map(isRunning) ?? false
    }

    /// The state field (field 3 of /proc/PID/stat) is neither Z (zombie) nor X (dead).
    private static func isRunning(_ fields: [ArraySlice<UInt8>]) -> Bool {
        guard let state = fields.first?.first else { return false }
        return state != UInt8(ascii: "Z") && state != UInt8(ascii: "X")
    }

    /// When `pid` started, in seconds since the epoch (field 22 of /proc/PID/stat counts clock
    /// ticks after boot; /proc/stat's `btime` is the boot time); nil when it cannot be read.
    public static func startTime(of pid: Int32) -> Double? {
        guard let fields = statFields(of: pid), fields.count > 19,
            let ticks = Double(String(decoding: fields[19], as: UTF8.self)),
            let boot = bootTime
        else { return nil }
        let perSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        return perSecond > 0 ? boot + ticks / perSecond : nil
    }

    /// The boot time in seconds since the epoch (`btime` in /proc/stat).
    static var bootTime: Double? {
        guard let text = try? Syscall.readSmallFile("/proc/stat") else { return nil }
        for line in text.split(separator: UInt8(ascii: "\n")) where line.starts(with: Array("btime ".utf8)) {
            return Double(String(decoding: line.dropFirst(6), as: UTF8.self).trimmed)
        }
        return nil
    }

    /// The fields of /proc/PID/stat after the parenthesised command name (field 3 onwards).
    static func statFields(of pid: Int32) -> [ArraySlice<UInt8>]? {
        guard let stat = try? Syscall.readSmallFile("/proc/\(pid)/stat"),
            let close = stat.lastIndex(of: UInt8(ascii: ")"))
        else { return nil }
        return stat[(close + 1)...].split(separator: UInt8(ascii: " "))
    }

    /// Every pid in /proc.
    public static func allPids() -> [Int32] {
        guard let proc = opendir("/proc") else { return [] }
        defer { closedir(proc) }
        var pids: [Int32] = []
        while let entry = readdir(proc) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let pid = Int32(name) { pids.append(pid) }
        }
        return pids
    }

    /// The parent pid of `pid` (field 4 of /proc/PID/stat, after the parenthesised command name).
    public static func parent(of pid: Int32) -> Int32? {
        guard let fields = statFields(of: pid), fields.count > 1 else { return nil }
        return Int32(String(decoding: fields[1], as: UTF8.self))
    }

    /// This machine's host name.
    public static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Wall-clock time for records people read (journal, state file). Durations use a monotonic clock.
public enum WallClock {
    /// Seconds since the epoch, with nanoseconds.
    public static func now() -> timespec {
        var value = timespec()
        clock_gettime(CLOCK_REALTIME, &value)
        return value
    }

    /// Nanoseconds since the epoch (the unit of file times in `stat`).
    public static func nanoseconds() -> Int {
        let value = now()
        return value.tv_sec * 1_000_000_000 + value.tv_nsec
    }

    /// Seconds since the epoch of a `YYYY-MM-DDTHH:MM:SS[.fff]Z` time (the form syncd writes).
    public static func seconds(rfc3339 text: String) -> Double? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 20 else { return nil }
        func number(_ range: Range<Int>) -> Int32? { Int32(String(decoding: bytes[range], as: UTF8.self)) }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        var fraction = 0.0
        if bytes[19] == UInt8(ascii: "."), let end = bytes.firstIndex(of: UInt8(ascii: "Z")), end > 20 {
            fraction = Double("0." + String(decoding: bytes[20..<end], as: UTF8.self)) ?? 0
        }
        return Double(timegm(&parts)) + fraction
    }

    /// RFC 3339 UTC for seconds since the epoch.
    public static func rfc3339(seconds: Double) -> String {
        let whole = seconds.rounded(.down)
        return rfc3339(timespec(tv_sec: Int(whole), tv_nsec: Int((seconds - whole) * 1e9)))
    }

    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-22T07:02:03.123Z`.
    public static func rfc3339(_ time: timespec = now()) -> String {
        var seconds = time.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(time.tv_nsec / 1_000_000), 3))Z"
    }
}
