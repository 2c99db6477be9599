import Foundation
import Glibc
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem
import SyncTestKit

/// CPU seconds used so far by this process and its waited-for children (git).
func cpuSeconds() -> Double {
    var me = rusage()
    var children = rusage()
    getrusage(RUSAGE_SELF.rawValue, &me)
    getrusage(RUSAGE_CHILDREN.rawValue, &children)
    func total(_ usage: rusage) -> Double {
        Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }
    return total(me) + total(children)
}

/// CPU seconds of `pid` and its waited-for children, from /proc/PID/stat (utime, stime, cutime, cstime).
func processCPUSeconds(_ pid: pid_t) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = text.lastIndex(of: ")")
    else { return 0 }
    let fields = text[text.index(after: close)...].split(separator: " ")
    // After ")": state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let ticks = [11, 12, 13, 14].compactMap { Double(fields[$0]) }.reduce(0, +)
    return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// A shell command in `directory`; returns (wall seconds, CPU seconds of the command).
func timedShell(_ command: String, in directory: String) async throws -> (wall: Double, cpu: Double) {
    let cpuBefore = cpuSeconds()
    let start = clock.now
    let process = ProcessHarness("/bin/sh", ["-c", command], workingDirectory: directory)
    let exit = try await process.exit(within: .seconds(600))
    guard exit == .exited(0) else { throw TestFailure("`\(command)` failed: \(exit) \(process.stderr)") }
    return (seconds(clock.now - start), cpuSeconds() - cpuBefore)
}

/// 1,000 directories × 100 files, committed.
func hundredThousandFileRepo() async throws -> GitFixture {
    let fixture = try await GitFixture(prefix: "syncd-bench-100k")
    for directory in 0..<1000 {
        try Files.mkdirs(fixture.file("d\(directory)"))
        for file in 0..<100 { try Files.write(fixture.file("d\(directory)/f\(file).txt"), "\(directory) \(file)\n") }
    }
    _ = try await timedShell("git add -A && git commit -q -m initial", in: fixture.path)
    return fixture
}

/// One changed file in a 100,000-file repository: syncd's committer against `git add -A && git commit`.
func benchCommitOneFile() async throws {
    let fixture = try await hundredThousandFileRepo()
    defer { fixture.remove() }
    let repository = try await fixture.repository()
    let stateDirectory = SyncService.stateDirectory(of: repository)
    try Syscall.makeDirectory(stateDirectory)

    var results: [(String, [Double], [Double])] = []
    for fsync in [true, false] {
        var options = Committer.Options()
        options.fsync = fsync
        let committer = Committer(repository: repository, stateDirectory: stateDirectory, options: options, log: .discarding)
        try await committer.prepare()
        var walls: [Double] = []
        var cpus: [Double] = []
        for run in 0...runs {
            try Files.write(fixture.file("d5/f5.txt"), "syncd \(fsync) \(run)\n")
            let cpuBefore = cpuSeconds()
            let start = clock.now
            let outcome = try await committer.commit(CommitRequest(paths: [RepoPath("d5/f5.txt")], batch: run, trigger: "bench"))
            guard case .committed = outcome else { throw TestFailure("no commit: \(outcome)") }
            if run == 0 { continue }  // the first run splits the index once
            walls.append(seconds(clock.now - start))
            cpus.append(cpuSeconds() - cpuBefore)
        }
        results.append(("syncd committer, fsync \(fsync ? "on (default)" : "off")", walls, cpus))
    }
    var walls: [Double] = []
    var cpus: [Double] = []
    for run in 0..<runs {
        try Files.write(fixture.file("d5/f5.txt"), "git \(run)\n")
        let (wall, cpu) = try await timedShell("git add -A && git commit -q -m x", in: fixture.path)
        walls.append(wall)
        cpus.append(cpu)
    }
    results.append(("`git add -A && git commit`", walls, cpus))
    for (name, walls, cpus) in results {
        print("| one changed file in a 100,000-file repo: \(name) | \(format(median(walls), "s")) wall | \(format(median(cpus), "s")) CPU |")
    }
}

/// 10,000 files in 100 directories, written in a burst while `syncd run` watches: time from the
/// last write until HEAD's tree equals the working tree, commits made, and syncd's CPU; then
/// the same tree committed once by `git add -A && git commit`.
func benchRunBurst() async throws {
    var latencies: [Double] = []
    var commitCounts: [Double] = []
    var cpus: [Double] = []
    var gitWalls: [Double] = []
    var gitCPUs: [Double] = []
    for _ in 0..<runs {
        let fixture = try await GitFixture(prefix: "syncd-bench-run-burst")
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture)
        try await syncd.ready()
        let pid = try requirePid(syncd.process.pid)
        let cpuBefore = processCPUSeconds(pid)
        for directory in 0..<100 {
            try Files.mkdirs(fixture.file("dir\(directory)"))
            for file in 0..<100 { try Files.write(fixture.file("dir\(directory)/file\(file).txt"), "\(directory)-\(file)\n") }
        }
        let written = clock.now
        try await waitUntil(.seconds(300), interval: .milliseconds(10), "burst committed") {
            (syncd.state()?["last_commit"] as? String).map { !$0.isEmpty } == true
                && syncd.state()?["phase"] as? String == "idle"
        }
        latencies.append(seconds(clock.now - written))
        guard try await fixture.statusLines().isEmpty else { throw TestFailure("not everything committed") }
        cpus.append(processCPUSeconds(pid) - cpuBefore)
        commitCounts.append(Double(try await fixture.commitCount()))
        _ = try await syncd.stop()

        let plain = try await GitFixture(prefix: "syncd-bench-git-burst")
        defer { plain.remove() }
        for directory in 0..<100 {
            try Files.mkdirs(plain.file("dir\(directory)"))
            for file in 0..<100 { try Files.write(plain.file("dir\(directory)/file\(file).txt"), "\(directory)-\(file)\n") }
        }
        let (wall, cpu) = try await timedShell("git add -A && git commit -q -m burst", in: plain.path)
        gitWalls.append(wall)
        gitCPUs.append(cpu)
    }
    print("| 10,000-file burst under `syncd run`: last write → HEAD's tree equals the working tree (default 2 s quiet period included) | \(format(median(latencies), "s")) |")
    print("| 10,000-file burst under `syncd run`: commits made | \(Int(median(commitCounts))) |")
    print("| 10,000-file burst under `syncd run`: syncd CPU (itself and its git children) | \(format(median(cpus), "s")) |")
    print("| 10,000-file burst, one `git add -A && git commit` after the burst | \(format(median(gitWalls), "s")) wall, \(format(median(gitCPUs), "s")) CPU |")
}

/// CPU used by an idle `syncd run` over 60 s with 10,000 files (100 directories) watched.
func benchIdle(seconds window: Int = 60) async throws {
    let fixture = try await GitFixture(prefix: "syncd-bench-idle")
    defer { fixture.remove() }
    for directory in 0..<100 {
        try Files.mkdirs(fixture.file("dir\(directory)"))
        for file in 0..<100 { try Files.write(fixture.file("dir\(directory)/file\(file).txt"), "\(directory)-\(file)\n") }
    }
    let syncd = SyncdHarness(fixture)
    try await syncd.ready(within: .seconds(120))
    try await syncd.settled(within: .seconds(120))
    let pid = try requirePid(syncd.process.pid)
    let head = try await fixture.head()
    let before = processCPUSeconds(pid)
    try await Pace.wait(.seconds(window))
    let used = processCPUSeconds(pid) - before
    let commitsDuring = try await fixture.head() == head ? 0 : 1
    _ = try await syncd.stop()
    print("| idle `syncd run`, 10,000 files watched: CPU over \(window) s | \(format(used, "s")) (\(commitsDuring == 0 ? "no commits" : "a commit happened!")) |")
}

/// Issue 13: the object store after 1,000 commits of mixed sizes (9 in 10 touch 1-5 files, 1 in
/// 10 adds 100-400), staged with the pack path against loose objects only: packs and loose
/// objects left (with syncd's `gc --auto` every 100 commits), and what `git status`, a full push
/// to a bare remote and a fresh clone from it then cost.
func benchObjectStore() async throws {
    for (label, threshold) in [("pack path (64+ paths)", Committer.packThreshold), ("loose objects only", Int.max)] {
        let fixture = try await GitFixture(prefix: "syncd-bench-store")
        defer { fixture.remove() }
        let repository = try await fixture.repository()
        let stateDirectory = SyncService.stateDirectory(of: repository)
        try Syscall.makeDirectory(stateDirectory)
        var options = Committer.Options()
        options.packThreshold = threshold
        let committer = Committer(repository: repository, stateDirectory: stateDirectory, options: options, log: .discarding)
        try await committer.prepare()
        var random = SeededRandom(seed: 13)
        var counter = 0
        let start = clock.now
        for batch in 1...1000 {
            var paths: Set<RepoPath> = []
            let big = batch % 10 == 0
            let count = big ? Int.random(in: 100...400, using: &random) : Int.random(in: 1...5, using: &random)
            let directory = "d\(batch % 37)"
            try Files.mkdirs(fixture.file(directory))
            for _ in 0..<count {
                counter += 1
                let name = big || counter % 3 == 0 ? "\(directory)/n\(counter).txt" : "\(directory)/m\(counter % 50).txt"
                try Files.write(fixture.file(name), "\(counter) \(String(repeating: "y", count: Int.random(in: 10...3000, using: &random)))\n")
                paths.insert(RepoPath(name))
            }
            _ = try await committer.commit(CommitRequest(paths: paths, batch: batch, trigger: "bench"))
        }
        let total = seconds(clock.now - start)
        let packs = ((try? FileManager.default.contentsOfDirectory(atPath: fixture.path + "/.git/objects/pack")) ?? []).filter { $0.hasSuffix(".pack") }.count
        let counted = try await fixture.run(["count-objects", "-v"])
        let loose = counted.split(separator: "\n").first { $0.hasPrefix("count:") }.map { String($0.dropFirst(7)) } ?? "?"
        var statusTimes: [Double] = []
        for _ in 0..<runs { statusTimes.append(try await timedShell("git status --porcelain >/dev/null", in: fixture.path).wall) }
        let remote = fixture.path + "-remote.git"
        defer { try? FileManager.default.removeItem(atPath: remote) }
        _ = try await timedShell("git init -q --bare '\(remote)'", in: fixture.path)
        let push = try await timedShell("git push -q '\(remote)' HEAD:refs/heads/main", in: fixture.path)
        let clone = try await timedShell("git clone -q '\(remote)' '\(remote)-clone' && rm -rf '\(remote)-clone'", in: fixture.path)
        print("| 1,000 mixed commits, \(label): commit time / packs / loose objects / `git status` / full push / clone | \(format(total, "s")) / \(packs) / \(loose) / \(format(median(statusTimes), "s")) / \(format(push.wall, "s")) / \(format(clone.wall, "s")) |")
    }
}

/// Issue 13: commits keep landing during a long burst. 10,000 files written over about 10 s
/// (one every millisecond, in 100 new directories) under `syncd run` with `quietPeriod` 1 s
/// and `maxLatency` 5 s: the longest gap between the first write and the first commit, or
/// between two commits, while the writing goes on; and a 50,000-file burst: settle time, peak
/// resident memory (VmHWM), and that every file is in HEAD.
func benchBurstBounds() async throws {
    var gaps: [Double] = []
    for _ in 0..<runs {
        let fixture = try await GitFixture(prefix: "syncd-bench-burst-gap")
        defer { fixture.remove() }
        let syncd = SyncdHarness(fixture, ["--quiet-period", "1s", "--max-latency", "5s"])
        try await syncd.ready()
        let start = Date()
        for directory in 0..<100 {
            try Files.mkdirs(fixture.file("dir\(directory)"))
            for file in 0..<100 {
                try Files.write(fixture.file("dir\(directory)/file\(file).txt"), "\(directory)-\(file)\n")
                try await Pace.wait(.microseconds(900))
            }
        }
        let end = Date()
        try await syncd.settled(within: .seconds(300))
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let commits = syncd.journal().filter { $0["event"] as? String == "commit" }
            .compactMap { ($0["time"] as? String).flatMap(formatter.date(from:)) }.filter { $0 > start }.sorted()
        var marks = [start] + commits.filter { $0 <= end }
        if let next = commits.first(where: { $0 > end }) { marks.append(next) }
        let gap = zip(marks, marks.dropFirst()).map { $1.timeIntervalSince($0) }.max() ?? end.timeIntervalSince(start)
        gaps.append(gap)
        _ = try await syncd.stop()
    }
    print("| 10,000 files written over ~10 s (`quietPeriod` 1 s, `maxLatency` 5 s): longest gap without a commit while writing | \(format(median(gaps), "s")) |")

    let fixture = try await GitFixture(prefix: "syncd-bench-burst-50k")
    defer { fixture.remove() }
    let syncd = SyncdHarness(fixture, ["--quiet-period", "1s"])
    try await syncd.ready()
    let pid = try requirePid(syncd.process.pid)
    for directory in 0..<500 {
        try Files.mkdirs(fixture.file("dir\(directory)"))
        for file in 0..<100 { try Files.write(fixture.file("dir\(directory)/file\(file).txt"), "\(directory)-\(file)\n") }
    }
    let written = clock.now
    try await syncd.settled(within: .seconds(600))
    let settle = seconds(clock.now - written)
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let peak = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
        .flatMap { Double($0.split(separator: " ").dropFirst().first.map(String.init) ?? "") } ?? 0
    let count = try await fixture.headTree().count
    _ = try await syncd.stop()
    print("| 50,000-file burst (500 directories): settle / commits / files in HEAD / peak RSS (VmHWM) | \(format(settle, "s")) / \(try await fixture.commitCount()) / \(count) / \(format(peak / 1024, "MiB")) |")
}
