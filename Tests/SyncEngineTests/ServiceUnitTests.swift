import Foundation
import Glibc
import SyncEngine
import SyncGit
import SyncSystem
import SyncTestKit
import Testing

/// What `syncctl enable` writes: the drop-in and the paths syncd needs to write outside the tree.
@Suite("service unit drop-in")
struct ServiceUnitTests {
    @Test("the owner drop-in: User=, Group=, ReadWritePaths= only when needed")
    func dropIn() {
        let system = ServiceUnit.ownerDropIn(workspace: "/home/alice/notes", user: "alice", group: "alice", writablePaths: [])
        #expect(system.contains("[Service]\nUser=alice\nGroup=alice\n"))
        #expect(!system.contains("ReadWritePaths"))
        #expect(system.contains("syncctl disable /home/alice/notes"))
        let user = ServiceUnit.ownerDropIn(workspace: "/w", user: nil, group: nil, writablePaths: ["/srv/git", "-/srv/x.git"])
        #expect(!user.contains("User="))
        #expect(user.hasSuffix("[Service]\nReadWritePaths=/srv/git -/srv/x.git\n"))
    }

    @Test("paths are quoted for unit files: spaces, quotes, backslashes, % specifiers")
    func quoting() {
        #expect(ServiceUnit.pathEntry("/srv/plain") == "/srv/plain")
        #expect(ServiceUnit.pathEntry("/srv/plain", optional: true) == "-/srv/plain")
        #expect(ServiceUnit.pathEntry("/srv/100%") == "/srv/100%%")
        #expect(ServiceUnit.pathEntry("/srv/a b") == "\"/srv/a b\"")
        #expect(ServiceUnit.pathEntry("/srv/a\"b\\c") == "\"/srv/a\\\"b\\\\c\"")
    }

    @Test("writable paths: a git dir elsewhere, an absolute lock dir, the metrics directory, local remotes; nothing inside the tree")
    func writablePaths() {
        let inside = ServiceUnit.writablePaths(
            workTree: "/home/a/w", gitDir: "/home/a/w/.git", commonDir: "/home/a/w/.git", lockDir: ".git/syncd-locks",
            metricsFile: nil, remoteURLs: ["git@github.com:a/w.git", "https://example.com/w.git", "ssh://h/w.git", "file://host/w.git"])
        #expect(inside.isEmpty)
        let outside = ServiceUnit.writablePaths(
            workTree: "/home/a/w", gitDir: "/srv/git/w/worktrees/w", commonDir: "/srv/git/w", lockDir: "/run/syncd/w",
            metricsFile: "/var/lib/node_exporter/syncd.prom",
            remoteURLs: ["file:///srv/remotes/w.git", "/srv/remotes/w.git", "../backup.git"])
        #expect(outside == [
            "/srv/git/w/worktrees/w", "/srv/git/w", "-/run/syncd/w", "-/var/lib/node_exporter", "-/srv/remotes/w.git", "-/home/a/backup.git",
        ])
    }

    @Test("the workspace owner is found from any directory inside, through a .git file, without git")
    func owner() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        try Files.mkdirs(fixture.file("sub/deeper"))
        let owner = try #require(WorkspaceOwner.find(fixture.file("sub/deeper")))
        let top = try #require(WorkspaceOwner.find(fixture.path))
        #expect(owner == top)
        #expect(owner.uid == geteuid())
        #expect(owner.isOwned(by: geteuid()))
        #expect(owner.gitDirDisplay == owner.workTreeDisplay + "/.git")
        // A linked worktree: .git is a file; objects and refs live in the main repository.
        try Files.write(fixture.file("f"), "x\n")
        _ = try await fixture.git.run(["add", "f"])
        _ = try await fixture.git.run(["commit", "-qm", "one"])
        let linked = try TemporaryDirectory(prefix: "syncd-linked")
        defer { linked.remove() }
        _ = try await fixture.git.run(["worktree", "add", "-q", GitArgument(linked.sub("wt"))])
        let worktree = try #require(WorkspaceOwner.find(linked.sub("wt")))
        #expect(worktree.gitDirDisplay.hasPrefix(owner.gitDirDisplay + "/worktrees/"))
        #expect(String(decoding: worktree.commonDir, as: UTF8.self) == owner.gitDirDisplay)
        #expect(WorkspaceOwner.find("/") == nil)
    }
}
