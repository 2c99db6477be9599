import Foundation
import Glibc
import SyncSystem
import Testing

@Suite("The syscall layer")
struct DescriptorTests {
    /// The `flags:` field of /proc/self/fdinfo/FD (octal).
    static func flags(_ fd: Int32) throws -> Int {
        let info = try String(contentsOfFile: "/proc/self/fdinfo/\(fd)", encoding: .utf8)
        let line = try #require(info.split(separator: "\n").first { $0.hasPrefix("flags:") })
        return try #require(Int(line.split(separator: "\t").last.map(String.init) ?? "", radix: 8))
    }

    @Test("every descriptor syncd opens is close-on-exec (a git child must not inherit it)")
    func descriptorsAreCloseOnExec() throws {
        let inotify = try InotifyDescriptor()
        #expect(try Self.flags(inotify.fd) & Int(O_CLOEXEC) != 0)
        #expect(try Self.flags(inotify.fd) & Int(O_NONBLOCK) != 0)
        let fd = try Syscall.open(Array("/proc/self/status".utf8), flags: O_RDONLY)
        defer { Syscall.close(fd) }
        #expect(try Self.flags(fd) & Int(O_CLOEXEC) != 0)
    }

    @Test("errors name the call, the path and the errno")
    func errorsNameCallPathAndErrno() {
        do {
            _ = try Syscall.open(Array("/nonexistent/syncd-test".utf8), flags: O_RDONLY)
            Issue.record("open of a missing path succeeded")
        } catch {
            #expect(error.call == "open")
            #expect(error.path == "/nonexistent/syncd-test")
            #expect(error.errno == .notFound)
            #expect(error.description.contains("ENOENT"))
        }
    }

    @Test("listing never follows a symlink in place of a directory")
    func listingRefusesSymlinks() throws {
        let base = NSTemporaryDirectory() + "syncd-list-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: base + "/real", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: base + "/link", withDestinationPath: base + "/real")
        defer { try? FileManager.default.removeItem(atPath: base) }
        #expect(throws: SyscallError.self) { try DirectoryListing.list(Array((base + "/link").utf8)) }
        let entries = try DirectoryListing.list(Array(base.utf8))
        #expect(Set(entries.map(\.type)) == [.directory, .symlink])
    }
}
