import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncSystem
import SyncTestKit
import Testing

/// syncd and a workspace that belongs to another user (issue 11): root must never write into a
/// user's repository, and git's own refusal must be shown as what it is.
@Suite("a workspace owned by another user", .serialized, .enabled(if: geteuid() == 0, "needs root to give a repository to another user"))
struct OwnershipTests {
    /// The fixture, with one untracked file, handed to `nobody` (uid 65534).
    func foreignFixture() async throws -> GitFixture {
        let fixture = try await GitFixture()
        try Files.write(fixture.file("a.txt"), "the owner's file\n")
        let chown = ProcessHarness("/bin/chown", ["-R", "65534:65534", fixture.path])
        #expect(try await chown.exit() == .exited(0), "\(chown.stderr)")
        return fixture
    }

    /// Files under `.git` that belong to root.
    func rootOwned(_ fixture: GitFixture) -> [String] {
        let root = fixture.path + "/.git"
        var found: [String] = []
        let enumerator = FileManager.default.enumerator(atPath: root)
        while let relative = enumerator?.nextObject() as? String {
            var info = stat()
            if lstat(root + "/" + relative, &info) == 0, info.st_uid == 0 { found.append(relative) }
        }
        return found
    }

    @Test("syncd run as root refuses at once: one line with the owner, the uid and the command to use; exit 78; nothing created")
    func rootRefuses() async throws {
        let fixture = try await foreignFixture()
        defer { fixture.remove() }
        // Even where root trusts every directory (git would then work there as root).
        let syncd = SyncdHarness(fixture, [], environment: [
            "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*",
        ])
        #expect(try await syncd.process.exit(within: .seconds(20)) == .exited(78))
        let lines = syncd.process.stderr.split(separator: "\n").filter { !$0.isEmpty }
        #expect(lines.count == 1, "\(syncd.process.stderr)")
        let line = String(lines.first ?? "")
        #expect(line.contains("belongs to \(WorkspaceOwner.describe(65534))"), "\(line)")
        #expect(line.contains("syncctl enable \(WorkspaceOwner.find(fixture.path)?.workTreeDisplay ?? fixture.path)"), "\(line)")
        #expect(!FileManager.default.fileExists(atPath: fixture.path + "/.git/syncd"))
        #expect(rootOwned(fixture).isEmpty, "root-owned: \(rootOwned(fixture))")
    }

    @Test("root's syncctl in a user's workspace runs git as the owner: status, log, verify and doctor work, pause and resume too, and what they write belongs to the owner")
    func rootSyncctlActsAsOwner() async throws {
        let fixture = try await foreignFixture()
        defer { fixture.remove() }
        // No safe.directory anywhere: git as root would refuse this repository.
        let environment: [String: String?] = ["GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"]
        func syncctl(_ arguments: [String]) async throws -> ProcessHarness {
            let process = ProcessHarness(ProcessHarness.product("syncctl"), arguments + ["-C", fixture.path], environment: environment)
            _ = try await process.exit(within: .seconds(60))
            #expect(!process.stderr.contains("dubious"), "syncctl \(arguments): \(process.stderr)")
            return process
        }
        let status = try await syncctl(["status"])
        #expect(status.stdout.contains("not running"), "\(status.stdout) \(status.stderr)")
        let verify = try await syncctl(["verify"])
        #expect(verify.stdout.contains("a.txt") || verify.stdout.contains("worktree"), "\(verify.stdout) \(verify.stderr)")
        _ = try await syncctl(["log", "--last", "1"])
        let doctor = try await syncctl(["doctor"])
        #expect(doctor.stdout.contains("belongs to \(WorkspaceOwner.describe(65534))"), "\(doctor.stdout)")
        _ = try await syncctl(["pause"])
        var info = stat()
        #expect(lstat(fixture.path + "/.git/syncd/paused.json", &info) == 0 && info.st_uid == 65534, "paused.json belongs to uid \(info.st_uid)")
        _ = try await syncctl(["resume"])
        #expect(!FileManager.default.fileExists(atPath: fixture.path + "/.git/syncd/paused.json"))
        #expect(rootOwned(fixture).isEmpty, "root-owned: \(rootOwned(fixture))")
    }

    @Test("git's dubious ownership is named, with git's fix and the owner, not 'run git init'")
    func dubiousOwnership() async throws {
        let fixture = try await foreignFixture()
        defer { fixture.remove() }
        // `syncd watch` has no ownership check of its own: git's refusal is what it reports.
        let watch = ProcessHarness(ProcessHarness.product("syncd"), ["watch", fixture.path], environment: [
            "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "SUDO_UID": nil,
        ])
        #expect(try await watch.exit(within: .seconds(20)) == .exited(1))
        let stderr = watch.stderr
        #expect(stderr.contains("detected dubious ownership"), "\(stderr)")
        #expect(stderr.contains("git config --global --add safe.directory"), "\(stderr)")
        #expect(stderr.contains("belongs to \(WorkspaceOwner.describe(65534))"), "\(stderr)")
        #expect(!stderr.contains("git init"), "\(stderr)")
        #expect(rootOwned(fixture).isEmpty)
    }
}
