import Glibc
import Synchronization

/// A datagram socket standing in for systemd's notify socket: syncd sends READY=1, STATUS=…,
/// WATCHDOG=1 and STOPPING=1 to it; the test reads them back.
public final class NotifySocket: Sendable {
    /// The value for NOTIFY_SOCKET (a path, or `@name` for an abstract socket).
    public let address: String
    private let fd: Int32
    private let received = Mutex<[String]>([])

    public convenience init(path: String) throws {
        try self.init(address: path, bytes: Array(path.utf8))
    }

    public convenience init(abstractName: String) throws {
        try self.init(address: "@" + abstractName, bytes: [0] + Array(abstractName.utf8))
    }

    private init(address: String, bytes: [UInt8]) throws {
        self.address = address
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var storage = sockaddr_un()
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let bound = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw TestFailure("bind \(address): errno \(errno)") }
    }

    deinit { close(fd) }

    /// Every message received so far (drains the socket first).
    public var messages: [String] {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var fresh: [String] = []
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            fresh.append(String(decoding: buffer[..<count], as: UTF8.self))
        }
        return received.withLock { all in
            all.append(contentsOf: fresh)
            return all
        }
    }
}
