import Foundation
import SyncSystem

/// A fresh directory under the system temp dir, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String = "syncd-test") throws {
        var template = Array((NSTemporaryDirectory() + "/\(prefix)-XXXXXX").utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let created else { throw TestFailure("mkdtemp failed for \(prefix)") }
        // Resolve symlinks (/tmp may be one) so paths match what git and the watcher report.
        path = URL(fileURLWithPath: String(cString: created)).resolvingSymlinksInPath().path
    }

    /// Adopts an existing directory (removed by `remove()` like any other).
    public init(existing path: String) {
        self.path = path
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    public func sub(_ relative: String) -> String { path + "/" + relative }
}

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// File operations for tests, byte-exact where names matter.
public enum Files {
    /// Writes `text` to `path` with plain open/write/close (what a simple writer does).
    public static func write(_ path: String, _ text: String = "x\n") throws {
        let fd = try Syscall.open(Array(path.utf8), flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        defer { Syscall.close(fd) }
        try Syscall.writeAll(fd, Array(text.utf8))
    }

    /// Writes a file whose name is raw bytes (non-UTF-8 allowed) inside `directory`.
    public static func write(in directory: String, name: [UInt8], contents: [UInt8] = Array("x\n".utf8)) throws {
        let fd = try Syscall.open(Array(directory.utf8) + [UInt8(ascii: "/")] + name, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        defer { Syscall.close(fd) }
        try Syscall.writeAll(fd, contents)
    }

    public static func mkdirs(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public static func move(_ from: String, _ to: String) throws {
        guard rename(from, to) == 0 else { throw TestFailure("rename \(from) -> \(to): errno \(errno)") }
    }

    public static func symlink(_ target: String, at path: String) throws {
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: target)
    }

    public static func removeTree(_ path: String) throws {
        try FileManager.default.removeItem(atPath: path)
    }
}
