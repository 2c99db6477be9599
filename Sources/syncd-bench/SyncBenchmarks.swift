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
        let main = "refs/heads/main"
        _ = try await syncer.fetch(branch: main)  // the first, full backup
        var pushes: [Double] = []
        var pulls: [Double] = []
        var integrations: [Double] = []
        var backups: [Double] = []
        for run in 0..<runs {
            try Files.write(work.file("d5/f5.txt"), "local \(run)\n")
            _ = try await timedShell("git commit -q -am local", in: work.path)
            let start = clock.now
            guard case .fetched(0, 1) = try await syncer.fetch(branch: main) else { throw TestFailure("push round: fetch") }
            let pushed = try await syncer.push(branch: main)
            guard case .pushed = pushed else { throw TestFailure("push round: \(pushed)") }
            pushes.append(seconds(clock.now - start))

            _ = try await timedShell("git pull -q --ff-only && echo remote \(run) > d7/f7.txt && git commit -q -am remote && git push -q", in: root.path + "/other")
            let pullStart = clock.now
            guard case .fetched(1, 0) = try await syncer.fetch(branch: main) else { throw TestFailure("pull round: fetch") }
            let integrateStart = clock.now
            let pulled = try await syncer.integrate(branch: main)
            guard case .integrated = pulled else { throw TestFailure("pull round: \(pulled)") }
            integrations.append(seconds(clock.now - integrateStart))
            pulls.append(seconds(clock.now - pullStart))

            try Files.write(work.file("d9/f9.txt"), "backup \(run)\n")
            _ = try await timedShell("git commit -q -am backup", in: work.path)
            let backupStart = clock.now
            try await syncer.backup(branch: main, tracking: "refs/remotes/origin/main")
            backups.append(seconds(clock.now - backupStart))
            _ = try await syncer.push(branch: main)
        }
        print("| \(label)-file repository: push round (backup, fetch, push of one local commit) | \(format(median(pushes), "s")) |")
        print("| \(label)-file repository: pull round (backup, fetch, integrate one remote commit) | \(format(median(pulls), "s")) |")
        print("| \(label)-file repository: of which the integration under the lock (fast-forward of one commit; what a writer can wait) | \(format(median(integrations), "s")) |")
        print("| \(label)-file repository: the backup step alone (incremental bundle of one commit, fsync, rename) | \(format(median(backups), "s")) |")
    }
}
