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
        // A plain clone pulling the same remote commits with `git pull --ff-only`, for comparison.
        _ = try await timedShell("git clone -q remote.git plain", in: root.path)
        var plainPulls: [Double] = []
        let repository = try await work.repository()
        let state = SyncService.stateDirectory(of: repository)
        try Syscall.makeDirectory(state)
        let syncer = Syncer(
            repository: repository,
            options: Syncer.Options(remote: "origin", backupDirectory: state + Array("/backups".utf8), stateDirectory: state),
            log: .discarding)
        let main = "refs/heads/main"
        _ = try await syncer.fetch(branch: main)  // the first, full backup
        var pushes: [Double] = []
        var pulls: [Double] = []
        var integrations: [Double] = []
        var backups: [Double] = []
        // A writer under the protocol takes the shared sync lock every 2 ms for the whole run;
        // the integration runs under the exclusive lock, as in the service.
        let lockPath = state + Array("/bench-sync.lock".utf8)
        let exclusive = try FileLock(path: lockPath)
        let writerLock = try FileLock(path: lockPath)
        let writer = Task { () -> [Double] in
            var waits: [Double] = []
            while !Task.isCancelled {
                let start = clock.now
                try? await Blocking.lockShared(writerLock)
                waits.append(seconds(clock.now - start))
                writerLock.unlock()
                try? await Pace.wait(.milliseconds(2))
            }
            return waits
        }
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
            while try !exclusive.tryLock(.exclusive) { try await Pace.wait(.milliseconds(1)) }
            let pulled = try await syncer.integrate(branch: main)
            exclusive.unlock()
            guard case .integrated = pulled else { throw TestFailure("pull round: \(pulled)") }
            integrations.append(seconds(clock.now - integrateStart))
            pulls.append(seconds(clock.now - pullStart))
            plainPulls.append(try await timedShell("git pull -q --ff-only", in: root.path + "/plain").wall)

            try Files.write(work.file("d9/f9.txt"), "backup \(run)\n")
            _ = try await timedShell("git commit -q -am backup", in: work.path)
            let backupStart = clock.now
            try await syncer.backup(branch: main, tracking: "refs/remotes/origin/main")
            backups.append(seconds(clock.now - backupStart))
            _ = try await syncer.push(branch: main)
        }
        writer.cancel()
        let waits = await writer.value.sorted()
        print("| \(label)-file repository: a writer's wait for the shared lock during pull rounds (\(waits.count) takes every 2 ms): median / 99th percentile / max | "
            + "\(format(median(waits) * 1000, "ms")) / \(format(waits[max(0, Int(Double(waits.count) * 0.99) - 1)] * 1000, "ms")) / \(format((waits.last ?? 0) * 1000, "ms")) |")
        print("| \(label)-file repository: push round (backup, fetch, push of one local commit) | \(format(median(pushes), "s")) |")
        print("| \(label)-file repository: pull round (backup, fetch, integrate one remote commit) | \(format(median(pulls), "s")) |")
        print("| \(label)-file repository: plain `git pull --ff-only` of the same commit in a clone (fetch and fast-forward; no backup, no lock) | \(format(median(plainPulls), "s")) |")
        print("| \(label)-file repository: of which the integration under the lock (fast-forward of one commit; what a writer can wait) | \(format(median(integrations), "s")) |")
        print("| \(label)-file repository: the backup step alone (incremental bundle of one commit, fsync, rename) | \(format(median(backups), "s")) |")
    }
}

/// A remote that accepts the connection and never answers, one write a second for 20 s: the
/// longest gap between commits (from the journal), next to maxLatency.
func benchHungRemote() async throws {
    var gaps: [Double] = []
    for _ in 0..<runs {
        let hole = try Blackhole()
        defer { hole.close() }
        let work = try await GitFixture(prefix: "syncd-bench-hung")
        defer { work.remove() }
        try Files.write(work.file("seed"), "seed\n")
        _ = try await timedShell("git add -A && git commit -q -m seed && git remote add origin git://127.0.0.1:\(hole.port)/r.git", in: work.path)
        let syncd = SyncdHarness(work, ["--quiet-period", "1500ms", "--max-latency", "2s", "--network-timeout", "1h", "--sync-interval", "1s"])
        try await syncd.ready()
        try await Pace.every(.seconds(1), for: .seconds(20)) { index in
            try Files.write(work.file("ticks.txt"), (0...index).map { "tick \($0)" }.joined(separator: "\n") + "\n")
        }
        try await waitUntil(.seconds(10), "last write committed") {
            try await work.run(["show", "HEAD:ticks.txt"], accepting: [0, 128]).contains("tick 19\n")
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let times = syncd.journal().filter { $0["event"] as? String == "commit" }
            .compactMap { ($0["time"] as? String).flatMap { formatter.date(from: $0)?.timeIntervalSince1970 } }
        gaps.append(zip(times.dropFirst(), times).map { $0 - $1 }.max() ?? 0)
        _ = try await syncd.stop()
    }
    print("| a remote that accepts and never answers, one write a second for 20 s (maxLatency 2 s): longest gap between commits | \(format(median(gaps), "s")) (max of \(runs) runs \(format(gaps.max() ?? 0, "s"))) |")
}
