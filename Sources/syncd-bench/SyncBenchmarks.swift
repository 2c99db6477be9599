import Foundation
import Glibc
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem
import SyncTestKit

/// Sync cycles over a local bare remote (file://) on 10,000- and 100,000-file repositories:
/// pushing one local commit, pulling (fast-forward) one remote commit, and the backup step.
func benchSync() async throws {
    for (directories, label) in [(100, "10,000"), (1000, "100,000")] {
        let root = try TemporaryDirectory(prefix: "syncd-bench-sync")
        defer { root.remove() }
        let work = try await GitFixture(in: root.path + "/work")
        for directory in 0..<directories {
            try Files.mkdirs(work.file("d\(directory)"))
            for file in 0..<100 { try Files.write(work.file("d\(directory)/f\(file).txt"), "\(directory) \(file)\n") }
        }
        _ = try await timedShell("git add -A && git commit -q -m initial && git clone -q --bare . ../remote.git && git remote add origin ../remote.git && git fetch -q origin", in: work.path)
        _ = try await timedShell("git clone -q remote.git other && git -C other config user.name o && git -C other config user.email o@x", in: root.path)
        let repository = try await work.repository()
        let state = SyncService.stateDirectory(of: repository)
        try Syscall.makeDirectory(state)
        let syncer = Syncer(
            repository: repository,
            options: Syncer.Options(remote: "origin", backupDirectory: state + Array("/backups".utf8), stateDirectory: state),
            log: { _, _ in })
        _ = try await syncer.cycle(branch: "refs/heads/main", mayChangeWorkTree: true)  // the first, full backup
        var pushes: [Double] = []
        var pulls: [Double] = []
        var backups: [Double] = []
        for run in 0..<runs {
            try Files.write(work.file("d5/f5.txt"), "local \(run)\n")
            _ = try await timedShell("git commit -q -am local", in: work.path)
            let start = clock.now
            let outcome = try await syncer.cycle(branch: "refs/heads/main", mayChangeWorkTree: true)
            guard outcome == .synced(pushed: true, integrated: false) else { throw TestFailure("push cycle: \(outcome)") }
            pushes.append(seconds(clock.now - start))

            _ = try await timedShell("git pull -q --ff-only && echo remote \(run) > d7/f7.txt && git commit -q -am remote && git push -q", in: root.path + "/other")
            let pullStart = clock.now
            let pulled = try await syncer.cycle(branch: "refs/heads/main", mayChangeWorkTree: true)
            guard pulled == .synced(pushed: false, integrated: true) else { throw TestFailure("pull cycle: \(pulled)") }
            pulls.append(seconds(clock.now - pullStart))

            try Files.write(work.file("d9/f9.txt"), "backup \(run)\n")
            _ = try await timedShell("git commit -q -am backup", in: work.path)
            let backupStart = clock.now
            try await syncer.backup(branch: "refs/heads/main", tracking: "refs/remotes/origin/main")
            backups.append(seconds(clock.now - backupStart))
            _ = try await syncer.cycle(branch: "refs/heads/main", mayChangeWorkTree: true)
        }
        print("| \(label)-file repository: sync cycle pushing one local commit (backup, fetch, push) | \(format(median(pushes), "s")) |")
        print("| \(label)-file repository: sync cycle pulling one remote commit (backup, fetch, stash, fast-forward, restore) | \(format(median(pulls), "s")) |")
        print("| \(label)-file repository: the backup step alone (incremental bundle of one commit, fsync, rename) | \(format(median(backups), "s")) |")
    }
}
