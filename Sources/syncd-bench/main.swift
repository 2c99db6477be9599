import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncSystem
import SyncTestKit
import SyncWatcher

// Benchmarks for syncd. Build and run in release mode:
//   swift run -c release syncd-bench [setup|decode|burst|memory|commit|run-burst|idle|coordination|sync|hung-remote|reconcile|verify|log|object-store|burst-bounds|all] [--runs N]
// Every figure is the median of N runs (default 5). Results go to stdout as Markdown rows.

let arguments = CommandLine.arguments.dropFirst()
let which = arguments.first ?? "all"
let runs = arguments.firstIndex(of: "--runs").flatMap { Int(arguments[arguments.index(after: $0)]) } ?? 5
let clock = ContinuousClock()

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func seconds(_ duration: Duration) -> Double {
    duration.inSeconds
}

func format(_ value: Double, _ unit: String) -> String { String(format: "%.3f %@", value, unit) }

/// 10 × 10 × 100 = 10,000 leaf directories (10,110 in all), one file in each leaf.
func nestedTree(in root: String) throws -> Int {
    var count = 0
    for a in 0..<10 {
        for b in 0..<10 {
            for c in 0..<100 {
                try Files.mkdirs("\(root)/a\(a)/b\(b)/c\(c)")
                count += 1
            }
            count += 1
        }
        count += 1
    }
    try Files.write("\(root)/a0/b0/c0/file")
    return count + 1
}

func benchSetup() async throws {
    let fixture = try await GitFixture(prefix: "syncd-bench-setup")
    defer { fixture.remove() }
    let directories = try nestedTree(in: fixture.path)
    let repository = try await fixture.repository()
    var syncdTimes: [Double] = []
    var rawTimes: [Double] = []
    var inotifywaitTimes: [Double] = []
    for _ in 0..<runs {
        let start = clock.now
        let harness = WatchHarness(repository: repository)
        try await harness.ready(within: .seconds(120))
        syncdTimes.append(seconds(clock.now - start))
        let watched = harness.watcher.statistics.watched
        await harness.stop()
        precondition(watched == directories, "watched \(watched) of \(directories)")

        // The floor: inotify_add_watch on every directory, paths known in advance, no listing.
        let paths = FileManager.default.enumerator(atPath: fixture.path)!.compactMap { $0 as? String }
            .filter { !$0.hasPrefix(".git") && !$0.hasSuffix("file") }
        let inotify = try InotifyDescriptor()
        let rawStart = clock.now
        for path in paths { _ = try inotify.addWatch(Array((fixture.path + "/" + path).utf8)) }
        rawTimes.append(seconds(clock.now - rawStart))

        if FileManager.default.isExecutableFile(atPath: "/usr/bin/inotifywait") {
            let waitStart = clock.now
            let verbose = ProcessHarness("/usr/bin/inotifywait", ["-r", "-m", "--exclude", "/\\.git/", fixture.path])
            try await verbose.waitForStderr("Watches established.", within: .seconds(120))
            inotifywaitTimes.append(seconds(clock.now - waitStart))
            verbose.signal(SIGTERM)
            _ = try? await verbose.exit()
        }
    }
    print("| watch setup, \(directories) nested directories: syncd (crawl + ignore checks + watches) | \(format(median(syncdTimes), "s")) |")
    print("| watch setup: bare inotify_add_watch loop, no listing (floor) | \(format(median(rawTimes), "s")) |")
    if !inotifywaitTimes.isEmpty {
        print("| watch setup: inotifywait -r until \"Watches established.\" | \(format(median(inotifywaitTimes), "s")) |")
    }
}

func benchDecode() {
    var events: [InotifyEvent] = []
    for index in 0..<100_000 {
        events.append(InotifyEvent(wd: Int32(index % 500), mask: 0x2, name: Array("file-\(index).txt".utf8)))
    }
    let bytes = InotifyDecoder.encode(events)
    var rates: [Double] = []
    var decoded: [InotifyEvent] = []
    decoded.reserveCapacity(events.count)
    for _ in 0..<runs {
        let start = clock.now
        for _ in 0..<10 {
            decoded.removeAll(keepingCapacity: true)
            // Decode in read(2)-sized chunks of 256 KiB, as the reader thread does.
            var offset = 0
            while offset < bytes.count {
                var end = min(offset + InotifyReader.bufferSize, bytes.count)
                // Cut on a record boundary, as the kernel does.
                var probe = offset
                while probe < end {
                    let length = Int(bytes[probe + 12]) | Int(bytes[probe + 13]) << 8
                    if probe + 16 + length > end { break }
                    probe += 16 + length
                }
                end = probe
                bytes[offset..<end].withUnsafeBytes { _ = InotifyDecoder.decode($0, into: &decoded) }
                offset = end
            }
        }
        rates.append(Double(events.count * 10) / seconds(clock.now - start))
    }
    precondition(decoded.count == events.count)
    print("| event decode throughput (names ~14 bytes, 256 KiB reads) | \(String(format: "%.1f", median(rates) / 1e6)) M events/s |")
}

func benchBurst() async throws {
    var times: [Double] = []
    var writeTimes: [Double] = []
    var eventCounts: [Double] = []
    var overflows = 0
    for _ in 0..<runs {
        let fixture = try await GitFixture(prefix: "syncd-bench-burst")
        defer { fixture.remove() }
        for directory in 0..<20 { try Files.mkdirs(fixture.file("d\(directory)")) }
        let harness = WatchHarness(repository: try await fixture.repository())
        try await harness.ready()
        var expected: Set<RepoPath> = []
        let start = clock.now
        for directory in 0..<20 {
            for index in 0..<1_000 {
                try Files.write(fixture.file("d\(directory)/f\(index)"))
                expected.insert(RepoPath("d\(directory)/f\(index)"))
            }
        }
        let written = clock.now
        writeTimes.append(seconds(written - start))
        try await harness.waitForPaths(expected, within: .seconds(120))
        times.append(seconds(clock.now - written))
        eventCounts.append(Double(harness.watcher.statistics.eventsRead))
        if harness.watcher.statistics.rescans > 0 { overflows += 1 }
        precondition(harness.paths.isSuperset(of: expected))
        await harness.stop()
    }
    print("| 20,000-file burst: time to write the files (the writer itself) | \(format(median(writeTimes), "s")) |")
    print("| 20,000-file burst: time from the last write until every file is reported | \(format(median(times), "s")) |")
    print("| 20,000-file burst: inotify events read (median) | \(Int(median(eventCounts))) |")
    print("| 20,000-file burst: runs with a queue overflow (then reconciled) | \(overflows) of \(runs); every run complete |")
}

func benchMemory() async throws {
    let fixture = try await GitFixture(prefix: "syncd-bench-memory")
    defer { fixture.remove() }
    let directories = try nestedTree(in: fixture.path)
    let syncd = ProcessHarness.product("syncd")
    var values: [Double] = []
    for _ in 0..<runs {
        let process = ProcessHarness(syncd, ["watch", fixture.path])
        try await process.waitForLine("ready", within: .seconds(120)) { $0.contains("\"ready\"") }
        let pid = try requirePid(process.pid)
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
        let rss = line.flatMap { Double($0.split(separator: " ").dropFirst().first.map(String.init) ?? "") } ?? 0
        values.append(rss / 1024)
        _ = try await process.terminate()
    }
    print("| resident memory of `syncd watch` with \(directories) directories watched (VmRSS) | \(format(median(values), "MiB")) |")
}

func requirePid(_ pid: pid_t?) throws -> pid_t {
    guard let pid else { throw TestFailure("syncd watch has no pid") }
    return pid
}

switch which {
case "setup": try await benchSetup()
case "decode": benchDecode()
case "burst": try await benchBurst()
case "memory": try await benchMemory()
case "commit": try await benchCommitOneFile()
case "run-burst": try await benchRunBurst()
case "idle": try await benchIdle()
case "coordination": try await benchCoordination()
case "lock-writer": try lockWriter(path: Array(arguments)[1], count: Int(Array(arguments)[2]) ?? 200)
case "sync": try await benchSync()
case "hung-remote": try await benchHungRemote()
case "reconcile": try await benchReconcile()
case "verify": try await benchVerify()
case "log": try await benchLog()
case "object-store": try await benchObjectStore()
case "burst-bounds": try await benchBurstBounds()
default:
    try await benchSetup()
    benchDecode()
    try await benchBurst()
    try await benchMemory()
    try await benchCommitOneFile()
    try await benchRunBurst()
    try await benchIdle()
    try await benchCoordination()
    try await benchSync()
    try await benchHungRemote()
    try await benchReconcile()
    try await benchVerify()
    try await benchLog()
    try await benchObjectStore()
    try await benchBurstBounds()
}
