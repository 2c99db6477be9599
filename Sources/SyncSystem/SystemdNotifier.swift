import Glibc
import SyncCore

/// sd_notify(3) without libsystemd: one datagram per message to `$NOTIFY_SOCKET` (a path, or an
/// abstract name written with a leading `@`). Outside systemd (no variable) it sends nothing.
public final class SystemdNotifier: Sendable {
    /// The socket address bytes for sun_path (abstract names start with NUL), nil when not under systemd.
    public let address: [UInt8]?
    /// The watchdog interval systemd expects pings within (WATCHDOG_USEC, honoured only when
    /// WATCHDOG_PID is unset or names this process); ping at half of it.
    public let watchdogInterval: Duration?

    public init(notifySocket: String?, watchdogMicroseconds: String?, watchdogPid: String?) {
        if let socket = notifySocket, socket.first == "/" || socket.first == "@", socket.utf8.count < 108 {
            var bytes = Array(socket.utf8)
            if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
            address = bytes
        } else {
            address = nil
        }
        if let text = watchdogMicroseconds, let micros = Int64(text), micros > 0,
            watchdogPid.map({ Int32($0) == getpid() }) ?? true
        {
            watchdogInterval = .microseconds(micros)
        } else {
            watchdogInterval = nil
        }
    }

    /// From this process's environment.
    public static func fromEnvironment() -> SystemdNotifier {
        func value(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
        return SystemdNotifier(
            notifySocket: value("NOTIFY_SOCKET"), watchdogMicroseconds: value("WATCHDOG_USEC"), watchdogPid: value("WATCHDOG_PID"))
    }

    public var isActive: Bool { address != nil }

    /// Sends `message` (e.g. "READY=1\nSTATUS=idle"). Failures are returned, never thrown: a
    /// missing notify socket must not stop the service.
    @discardableResult
    public func send(_ message: String) -> SyscallError? {
        guard let address else { return nil }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return SyscallError(call: "socket", path: nil, errno: Errno(Glibc.errno)) }
        defer { Syscall.close(fd) }
        var storage = sockaddr_un()
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { raw in
            for (index, byte) in address.enumerated() { raw[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count + (address.first == 0 ? 0 : 1))
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bytes.withUnsafeBytes { buffer in
                    sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
        return sent < 0 ? SyscallError(call: "sendto", path: String(decoding: address.map { $0 == 0 ? UInt8(ascii: "@") : $0 }, as: UTF8.self), errno: Errno(Glibc.errno)) : nil
    }
}
