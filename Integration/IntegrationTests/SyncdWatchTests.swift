import Foundation
import SyncCore
import SyncTestKit
import Testing

/// The real `syncd` binary against real repositories, real inotify and real signals.
@Suite("syncd watch (the real binary)")
struct SyncdWatchTests {
    let syncd = ProcessHarness.product("syncd")

    static func json(_ line: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }

    static func isKind(_ kind: String) -> @Sendable (String) -> Bool {
        { json($0)?["kind"] as? String == kind }
    }

    @Test("prints one JSON line per change, with a lossless form for non-UTF-8 names; SIGTERM exits 0")
    func streamsJSONLines() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let process = ProcessHarness(syncd, ["watch", fixture.path])
        try await process.waitForLine("ready line", Self.isKind("ready"))

        try Files.mkdirs(fixture.file("dir"))
        try Files.write(in: fixture.file("dir"), name: [0x6E, 0xE9, 0xFF])
        let line = try await process.waitForLine("non-UTF-8 path") { Self.json($0)?["path_base64"] != nil }
        let object = try #require(Self.json(line))
        #expect(Base64.decode(object["path_base64"] as? String ?? "") == Array("dir/".utf8) + [0x6E, 0xE9, 0xFF])
        #expect(object["rescan"] as? Bool == false)
        #expect(["created", "found", "modified"].contains(object["kind"] as? String ?? ""))

        #expect(try await process.terminate() == .exited(0))
    }

    @Test("PATH defaults to the current directory")
    func defaultsToCurrentDirectory() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.mkdirs(fixture.file("sub"))
        let process = ProcessHarness(syncd, ["watch"], workingDirectory: fixture.file("sub"))
        try await process.waitForLine("ready line", Self.isKind("ready"))
        try Files.write(fixture.file("top-level-file"))
        try await process.waitForLine("change at the top of the tree") { Self.json($0)?["path"] as? String == "top-level-file" }
        #expect(try await process.terminate() == .exited(0))
    }

    @Test("the watch limit: a message with the limit, the need and the sysctl fix; periodic rescans cover the rest")
    func watchLimitDegradesInsteadOfDying() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        for index in 0..<30 { try Files.mkdirs(fixture.file("d\(index)")) }
        // A user namespace of our own with a low watch limit: the real kernel says ENOSPC.
        let script = #"echo 8 > /proc/sys/user/max_inotify_watches && exec "$0" watch --rescan-interval 1 "$1""#
        let process = ProcessHarness("/usr/bin/unshare", ["--user", "--map-root-user", "sh", "-c", script, syncd, fixture.path])
        try await process.waitForLine("ready line", Self.isKind("ready"))
        try await process.waitForStderr("inotify watch limit reached")
        let stderr = process.stderr
        #expect(stderr.contains("user.max_inotify_watches=8"))
        #expect(stderr.contains("needs 31 directories"))
        #expect(stderr.contains("fs.inotify.max_user_watches="))
        #expect(stderr.contains("Fix: sysctl user.max_inotify_watches="))
        try await process.waitForLine("degraded notice", Self.isKind("degraded"))

        for index in 0..<30 { try Files.write(fixture.file("d\(index)/new-\(index)")) }
        let expected = Set((0..<30).map { "d\($0)/new-\($0)" })
        try await waitUntil(.seconds(30), "every file reported, by event or by rescan") {
            let paths = Set(process.lines.compactMap { Self.json($0)?["path"] as? String })
            return paths.isSuperset(of: expected)
        }
        let rescanned = process.lines.compactMap(Self.json).filter { $0["kind"] as? String == "status" }
        #expect(!rescanned.isEmpty, "unwatched directories were covered by rescans")
        #expect(rescanned.allSatisfy { $0["rescan"] as? Bool == true })
        #expect(try await process.terminate() == .exited(0))
    }

    @Test("the root removed while watching: non-zero exit and a message that names it")
    func rootRemovedExitsNonZero() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let process = ProcessHarness(syncd, ["watch", fixture.path])
        try await process.waitForLine("ready line", Self.isKind("ready"))
        try Files.removeTree(fixture.path)
        #expect(try await process.exit() == .exited(1))
        #expect(process.stderr.contains(fixture.path))
        #expect(process.stderr.contains("deleted or moved away"))
    }

    @Test("outside a repository: exit 1 and what to do")
    func notARepository() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let process = ProcessHarness(syncd, ["watch", directory.path])
        #expect(try await process.exit() == .exited(1))
        #expect(process.stderr.contains("is not inside a git working tree"))
        #expect(process.stderr.contains("git init"))
    }

    @Test("a bad flag value: exit 64 with the allowed range")
    func badFlag() async throws {
        let process = ProcessHarness(syncd, ["watch", "--rescan-interval", "0"])
        #expect(try await process.exit() == .exited(64))
        #expect(process.stderr.contains("--rescan-interval must be at least 1 second"))
    }
}
