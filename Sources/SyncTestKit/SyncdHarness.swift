import Foundation
import SyncCore
import SyncGit

/// `syncd run` on a fixture, as a real child process, with the questions tests ask of it.
public final class SyncdHarness: Sendable {
    public let fixture: GitFixture
    public let process: ProcessHarness

    /// Starts `syncd run PATH ARGUMENTS...`.
    public init(_ fixture: GitFixture, _ arguments: [String] = [], environment: [String: String?] = [:]) {
        self.fixture = fixture
        process = ProcessHarness(ProcessHarness.product("syncd"), ["run", fixture.path] + arguments, environment: environment)
    }

    /// Starts `syncd run PATH ARGUMENTS...` as the user `uid` (setpriv, from a test running as
    /// root): a syncd for whom permissions apply. The fixture must belong to that user.
    public init(_ fixture: GitFixture, _ arguments: [String] = [], asUser uid: UInt32, environment: [String: String?] = [:]) {
        self.fixture = fixture
        process = ProcessHarness(
            "/usr/bin/setpriv",
            ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", ProcessHarness.product("syncd"), "run", fixture.path] + arguments,
            environment: ["HOME": "/nonexistent"].merging(environment) { $1 })
    }

    /// Waits until the initial crawl is done and the startup batch has been handled.
    public func ready(within limit: Duration = .seconds(60)) async throws {
        try await process.waitForStderr("watching ", within: limit)
        try await waitUntil(limit, "startup batch handled; stderr: \(process.stderr.suffix(1500))") { [self] in
            let phase = state()?["phase"] as? String
            return phase == "idle" || phase == "pending"
        }
    }

    /// `state.json`, parsed.
    public func state() -> [String: Any]? {
        guard let data = FileManager.default.contents(atPath: fixture.path + "/.git/syncd/state.json") else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    /// Journal records, parsed, oldest first.
    public func journal() -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: fixture.path + "/.git/syncd/journal.jsonl", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }

    /// Waits until HEAD's tree equals the working tree (ignored files aside): `git status` shows
    /// nothing and syncd is idle.
    public func settled(within limit: Duration = .seconds(120)) async throws {
        try await waitUntil(limit, interval: .milliseconds(100), "working tree committed; stderr: \(process.stderr.suffix(2000))") { [self] in
            guard state()?["phase"] as? String == "idle" else { return false }
            return try await fixture.statusLines().isEmpty
        }
    }

    public func stop() async throws -> ProcessHarness.Exit {
        try await process.terminate(within: .seconds(60))
    }

    public func kill9() async throws {
        process.signal(SIGKILL)
        _ = try await process.exit(within: .seconds(30))
    }
}

/// Pacing for workloads that model writers with a period (a writer every 0.5 s), and windows in
/// which something must not happen. Kept here so tests never sleep on their own.
public enum Pace {
    /// Calls `body(i)` every `period` until `total` has passed; returns how many calls ran.
    @discardableResult
    public static func every(
        _ period: Duration, for total: Duration, _ body: @Sendable (Int) async throws -> Void
    ) async throws -> Int {
        try await every(period, while: { elapsed in elapsed < total }, body)
    }

    /// Calls `body(i)` every `period` for as long as `keepGoing(elapsed)` says so; returns how
    /// many calls ran. For workloads whose end is a condition (bound it inside `keepGoing`).
    @discardableResult
    public static func every(
        _ period: Duration, while keepGoing: @Sendable (Duration) async throws -> Bool, _ body: @Sendable (Int) async throws -> Void
    ) async throws -> Int {
        let clock = ContinuousClock()
        let start = clock.now
        var count = 0
        while try await keepGoing(clock.now - start) {
            try await body(count)
            count += 1
            try await clock.sleep(until: start.advanced(by: period * count))
        }
        return count
    }

    /// Checks `stillTrue` every `interval` for `window`; throws as soon as it is false.
    public static func holds(
        for window: Duration, interval: Duration = .milliseconds(200), _ what: String,
        _ stillTrue: @Sendable () async throws -> Bool
    ) async throws {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: window)
        while clock.now < end {
            guard try await stillTrue() else { throw TestFailure("no longer true within \(window): \(what)") }
            try await clock.sleep(for: interval)
        }
    }

    /// Waits `duration` (a random moment in a kill -9 trial, a writer's burst length).
    public static func wait(_ duration: Duration) async throws {
        try await ContinuousClock().sleep(for: duration)
    }
}

/// A small deterministic random generator (SplitMix64): a fixed seed replays the same workload.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random file-system operations inside a workspace: create, modify, append, delete, rename a file
/// or a directory, mkdir, recursive rmdir, move between directories.
public struct RandomWorkload: Sendable {
    public let root: String
    public var random: SeededRandom
    private var files: [String] = []
    private var directories: [String] = [""]
    private var counter = 0

    public init(root: String, seed: UInt64) {
        self.root = root
        random = SeededRandom(seed: seed)
    }

    private func absolute(_ relative: String) -> String { relative.isEmpty ? root : root + "/" + relative }

    private mutating func freshName(in directory: String, prefix: String) -> String {
        counter += 1
        let name = "\(prefix)\(counter)"
        return directory.isEmpty ? name : directory + "/" + name
    }

    /// Applies one random operation; returns its name.
    @discardableResult
    public mutating func step() throws -> String {
        let choice = Int.random(in: 0..<100, using: &random)
        let directory = directories.randomElement(using: &random) ?? ""
        switch choice {
        case 0..<25:
            let path = freshName(in: directory, prefix: "f")
            try Files.write(absolute(path), "created \(counter)\n")
            files.append(path)
            return "create"
        case 25..<45 where !files.isEmpty:
            let path = files.randomElement(using: &random)!
            try Files.write(absolute(path), "modified \(counter)\n")
            counter += 1
            return "modify"
        case 45..<55 where !files.isEmpty:
            let path = files.randomElement(using: &random)!
            let handle = FileHandle(forWritingAtPath: absolute(path))
            handle?.seekToEndOfFile()
            handle?.write(Data("appended \(counter)\n".utf8))
            try handle?.close()
            counter += 1
            return "append"
        case 55..<65 where !files.isEmpty:
            let index = Int.random(in: 0..<files.count, using: &random)
            try FileManager.default.removeItem(atPath: absolute(files[index]))
            files.remove(at: index)
            return "delete"
        case 65..<75 where !files.isEmpty:
            let index = Int.random(in: 0..<files.count, using: &random)
            let target = freshName(in: directory, prefix: "r")
            try Files.move(absolute(files[index]), absolute(target))
            files[index] = target
            return "rename-or-move-file"
        case 75..<85:
            let path = freshName(in: directory, prefix: "d")
            try Files.mkdirs(absolute(path))
            directories.append(path)
            return "mkdir"
        case 85..<93 where directories.count > 1:
            let source = directories[Int.random(in: 1..<directories.count, using: &random)]
            let parent = directories.randomElement(using: &random) ?? ""
            if parent == source || parent.hasPrefix(source + "/") { return "skip" }
            let target = freshName(in: parent, prefix: "m")
            try Files.move(absolute(source), absolute(target))
            rewrite(prefix: source, to: target)
            return "rename-or-move-directory"
        case 93..<100 where directories.count > 1:
            let victim = directories[Int.random(in: 1..<directories.count, using: &random)]
            try FileManager.default.removeItem(atPath: absolute(victim))
            files.removeAll { $0.hasPrefix(victim + "/") }
            directories.removeAll { $0 == victim || $0.hasPrefix(victim + "/") }
            return "rmdir-recursive"
        default:
            return "skip"
        }
    }

    private mutating func rewrite(prefix source: String, to target: String) {
        func moved(_ path: String) -> String {
            if path == source { return target }
            if path.hasPrefix(source + "/") { return target + path.dropFirst(source.count) }
            return path
        }
        files = files.map(moved)
        directories = directories.map(moved)
    }
}
