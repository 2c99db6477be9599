import Foundation
import Glibc
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem
import SyncTestKit

/// CPU seconds used by waited-for child processes (git) so far.
func childCPU() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_CHILDREN.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// A committed tree of `files` small files, 100 per directory.
func committedTree(files: Int) async throws -> GitFixture {
    let fixture = try await GitFixture(prefix: "syncd-bench-reconcile")
    for index in 0..<files {
        if index % 100 == 0 { try Files.mkdirs(fixture.file("d\(index / 100)")) }
        try Files.write(fixture.file("d\(index / 100)/f\(index).txt"), "\(index)\n")
    }
    try await fixture.run(["add", "-A"])
    try await fixture.run(["commit", "-qm", "tree"])
    return fixture
}

/// The periodic reconcile's cost: one `git status` over the whole tree (what syncd runs once per
/// `syncd.reconcileInterval`), wall time and git's CPU, on a clean tree and with one change.
func benchReconcile() async throws {
    for files in [10_000, 100_000] {
        let fixture = try await committedTree(files: files)
        defer { fixture.remove() }
        let repository = try await fixture.repository()
        _ = try await GitStatus.dirtyPaths(repository.git)  // warm the index and the page cache
        var walls: [Double] = []
        var cpus: [Double] = []
        for run in 0..<runs {
            try Files.write(fixture.file("d0/f0.txt"), "changed \(run)\n")
            let cpu = childCPU()
            let start = clock.now
            let dirty = try await GitStatus.dirtyPaths(repository.git)
            walls.append(seconds(clock.now - start))
            cpus.append(childCPU() - cpu)
            precondition(dirty.count == 1, "found \(dirty.count)")
        }
        print("| periodic reconcile (git status of the whole tree), \(files) files: wall / git CPU per run (= per hour at the default interval) | \(format(median(walls), "s")) / \(format(median(cpus), "s")) |")
    }
}

/// `syncctl verify` on a simulated year of daily backups: 365 commits, one bundle a day, a full
/// bundle every 10 (the chain length `syncd.backupKeep 20` gives), all kept.
func benchVerify() async throws {
    let fixture = try await GitFixture(prefix: "syncd-bench-verify")
    defer { fixture.remove() }
    let backups = fixture.path + "/.git/syncd/backups"
    try Files.mkdirs(backups)
    var previous: String?
    for day in 0..<365 {
        try Files.write(fixture.file("day\(day % 50).txt"), "day \(day)\n" + String(repeating: "x", count: 2000))
        try await fixture.run(["add", "-A"])
        try await fixture.run(["commit", "-qm", "day \(day)"])
        let name = String(format: "2026%04dT000000-000Z-bench.bundle", day)
        var arguments: [GitArgument] = ["bundle", "create", "-q", GitArgument(backups + "/" + name), "main"]
        if day % 10 != 0, let previous { arguments.append(GitArgument("^" + previous)) }
        try await fixture.run(arguments)
        previous = try await fixture.head()
    }
    let client = try await ControlClient.open(at: fixture.path)
    var walls: [Double] = []
    for _ in 0..<runs {
        let start = clock.now
        let checks = await Verify.run(client)
        walls.append(seconds(clock.now - start))
        precondition(!checks.contains { $0.level == .fail }, "\(checks.map(\.detail))")
    }
    print("| `syncctl verify`, a year of daily bundles (365 in 37 chains, every chain restored in a scratch repository) | \(format(median(walls), "s")) |")
}

/// `syncctl log` on 100,000 journal lines (a busy year): all of them, one type, a time window.
func benchLog() async throws {
    let directory = try TemporaryDirectory(prefix: "syncd-bench-log")
    defer { directory.remove() }
    var text = ""
    let start = ControlFile.now() - 365 * 86_400
    for index in 0..<100_000 {
        let time = WallClock.rfc3339(seconds: start + Double(index) * 315)
        if index % 2 == 0 {
            text += #"{"time":"\#(time)","event":"batch","batch":\#(index / 2),"trigger":"quiet","paths":3,"full_scan":false}"# + "\n"
        } else {
            text += #"{"time":"\#(time)","event":"commit","batch":\#(index / 2),"commit":"\#(String(repeating: "a", count: 40))","files":3,"attempts":1,"trigger":"quiet","writer":"agent-\#(index % 7)"}"# + "\n"
        }
    }
    try Files.write(directory.sub("journal.jsonl"), text)
    let files = JournalQuery.files(in: Array(directory.path.utf8))
    for (label, query) in [
        ("every record", JournalQuery()),
        ("--type commit --writer agent-3", { var q = JournalQuery(); q.events = ["commit"]; q.writer = "agent-3"; return q }()),
        ("--since 7d", { var q = JournalQuery(); q.since = ControlFile.now() - 7 * 86_400; return q }()),
    ] {
        var walls: [Double] = []
        var count = 0
        for _ in 0..<runs {
            let begin = clock.now
            count = query.run(files: files).count
            walls.append(seconds(clock.now - begin))
        }
        print("| `syncctl log` over 100,000 journal lines, \(label) (\(count) records) | \(format(median(walls), "s")) |")
    }
}
