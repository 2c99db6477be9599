import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Testing

/// `syncctl conflicts`: the conflict branches syncd made, here and on a real remote.
@Suite("syncctl conflicts (real remotes)", .serialized)
struct ConflictsTests {
    func conflicts(_ workspace: GitFixture, _ extra: [String] = []) async throws -> (ProcessHarness, [String: [String: Any]]) {
        let process = syncctlProcess(["conflicts", "-C", workspace.path, "--json"] + extra)
        _ = try await process.exit()
        let object = (try? JSONSerialization.jsonObject(with: Data(process.stdout.utf8))) as? [String: Any]
        var byName: [String: [String: Any]] = [:]
        for entry in object?["conflicts"] as? [[String: Any]] ?? [] {
            if let name = entry["name"] as? String { byName[name] = entry }
        }
        return (process, byName)
    }

    func localBranchExists(_ workspace: GitFixture, _ name: String) async throws -> Bool {
        try await workspace.git.run(["rev-parse", "--verify", "--quiet", GitArgument("refs/heads/\(name)")], readOnly: true, acceptedExitCodes: [0, 1]).exitCode == 0
    }

    @Test("conflict branches are listed here and on the remote with files, age and state; --clean deletes only resolved ones, here and there")
    func listAndClean() async throws {
        let remote = try await RemoteSyncTests.Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let b = try await remote.clone("b")
        // B's version reaches the remote first.
        try Files.write(b.file("README"), "B's line\n")
        try await b.run(["commit", "-q", "-am", "B edits"])
        try await b.run(["push", "-q", "origin", "main"])
        // Another machine's conflict branch whose commit is in no main branch: never cleaned.
        let other = "syncd/conflict/other-host/20260101T000000-000Z"
        try Files.write(b.file("other.txt"), "B's unmerged side\n")
        try await b.run(["add", "other.txt"])
        let tree = try await b.run(["write-tree"]).filter { !$0.isWhitespace }
        let unmerged = try await b.run(["commit-tree", GitArgument(tree), "-p", "HEAD", "-m", "B's side"]).filter { !$0.isWhitespace }
        try await b.run(["push", "-q", "origin", GitArgument("\(unmerged):refs/heads/\(other)")])

        let syncA = SyncdHarness(a, RemoteSyncTests.fast)
        try Files.write(a.file("README"), "A's line\n")
        try await syncA.ready()
        try await waitUntil(.seconds(60), "conflict in state.json") { !((syncA.state()?["conflict_branch"] as? String) ?? "").isEmpty }
        let side = try #require(syncA.state()?["conflict_branch"] as? String)
        try await waitUntil(.seconds(60), "the conflict branch on the remote") { try await remote.remoteBranches().contains("refs/heads/\(side)") }

        let (listed, before) = try await conflicts(a)
        #expect(listed.finished == .exited(0), "\(listed.stderr)")
        #expect(before.count == 2, "\(listed.stdout)")
        let mine = try #require(before[side], "\(listed.stdout)")
        #expect(mine["here"] as? Bool == true && mine["on_remote"] as? Bool == true)
        #expect(mine["resolved"] as? Bool == false)
        #expect((mine["files"] as? [String])?.contains("README") == true, "\(mine)")
        #expect((mine["age_seconds"] as? NSNumber).map { $0.doubleValue >= 0 && $0.doubleValue < 600 } == true, "\(mine)")
        let theirs = try #require(before[other], "\(listed.stdout)")
        #expect(theirs["here"] as? Bool == false && theirs["on_remote"] as? Bool == true)
        #expect(theirs["resolved"] as? Bool == false)
        #expect(theirs["files"] as? [String] == ["other.txt"])
        #expect(theirs["created_at"] as? String == "2026-01-01T00:00:00.000Z")
        let text = syncctlProcess(["conflicts", "-C", a.path])
        #expect(try await text.exit() == .exited(0))
        #expect(text.stdout.contains("\(side)  here and on origin") && text.stdout.contains("UNRESOLVED"), "\(text.stdout)")
        #expect(text.stdout.contains("git merge origin/\(other)"), "\(text.stdout)")

        // Nothing is resolved yet: --clean deletes nothing.
        let (keep, _) = try await conflicts(a, ["--clean"])
        #expect(keep.finished == .exited(0), "\(keep.stderr)")
        #expect(try await localBranchExists(a, side))
        let branchesBefore = try await remote.remoteBranches()
        #expect(branchesBefore.contains("refs/heads/\(side)") && branchesBefore.contains("refs/heads/\(other)"))

        // A person resolves it the way the log says; syncd pushes the merge.
        _ = try await a.git.run(["merge", "-q", "origin/main"], acceptedExitCodes: [0, 1])
        try Files.write(a.file("README"), "A's line and B's line\n")
        try await a.run(["add", "README"])
        try await a.run(["commit", "-q", "--no-edit"])
        try await waitUntil(.seconds(60), "pushed after the resolution") { try await remote.remoteHead() == a.head() }
        try await waitUntil(.seconds(30), "conflict cleared") { (syncA.state()?["conflict_branch"] as? String) == "" }

        let (afterMerge, after) = try await conflicts(a)
        #expect(afterMerge.finished == .exited(0))
        #expect(after[side]?["resolved"] as? Bool == true, "\(afterMerge.stdout)")
        #expect(after[other]?["resolved"] as? Bool == false)

        let (cleaned, _) = try await conflicts(a, ["--clean"])
        #expect(cleaned.finished == .exited(0), "\(cleaned.stdout)\(cleaned.stderr)")
        let stillHere = try await localBranchExists(a, side)
        #expect(!stillHere, "the resolved conflict branch is still here")
        let branchesAfter = try await remote.remoteBranches()
        #expect(!branchesAfter.contains("refs/heads/\(side)"), "\(branchesAfter)")
        #expect(branchesAfter.contains("refs/heads/\(other)"), "an unresolved conflict branch was deleted")
        let (_, left) = try await conflicts(a)
        #expect(Array(left.keys) == [other])
        #expect(try await syncA.stop() == .exited(0))
        try await a.fsck()
    }
}
