import Foundation
import Glibc
import SyncCore
import SyncEngine
import SyncSystem
import SyncTestKit

/// Runs `syncctl ARGS` and returns its wall time in seconds.
func timedSyncctl(_ arguments: [String]) async throws -> Double {
    let start = clock.now
    let process = ProcessHarness(ProcessHarness.product("syncctl"), arguments)
    let exit = try await process.exit(within: .seconds(60))
    guard exit == .exited(0) else { throw TestFailure("syncctl \(arguments): \(exit) \(process.stderr)") }
    return seconds(clock.now - start)
}

/// Under a busy workload (a writer changing files nonstop, syncd committing every ~100 ms):
/// how long `syncctl pause` and `syncctl emergency-stop` take until syncd confirms, and how long
/// writers wait for the shared lock while syncd snapshots batches.
func benchCoordination() async throws {
    let fixture = try await GitFixture(prefix: "syncd-bench-coordination")
    defer { fixture.remove() }
    for directory in 0..<20 { try Files.mkdirs(fixture.file("d\(directory)")) }
    let debug = ProcessInfo.processInfo.environment["SYNCD_BENCH_LOG"] != nil ? ["--log-level", "debug"] : []
    let extra = ProcessInfo.processInfo.environment["SYNCD_BENCH_ARGS"].map { $0.split(separator: " ").map(String.init) } ?? []
    let syncd = SyncdHarness(fixture, ["--quiet-period", "20ms", "--max-latency", "100ms", "--breaker-max-commits", "100000"] + debug + extra)
    try await syncd.ready()
    let busy = Task {
        var index = 0
        while !Task.isCancelled {
            try? Files.write(fixture.file("d\(index % 20)/f\(index % 500)"), "\(index)\n")
            index += 1
            if index % 50 == 0 { try? await Pace.wait(.milliseconds(5)) }
        }
    }
    defer { busy.cancel() }
    try await waitUntil(.seconds(30), "syncd busy committing") { (syncd.state()?["commits"] as? Int ?? 0) >= 5 }

    var pauses: [Double] = []
    var stops: [Double] = []
    for _ in 0..<runs {
        pauses.append(try await timedSyncctl(["pause", "-C", fixture.path]))
        _ = try await timedSyncctl(["resume", "-C", fixture.path])
        try await Pace.wait(.milliseconds(300))
        stops.append(try await timedSyncctl(["emergency-stop", "-C", fixture.path]))
        _ = try await timedSyncctl(["resume", "-C", fixture.path, "--clear-emergency"])
        try await Pace.wait(.milliseconds(300))
    }

    // A writer taking the shared lock 200 times while syncd commits: a process of its own (as a
    // protocol writer is), blocking in flock(LOCK_SH), timing each wait itself.
    let writer = ProcessHarness(ProcessHarness.product("syncd-bench"), ["lock-writer", fixture.path + "/.git/syncd/sync.lock", "200"])
    guard try await writer.exit(within: .seconds(120)) == .exited(0) else { throw TestFailure("lock-writer: \(writer.stderr)") }
    let waits = writer.stdout.split(separator: "\n").compactMap { Double($0) }
    guard waits.count == 200 else { throw TestFailure("lock-writer printed \(waits.count) waits: \(writer.stdout.prefix(500))") }
    let commits = syncd.state()?["commits"] as? Int ?? 0
    busy.cancel()
    _ = try await syncd.stop()
    if let debugLog = ProcessInfo.processInfo.environment["SYNCD_BENCH_LOG"] {
        try? syncd.process.stderr.write(toFile: debugLog, atomically: false, encoding: .utf8)
    }
    var bigStops: [Double] = []
    var setAside = 0
    for _ in 0..<min(runs, 3) {
        let big = try await GitFixture(prefix: "syncd-bench-stop")
        defer { big.remove() }
        for directory in 0..<100 {
            try Files.mkdirs(big.file("d\(directory)"))
            for file in 0..<100 { try Files.write(big.file("d\(directory)/f\(file)"), "\(directory) \(file)\n") }
        }
        let busySyncd = SyncdHarness(big)
        try await waitUntil(.seconds(60), interval: .milliseconds(5), "committing 10,000 files") {
            busySyncd.state()?["phase"] as? String == "committing"
        }
        bigStops.append(try await timedSyncctl(["emergency-stop", "-C", big.path]))
        if try await big.head() == nil { setAside += 1 }
        _ = try await busySyncd.stop()
    }
    let sorted = waits.sorted()
    print("| `syncctl pause` until syncd confirms, under a busy workload (\(commits) commits during the run) | \(format(median(pauses), "s")) |")
    print("| `syncctl emergency-stop` until syncd confirms that git activity stopped, same workload | \(format(median(stops), "s")) |")
    print("| `syncctl emergency-stop` in the middle of a 10,000-file commit (about 8 s of work) until confirmed | \(format(median(bigStops), "s")); the batch set aside in \(setAside) of \(bigStops.count) runs |")
    print("| a writer's wait for the shared lock while syncd snapshots batches (200 takes): median / 99th percentile / max | \(format(median(waits) * 1000, "ms")) / \(format(sorted[Int(Double(sorted.count) * 0.99) - 1] * 1000, "ms")) / \(format(sorted.last! * 1000, "ms")) |")
}

/// `syncd-bench lock-writer LOCKFILE N`: a protocol writer. Takes the shared lock N times with a
/// blocking flock, 10 ms apart, and prints each wait in seconds, one per line.
func lockWriter(path: String, count: Int) throws {
    let fd = open(path, O_RDWR | O_CLOEXEC)
    guard fd >= 0 else { throw TestFailure("cannot open \(path): errno \(errno)") }
    defer { close(fd) }
    var output = ""
    for _ in 0..<count {
        let start = clock.now
        while flock(fd, LOCK_SH) != 0 {
            guard errno == EINTR else { throw TestFailure("flock \(path): errno \(errno)") }
        }
        let waited = seconds(clock.now - start)
        _ = flock(fd, LOCK_UN)
        output += "\(waited)\n"
        usleep(10_000)
    }
    print(output, terminator: "")
}

enum Blocking {
    /// flock(LOCK_SH) that waits, off the cooperative pool.
    static func lockShared(_ lock: FileLock) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            DispatchQueue.global().async {
                while true {
                    do {
                        if try lock.tryLock(.shared) { break }
                    } catch {
                        continuation.resume(throwing: error)
                        return
                    }
                    usleep(100)
                }
                continuation.resume()
            }
        }
    }
}
