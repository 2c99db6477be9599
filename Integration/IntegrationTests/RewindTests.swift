import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Testing

/// Checkpoints and rewind (issue 14), with the real binaries: history only grows, the state
/// before a rewind is a checkpoint, and nothing a writer wrote is lost.
@Suite("checkpoints and rewind (real processes)", .serialized)
struct RewindTests {
    static func syncctl(_ arguments: [String], environment: [String: String?] = [:]) async throws -> (exit: ProcessHarness.Exit, output: String) {
        let process = ProcessHarness(ProcessHarness.product("syncctl"), arguments, environment: environment)
        let exit = try await process.exit(within: .seconds(120))
        return (exit, process.stdout + process.stderr)
    }

    static func tree(_ fixture: GitFixture, _ revision: String) async throws -> String {
        try await fixture.run(["rev-parse", GitArgument(revision + "^{tree}")])
    }

    /// The name of the newest `before-rewind-…` checkpoint.
    static func lastBeforeRewind(_ fixture: GitFixture) async throws -> String {
        let names = try await fixture.run(["for-each-ref", "--sort=taggerdate", "--format=%(refname:lstrip=3)", "refs/syncd/checkpoints/"])
        return try #require(names.split(separator: "\n").map(String.init).last { $0.hasPrefix("before-rewind-") })
    }

    @Test("checkpoint, change, rewind: the tree is the checkpoint's, history grew by one commit, the state before is a checkpoint that restores it exactly; ignored files stay")
    func checkpointAndRewind() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.write(fixture.file(".gitignore"), "*.log\n")
        try Files.write(fixture.file("plan.md"), "v1\n")
        try Files.mkdirs(fixture.file("notes"))
        try Files.write(fixture.file("notes/a.md"), "a1\n")
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        try await syncd.settled()

        let made = try await Self.syncctl(["checkpoint", "-C", fixture.path, "--name", "before-refactor", "-m", "before the refactor"])
        #expect(made.exit == .exited(0), "\(made.output)")
        let listed = try await Self.syncctl(["checkpoints", "-C", fixture.path])
        #expect(listed.output.contains("before-refactor") && listed.output.contains("before the refactor"), "\(listed.output)")
        let checkpointTree = try await Self.tree(fixture, "refs/syncd/checkpoints/before-refactor")

        try Files.write(fixture.file("plan.md"), "v2, the risky change\n")
        try Files.write(fixture.file("new.md"), "added after\n")
        try FileManager.default.removeItem(atPath: fixture.file("notes/a.md"))
        try Files.write(fixture.file("build.log"), "ignored, never touched\n")
        try await syncd.settled()
        let changedTree = try await Self.tree(fixture, "HEAD")
        let commitsBefore = try await fixture.commitCount()

        let rewind = try await Self.syncctl(["rewind", "-C", fixture.path, "before-refactor"])
        #expect(rewind.exit == .exited(0), "\(rewind.output)")
        try await syncd.settled()
        #expect(try await Self.tree(fixture, "HEAD") == checkpointTree)
        #expect(try await fixture.commitCount() == commitsBefore + 1)
        #expect(try String(contentsOfFile: fixture.file("plan.md"), encoding: .utf8) == "v1\n")
        #expect(!FileManager.default.fileExists(atPath: fixture.file("new.md")))
        #expect(try String(contentsOfFile: fixture.file("build.log"), encoding: .utf8) == "ignored, never touched\n")
        let message = try await fixture.run(["log", "-1", "--format=%B"])
        #expect(message.contains("Syncd-Writer: syncctl rewind to before-refactor"), "\(message)")

        // The state before the rewind is a checkpoint; rewinding to it restores it exactly.
        let before = try await Self.lastBeforeRewind(fixture)
        #expect(try await Self.tree(fixture, "refs/syncd/checkpoints/" + before) == changedTree)
        let undo = try await Self.syncctl(["rewind", "-C", fixture.path, before])
        #expect(undo.exit == .exited(0), "\(undo.output)")
        try await syncd.settled()
        #expect(try await Self.tree(fixture, "HEAD") == changedTree)
        #expect(try String(contentsOfFile: fixture.file("plan.md"), encoding: .utf8) == "v2, the risky change\n")
        try await fixture.fsck()
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("a rewind of one path leaves the others alone, while a plain writer keeps writing: none of its writes is lost")
    func pathRewindWithPlainWriter() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.mkdirs(fixture.file("docs"))
        try Files.mkdirs(fixture.file("notes"))
        try Files.write(fixture.file("docs/guide.md"), "guide v1\n")
        try Files.write(fixture.file("docs/faq.md"), "faq v1\n")
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        #expect(try await Self.syncctl(["checkpoint", "-C", fixture.path, "--name", "docs-v1"]).exit == .exited(0))
        try Files.write(fixture.file("docs/guide.md"), "guide v2\n")
        try Files.write(fixture.file("docs/faq.md"), "faq v2\n")
        try await syncd.settled()

        // A writer that knows nothing of the protocol writes a new note every 20 ms throughout.
        let root = fixture.path
        let writer = Task {
            try await Pace.every(.milliseconds(20), for: .seconds(3)) { index in
                try Files.write(root + "/notes/n\(index).md", "note \(index)\n")
            }
        }
        let rewind = try await Self.syncctl(["rewind", "-C", fixture.path, "docs-v1", "--", "docs/guide.md"])
        let notes = try await writer.value
        #expect(rewind.exit == .exited(0), "\(rewind.output)")
        try await syncd.settled()
        #expect(try String(contentsOfFile: fixture.file("docs/guide.md"), encoding: .utf8) == "guide v1\n")
        #expect(try String(contentsOfFile: fixture.file("docs/faq.md"), encoding: .utf8) == "faq v2\n")
        let tree = try await fixture.headTree()
        for index in 0..<notes {
            #expect(tree[Array("notes/n\(index).md".utf8)] != nil, "note \(index) lost")
        }
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("kill -9 in the middle of a rewind: nothing is lost (the state before is a checkpoint), fsck is clean, and a second rewind finishes it")
    func killDuringRewind() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        for name in ["a", "b", "c"] { try Files.write(fixture.file("\(name).md"), "\(name) v1\n") }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        #expect(try await Self.syncctl(["checkpoint", "-C", fixture.path, "--name", "v1"]).exit == .exited(0))
        for name in ["a", "b", "c"] { try Files.write(fixture.file("\(name).md"), "\(name) v2\n") }
        try await syncd.settled()
        let v2Tree = try await Self.tree(fixture, "HEAD")

        let rewind = ProcessHarness(
            ProcessHarness.product("syncctl"), ["rewind", "-C", fixture.path, "v1"], environment: ["SYNCD_FAILPOINT": "rewind-after-first-file"])
        try await rewind.waitForStderr("failpoint rewind-after-first-file reached", within: .seconds(60))
        rewind.signal(SIGKILL)
        _ = try await rewind.exit(within: .seconds(30))
        try await syncd.settled()
        // Half rewound and committed by syncd; the state before is a checkpoint.
        let before = try await Self.lastBeforeRewind(fixture)
        #expect(try await Self.tree(fixture, "refs/syncd/checkpoints/" + before) == v2Tree)
        try await fixture.fsck()
        let again = try await Self.syncctl(["rewind", "-C", fixture.path, "v1"])
        #expect(again.exit == .exited(0), "\(again.output)")
        try await syncd.settled()
        #expect(try await Self.tree(fixture, "HEAD") == Self.tree(fixture, "refs/syncd/checkpoints/v1"))
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("rewind --to a time; bad targets and a stopped syncd are refused with what to do")
    func rewindToTimeAndRefusals() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.write(fixture.file("x.md"), "old\n")
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        try await syncd.settled()
        let missing = try await Self.syncctl(["rewind", "-C", fixture.path, "no-such-checkpoint"])
        #expect(missing.exit == .exited(1))
        #expect(missing.output.contains("neither a checkpoint"))
        let both = try await Self.syncctl(["rewind", "-C", fixture.path, "HEAD", "--to", "1h"])
        #expect(both.exit == .exited(64))
        let tooOld = try await Self.syncctl(["rewind", "-C", fixture.path, "--to", "3650d"])
        #expect(tooOld.exit == .exited(1))
        #expect(tooOld.output.contains("no commit of this branch is that old"), "\(tooOld.output)")
        let future = try await Self.syncctl(["rewind", "-C", fixture.path, "--to", "2999-01-01T00:00"])
        #expect(future.exit == .exited(64))
        #expect(future.output.contains("is in the future"), "\(future.output)")
        // A path in neither commit is a typo, not "nothing to do"; paths outside the tree are named.
        let typo = try await Self.syncctl(["rewind", "-C", fixture.path, "HEAD", "--", "x.mdd"])
        #expect(typo.exit == .exited(1))
        #expect(typo.output.contains("x.mdd is in neither the current commit nor HEAD"), "\(typo.output)")
        let outside = try await Self.syncctl(["rewind", "-C", fixture.path, "HEAD", "--", "/etc/passwd"])
        #expect(outside.exit == .exited(1))
        #expect(outside.output.contains("outside the working tree"), "\(outside.output)")
        let up = try await Self.syncctl(["rewind", "-C", fixture.path, "HEAD", "--", "../x.md"])
        #expect(up.exit == .exited(1))
        #expect(up.output.contains("`..` is not taken"), "\(up.output)")
        let absolute = try await Self.syncctl(["rewind", "-C", fixture.path, "HEAD", "--", fixture.path + "/x.md"])
        #expect(absolute.exit == .exited(0), "\(absolute.output)")
        #expect(absolute.output.contains("nothing to do"), "\(absolute.output)")
        #expect(try await syncd.stop() == .exited(0))
        let stopped = try await Self.syncctl(["rewind", "-C", fixture.path, "HEAD~1"])
        #expect(stopped.exit == .exited(3), "\(stopped.output)")
        #expect(stopped.output.contains("start it first"))
    }

    @Test("a tracked directory the target has as a file is replaced by it; with an ignored file inside, the rewind is refused and nothing moves")
    func directoryBecomesFile() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.write(fixture.file(".gitignore"), "*.log\n")
        try Files.write(fixture.file("swap"), "a file\n")
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        try await syncd.settled()
        #expect(try await Self.syncctl(["checkpoint", "-C", fixture.path, "--name", "file"]).exit == .exited(0))
        try FileManager.default.removeItem(atPath: fixture.file("swap"))
        try Files.mkdirs(fixture.file("swap"))
        try Files.write(fixture.file("swap/inner"), "now a directory\n")
        try await syncd.settled()

        let rewind = try await Self.syncctl(["rewind", "-C", fixture.path, "file"])
        #expect(rewind.exit == .exited(0), "\(rewind.output)")
        try await syncd.settled()
        #expect(try String(contentsOfFile: fixture.file("swap"), encoding: .utf8) == "a file\n")
        #expect(try await Self.tree(fixture, "HEAD") == Self.tree(fixture, "refs/syncd/checkpoints/file"))

        // Back to the directory, now with an ignored file in it: refused, nothing touched.
        let before = try await Self.lastBeforeRewind(fixture)
        #expect(try await Self.syncctl(["rewind", "-C", fixture.path, before]).exit == .exited(0))
        try await syncd.settled()
        try Files.write(fixture.file("swap/build.log"), "ignored\n")
        let refused = try await Self.syncctl(["rewind", "-C", fixture.path, "file"])
        #expect(refused.exit == .exited(1), "\(refused.output)")
        #expect(refused.output.contains("never overwrites"), "\(refused.output)")
        #expect(try String(contentsOfFile: fixture.file("swap/build.log"), encoding: .utf8) == "ignored\n")
        #expect(try String(contentsOfFile: fixture.file("swap/inner"), encoding: .utf8) == "now a directory\n")
        #expect(try await syncd.stop() == .exited(0))
    }
}
