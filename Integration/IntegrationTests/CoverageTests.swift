import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Testing

/// What syncd cannot see or cannot commit is said, in the log, in status and in doctor, and
/// comes back by itself once it can (issue 12: an unreadable directory never watched again, an
/// unreadable file left out with one log line, nested repositories never mentioned, the watch
/// limit missing from human status and lagging in state.json).
@Suite("what syncd cannot see or commit is said (real processes)", .serialized)
struct CoverageTests {
    /// `nobody`: a syncd that is not root, for whom a mode of 000 means something.
    static let nobody: UInt32 = 65534

    /// A fixture with one committed-to-be file, handed to `nobody`.
    func nobodysFixture() async throws -> GitFixture {
        let fixture = try await GitFixture()
        try Files.write(fixture.file("a.txt"), "a\n")
        let chown = ProcessHarness("/bin/chown", ["-R", "\(Self.nobody):\(Self.nobody)", fixture.path])
        #expect(try await chown.exit() == .exited(0), "\(chown.stderr)")
        return fixture
    }

    /// `syncctl ARGUMENTS...` as `nobody` (root's git refuses a repository root does not own).
    func syncctlAsNobody(_ arguments: [String]) -> ProcessHarness {
        ProcessHarness(
            "/usr/bin/setpriv",
            ["--reuid=\(Self.nobody)", "--regid=\(Self.nobody)", "--clear-groups", ProcessHarness.product("syncctl")] + arguments,
            environment: ["HOME": "/nonexistent"])
    }

    /// The files in HEAD, asked as root of a repository that belongs to `nobody`.
    func headFiles(_ fixture: GitFixture) async throws -> Set<String> {
        let result = try await fixture.git.run(
            ["-c", "safe.directory=*", "ls-tree", "-r", "-z", "--name-only", "HEAD"], readOnly: true, acceptedExitCodes: [0, 128])
        return Set(result.nulSeparatedFields.map { String(decoding: $0, as: UTF8.self) })
    }

    static func strings(_ value: Any?) -> [String] { value as? [String] ?? [] }

    @Test(
        "a directory syncd could not read is watched once it can be (chmod), and counted as unwatched and named in status until then",
        .enabled(if: geteuid() == 0, "needs root to run syncd as another user"))
    func unreadableDirectoryComesBack() async throws {
        let fixture = try await nobodysFixture()
        defer { fixture.remove() }
        // No periodic retry within the test: only the permission change can bring it back.
        let syncd = SyncdHarness(fixture, ["--quiet-period", "200ms", "--rescan-interval", "1h"], asUser: Self.nobody)
        try await syncd.ready()
        // Created unreadable (mkdir with mode 000): the watch cannot be added.
        #expect(mkdir(fixture.file("sub"), 0) == 0)
        #expect(chown(fixture.file("sub"), Self.nobody, Self.nobody) == 0)
        try await waitUntil(.seconds(15), "sub/ counted as unreadable; stderr: \(syncd.process.stderr.suffix(800))") {
            Self.strings(syncd.state()?["unreadable_paths"]) == ["sub/"]
        }
        #expect(syncd.state()?["unwatched_directories"] as? Int == 1)
        #expect(syncd.state()?["unreadable_directories"] as? Int == 1)
        let status = syncctlAsNobody(["status", "-C", fixture.path])
        #expect(try await status.exit() == .exited(1), "\(status.stdout)\(status.stderr)")
        #expect(status.stdout.contains("CANNOT READ 1 directory: sub/"), "\(status.stdout)")
        #expect(status.stdout.contains("paths not readable"), "\(status.stdout)")

        #expect(chmod(fixture.file("sub"), 0o755) == 0)
        try Files.write(fixture.file("sub/f.txt"), "d\n")
        try await waitUntil(.seconds(15), "sub/f.txt committed; stderr: \(syncd.process.stderr.suffix(800))") {
            try await headFiles(fixture).contains("sub/f.txt")
        }
        try await waitUntil(.seconds(10), "no directory left unwatched") {
            syncd.state()?["unwatched_directories"] as? Int == 0 && Self.strings(syncd.state()?["unreadable_paths"]).isEmpty
        }
        let stderr = syncd.process.stderr
        #expect(stderr.components(separatedBy: "cannot watch sub/").count == 2, "one warning: \(stderr)")
        #expect(stderr.contains("sub/ in \(fixture.path) can be read again"), "\(stderr)")
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test(
        "a file git cannot read is pending, the last error and named in status until it is committed",
        .enabled(if: geteuid() == 0, "needs root to run syncd as another user"))
    func unreadableFileIsShown() async throws {
        let fixture = try await nobodysFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "200ms"], asUser: Self.nobody)
        try await syncd.ready()
        try Files.write(fixture.file("u.txt"), "secret\n")
        #expect(chmod(fixture.file("u.txt"), 0) == 0)
        try Files.write(fixture.file("readable.txt"), "r\n")
        try await waitUntil(.seconds(15), "the rest is committed") { try await headFiles(fixture).contains("readable.txt") }
        try await waitUntil(.seconds(15), "u.txt shown as left out; stderr: \(syncd.process.stderr.suffix(800))") {
            Self.strings(syncd.state()?["unreadable_paths"]) == ["u.txt"] && syncd.state()?["phase"] as? String == "idle"
        }
        let state = syncd.state() ?? [:]
        #expect(state["pending_paths"] as? Int == 1)
        #expect(state["unreadable_files"] as? Int == 1)
        #expect((state["last_error"] as? String ?? "").contains("git cannot read u.txt"), "\(state)")
        let status = syncctlAsNobody(["status", "-C", fixture.path])
        #expect(try await status.exit() == .exited(1), "\(status.stdout)\(status.stderr)")
        #expect(status.stdout.contains("pending: 1 path(s)"), "\(status.stdout)")
        #expect(status.stdout.contains("CANNOT READ 1 file: u.txt"), "\(status.stdout)")
        #expect(status.stdout.contains("last error"), "\(status.stdout)")

        #expect(chmod(fixture.file("u.txt"), 0o644) == 0)
        try await waitUntil(.seconds(15), "u.txt committed once readable") { try await headFiles(fixture).contains("u.txt") }
        try await waitUntil(.seconds(10), "nothing left out") {
            let state = syncd.state() ?? [:]
            return state["pending_paths"] as? Int == 0 && state["unreadable_files"] as? Int == 0 && state["last_error"] as? String == ""
        }
        let healthy = syncctlAsNobody(["status", "-C", fixture.path])
        #expect(try await healthy.exit() == .exited(0), "\(healthy.stdout)\(healthy.stderr)")
        #expect(!healthy.stdout.contains("CANNOT READ"))
        #expect(try await syncd.stop() == .exited(0))
    }

    /// Every directory under `root`, itself included, set to `mode`.
    static func chmodDirectories(_ root: String, _ mode: mode_t) throws {
        var directories = [root]
        if let walker = FileManager.default.enumerator(atPath: root) {
            for case let relative as String in walker {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: root + "/" + relative, isDirectory: &isDirectory), isDirectory.boolValue {
                    directories.append(root + "/" + relative)
                }
            }
        }
        for directory in directories where chmod(directory, mode) != 0 { throw TestFailure("chmod \(directory): errno \(errno)") }
    }

    @Test(
        "an object store syncd cannot write fails the batch (retried), not the file git was adding: once writable, the file is committed untouched",
        .enabled(if: geteuid() == 0, "needs root to run syncd as another user"))
    func unwritableObjectStoreFailsTheBatch() async throws {
        let fixture = try await nobodysFixture()
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "200ms"], asUser: Self.nobody)
        try await syncd.ready()
        let objects = fixture.path + "/.git/objects"
        try Self.chmodDirectories(objects, 0o555)
        // One small file: below the pack threshold, so git writes a loose object and names the file.
        try Files.write(fixture.file("small"), "small\n")
        try await waitUntil(.seconds(15), "the batch failed naming .git/objects; stderr: \(syncd.process.stderr.suffix(800))") {
            let state = syncd.state() ?? [:]
            return state["phase"] as? String == "failing" && (state["last_error"] as? String ?? "").contains(objects)
        }
        let state = syncd.state() ?? [:]
        #expect(Self.strings(state["unreadable_paths"]).isEmpty, "\(state)")
        #expect(state["unreadable_files"] as? Int == 0, "\(state)")
        #expect((state["last_error"] as? String ?? "").contains("fix the repository's permissions"), "\(state)")
        #expect(!syncd.process.stderr.contains("git cannot stage small"), "\(syncd.process.stderr)")

        // Fixed: the retry commits the file, which is not touched again.
        try Self.chmodDirectories(objects, 0o755)
        try await waitUntil(.seconds(30), "small committed once .git/objects is writable; stderr: \(syncd.process.stderr.suffix(800))") {
            try await headFiles(fixture).contains("small")
        }
        try await waitUntil(.seconds(10), "nothing pending: \(syncd.state() ?? [:])") {
            let state = syncd.state() ?? [:]
            return state["pending_paths"] as? Int == 0 && state["phase"] as? String == "idle"
        }
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("files inside a nested clone or a submodule: said once in the log, in status and in doctor")
    func nestedRepositoriesAreSaid() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let other = try await GitFixture(prefix: "syncd-submodule")
        defer { other.remove() }
        try Files.write(other.file("lib.txt"), "lib\n")
        _ = try await other.run(["add", "lib.txt"])
        _ = try await other.run(["commit", "-q", "-m", "lib"])
        _ = try await fixture.run(["-c", "protocol.file.allow=always", "submodule", "add", "-q", GitArgument(other.path), "sm"])
        _ = try await fixture.run(["commit", "-q", "-m", "submodule"])

        let syncd = SyncdHarness(fixture, ["--quiet-period", "200ms"])
        try await syncd.ready()
        _ = try await fixture.run(["init", "-q", "nest"])
        try Files.write(fixture.file("nest/n.txt"), "n\n")
        try Files.write(fixture.file("sm/lib.txt"), "changed in the submodule\n")
        try await waitUntil(.seconds(15), "both named in state.json; stderr: \(syncd.process.stderr.suffix(800))") {
            Self.strings(syncd.state()?["nested_repositories"]) == ["nest", "sm"]
        }
        try Files.write(fixture.file("nest/again.txt"), "again\n")
        try Files.write(fixture.file("top.txt"), "top\n")
        try await waitUntil(.seconds(15), "the rest committed") { try await fixture.headTree()[Array("top.txt".utf8)] != nil }
        let stderr = syncd.process.stderr
        #expect(stderr.components(separatedBy: "nest/ in \(fixture.path) is a separate git repository").count == 2, "once: \(stderr)")
        #expect(stderr.components(separatedBy: "sm/ in \(fixture.path) is a separate git repository").count == 2, "once: \(stderr)")
        #expect(try await fixture.headTree().keys.allSatisfy { !$0.starts(with: Array("nest/".utf8)) })

        let status = syncctlProcess(["status", "-C", fixture.path])
        _ = try await status.exit()
        #expect(status.stdout.contains("not committed here: the files inside nest/, sm/"), "\(status.stdout)")
        let doctor = syncctlProcess(["doctor", "-C", fixture.path])
        _ = try await doctor.exit()
        let lines = doctor.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("WARN nested") && $0.contains("nest/") && !$0.contains("sm/") }, "\(doctor.stdout)")
        #expect(lines.contains { $0.hasPrefix("OK   submodules") && $0.contains("sm/") }, "\(doctor.stdout)")
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("the watch limit: human status says how many directories are unwatched; state.json follows at once when the limit is raised; 'watched again' is logged once")
    func watchLimitInStatus() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        for index in 0..<30 { try Files.mkdirs(fixture.file("d\(index)")) }
        let control = try TemporaryDirectory(prefix: "syncd-limit")
        defer { control.remove() }
        let raise = control.sub("raise")
        // A user namespace of our own with a watch limit of 8, raised when `raise` appears
        // (outside the working tree: no change in the workspace says the limit was raised).
        let script = #"""
            echo 8 > /proc/sys/user/max_inotify_watches || exit 90
            "$0" run "$1" --quiet-period 200ms --rescan-interval 1s &
            pid=$!
            trap 'kill -TERM $pid' TERM
            while [ ! -e "$2" ] && kill -0 $pid 2>/dev/null; do sleep 0.1; done
            echo 1000000 > /proc/sys/user/max_inotify_watches
            wait $pid; code=$?
            if kill -0 $pid 2>/dev/null; then wait $pid; code=$?; fi
            exit $code
            """#
        let process = ProcessHarness(
            "/usr/bin/unshare", ["--user", "--map-root-user", "sh", "-c", script, ProcessHarness.product("syncd"), fixture.path, raise])
        let stateFile = fixture.path + "/.git/syncd/state.json"
        let state = { @Sendable () -> [String: Any]? in
            guard let data = FileManager.default.contents(atPath: stateFile) else { return nil }
            return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        }
        try await process.waitForStderr("inotify watch limit reached", within: .seconds(30))
        try await waitUntil(.seconds(15), "state.json counts the unwatched directories") { (state()?["unwatched_directories"] as? Int ?? 0) > 0 }
        let unwatched = state()?["unwatched_directories"] as? Int ?? 0
        let limited = syncctlProcess(["status", "-C", fixture.path])
        #expect(try await limited.exit() == .exited(1), "\(limited.stdout)\(limited.stderr)")
        #expect(limited.stdout.contains("NOT WATCHED: \(unwatched) directories (the inotify watch limit is reached)"), "\(limited.stdout)")

        try Files.write(raise)
        try await waitUntil(.seconds(10), "state.json says every directory is watched (it lagged until the next change)") {
            state()?["unwatched_directories"] as? Int == 0
        }
        #expect(state()?["watched_directories"] as? Int == 31)
        let recovered = syncctlProcess(["status", "-C", fixture.path])
        #expect(try await recovered.exit() == .exited(0), "\(recovered.stdout)\(recovered.stderr)")
        #expect(!recovered.stdout.contains("NOT WATCHED"), "\(recovered.stdout)")
        let stderr = process.stderr
        #expect(stderr.components(separatedBy: "watched again").count == 2, "logged once: \(stderr)")
        #expect(stderr.components(separatedBy: "inotify watch limit reached").count == 2, "logged once: \(stderr)")
        #expect(try await process.terminate(within: .seconds(60)) == .exited(0), "\(process.stderr.suffix(800))")
    }
}
