import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncSystem
import SyncEngine
import SyncTestKit
import Testing

/// Squashed pushes (issue 14): one commit per window on the remote's branch, the originals kept
/// locally and on the side ref, nothing of a person's or already pushed rewritten.
@Suite("squashed pushes (real processes)", .serialized)
struct SquashTests {
    static let arguments = RemoteSyncTests.fast + ["--push-delay", "0", "--squash", "1h"]

    static func syncctl(_ arguments: [String]) async throws -> (exit: ProcessHarness.Exit, output: String) {
        let process = syncctlProcess(arguments)
        let exit = try await process.exit(within: .seconds(120))
        return (exit, process.stdout + process.stderr)
    }

    static func remoteRef(_ remote: RemoteSyncTests.Remote, _ ref: String) async throws -> String? {
        let probe = try await GitFixture(in: remote.root.path + "/probe")
        let result = try await probe.git.run(["ls-remote", GitArgument(remote.url), GitArgument(ref)], readOnly: true)
        return result.text.split(separator: "\t").first.map(String.init)
    }

    @Test("20 commits reach the remote's branch as one whose tree is the local one; the originals stay reachable here and on the side ref; a person's commit in between is kept as is")
    func squashOnSync() async throws {
        let remote = try await RemoteSyncTests.Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let seed = try #require(try await a.head())
        let syncd = SyncdHarness(a, Self.arguments)
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        for index in 0..<10 {
            try Files.write(a.file("early\(index).txt"), "\(index)\n")
            try await syncd.settled()
        }
        // A person's commit in the middle.
        try Files.write(a.file("person.txt"), "by hand\n")
        try await a.run(["add", "person.txt"])
        try await a.run(["commit", "-qm", "a person's commit"])
        let person = try #require(try await a.head())
        // Pushed as it is (with the syncd commits before it, which folding would put under it)
        // at the next round, before syncd's next commit is made on top.
        try await waitUntil(.seconds(30), "the person's commit is on the remote") { try await remote.remoteHead() == person }
        for index in 0..<10 {
            try Files.write(a.file("late\(index).txt"), "\(index)\n")
            try await syncd.settled()
        }
        let localTip = try #require(try await a.head())
        // Held: the branch on the remote has not moved; the side ref has every original.
        try await waitUntil(.seconds(30), "the originals are on the side ref") {
            let wip = "refs/syncd/wip/\(ProcessTable.hostName)-\(Syncer.cloneID(Array((a.path + "/.git").utf8)))/main"
            return try await Self.remoteRef(remote, wip) == localTip
        }
        // The ten after it wait for the window.
        #expect(try await remote.remoteHead() == person)

        let sync = try await Self.syncctl(["sync", "-C", a.path])
        #expect(sync.exit == .exited(0), "\(sync.output)")
        let pushed = try #require(try await remote.remoteHead())
        #expect(pushed != localTip)
        #expect(try await a.run(["rev-parse", GitArgument(pushed + "^{tree}")]) == a.run(["rev-parse", GitArgument(localTip + "^{tree}")]))
        // seed, the early commits and the person's commit as they were, then one squashed commit.
        let history = try await a.run(["log", "--oneline", "--format=%h %s %(trailers:key=Syncd-Batch,valueonly)", GitArgument("\(seed)..\(pushed)")])
        #expect(try await a.run(["rev-parse", GitArgument(pushed + "^")]).trimmed == person, "\(history)")
        #expect(try await a.run(["rev-list", "--count", GitArgument("\(seed)..\(pushed)")]).trimmed == "12")
        let message = try await a.run(["log", "-1", "--format=%B", GitArgument(pushed)])
        #expect(message.contains("Syncd-Squashed: 10 commits"), "\(message)")
        #expect(message.contains("A late9.txt"))
        // The originals: kept here.
        let kept = try await a.run(["for-each-ref", "--format=%(objectname)", "refs/syncd/squashed/"])
        #expect(kept.split(separator: "\n").map(String.init).contains(localTip))
        try await a.fsck()
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("two squashing workspaces that pull each other's squashed commits converge; nothing already pushed is rewritten")
    func twoWorkspacesConverge() async throws {
        let remote = try await RemoteSyncTests.Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let b = try await remote.clone("b")
        let syncA = SyncdHarness(a, Self.arguments)
        let syncB = SyncdHarness(b, Self.arguments)
        defer {
            syncA.process.signal(SIGKILL)
            syncB.process.signal(SIGKILL)
        }
        try await syncA.ready()
        try await syncB.ready()
        var pushedSoFar: [String] = []
        for round in 0..<3 {
            for index in 0..<3 {
                try Files.write(a.file("a-\(round)-\(index).txt"), "a\n")
                try Files.write(b.file("b-\(round)-\(index).txt"), "b\n")
                try await syncA.settled()
                try await syncB.settled()
            }
            for side in [a, b] {
                let sync = try await Self.syncctl(["sync", "-C", side.path])
                #expect(sync.exit == .exited(0), "\(sync.output)")
            }
            // Everything pushed before is still in the remote's history.
            let head = try #require(try await remote.remoteHead())
            for commit in pushedSoFar {
                let bare = GitRunner(workTree: Array(remote.url.utf8))
                #expect(try await bare.run(["merge-base", "--is-ancestor", GitArgument(commit), GitArgument(head)], acceptedExitCodes: [0, 1]).exitCode == 0)
            }
            pushedSoFar.append(head)
        }
        #expect(try await Self.syncctl(["sync", "-C", a.path]).exit == .exited(0))
        #expect(try await Self.syncctl(["sync", "-C", b.path]).exit == .exited(0))
        #expect(try await Self.syncctl(["sync", "-C", a.path]).exit == .exited(0))
        let treeA = try await a.run(["rev-parse", "HEAD^{tree}"])
        let treeB = try await b.run(["rev-parse", "HEAD^{tree}"])
        #expect(treeA == treeB)
        #expect(try await a.headTree().count == 1 + 18)
        #expect(try await syncA.stop() == .exited(0))
        #expect(try await syncB.stop() == .exited(0))
    }

    @Test("kill -9 between keeping the originals and moving the branch: nothing lost, fsck clean, the restart squashes")
    func killDuringSquash() async throws {
        let remote = try await RemoteSyncTests.Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let first = SyncdHarness(a, Self.arguments, environment: ["SYNCD_FAILPOINT": "squash-before-move"])
        defer { first.process.signal(SIGKILL) }
        try await first.ready()
        for index in 0..<3 {
            try Files.write(a.file("f\(index).txt"), "\(index)\n")
            try await first.settled()
        }
        let tip = try #require(try await a.head())
        let sync = syncctlProcess(["sync", "-C", a.path, "--timeout", "60s"])
        try await first.process.waitForStderr("failpoint squash-before-move reached", within: .seconds(60))
        try await first.kill9()
        sync.signal(SIGKILL)
        #expect(try await a.head() == tip)
        try await a.fsck()
        let second = SyncdHarness(a, Self.arguments)
        defer { second.process.signal(SIGKILL) }
        try await second.ready()
        let again = try await Self.syncctl(["sync", "-C", a.path])
        #expect(again.exit == .exited(0), "\(again.output)")
        let pushed = try #require(try await remote.remoteHead())
        #expect(try await a.run(["rev-parse", GitArgument(pushed + "^{tree}")]) == a.run(["rev-parse", GitArgument(tip + "^{tree}")]))
        #expect(try await a.headTree().count == 4)
        #expect(try await second.stop() == .exited(0))
    }

    @Test("syncctl squash folds with a person's message")
    func squashByHand() async throws {
        let remote = try await RemoteSyncTests.Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        // Held by the window, so unpushed when the person asks.
        let syncd = SyncdHarness(a, Self.arguments)
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        for index in 0..<4 {
            try Files.write(a.file("g\(index).txt"), "\(index)\n")
            try await syncd.settled()
        }
        let squash = try await Self.syncctl(["squash", "-C", a.path, "-m", "Add the g files"])
        #expect(squash.exit == .exited(0), "\(squash.output)")
        let pushed = try #require(try await remote.remoteHead())
        #expect(try await a.run(["log", "-1", "--format=%s", GitArgument(pushed)]).trimmed == "Add the g files")
        #expect(try await a.run(["rev-list", "--count", GitArgument(pushed)]).trimmed == "2")
        #expect(try await syncd.stop() == .exited(0))
    }
}
