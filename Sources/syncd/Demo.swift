import ArgumentParser
import Glibc
import SyncCore
import SyncEngine
import SyncSystem
import SyncWatcher

/// `syncd demo`: the real service on scratch repositories, with two writers, a second machine, a
/// conflict, a pause and an emergency stop, narrated as it happens; then a summary checked
/// against the repositories, and everything removed unless `--keep`.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what syncd does, without touching any repository of yours: the real service on a scratch workspace.",
        discussion: """
            Creates a workspace, a local bare remote and a second clone (standing for another machine) in a scratch \
            directory, runs syncd on the workspace (the same service as `syncd run`) with two example writers, and says \
            what happens: commits and their trigger, pushes, the other machine's changes pulled in, a deliberate conflict, \
            a pause, an emergency stop, and the syncctl commands that do the same by hand. It ends with a summary checked \
            against the repositories and removes everything it created unless --keep. Ctrl-C stops it early and cleanly \
            (a second Ctrl-C at once). Exit status: 0 done and nothing lost; 1 a check failed or a step did not work (the \
            output says which); 130 stopped by Ctrl-C.
            """)

    @Option(help: "Where to create the scratch repositories: a new or empty directory (default: a new one under $TMPDIR or /tmp).")
    var dir: String?
    @Option(name: .customLong("for"), help: "How long the demo runs, from 15s to 10m.")
    var duration = "40s"
    @Flag(help: "Keep the scratch repositories afterwards (they are removed by default).")
    var keep = false
    @Flag(help: "Also print syncd's own log lines (by default in syncd.log next to the repositories).")
    var verbose = false

    static let shortest: Duration = .seconds(15)
    static let longest: Duration = .seconds(600)

    func validate() throws {
        _ = try Self.parseFor(duration)
    }

    static func parseFor(_ text: String) throws -> Duration {
        guard let value = Settings.parseDuration(text), value >= shortest, value <= longest else {
            throw ValidationError("--for \(text): expected a duration from 15s to 10m, like 40s or 2m")
        }
        return value
    }

    func run() async throws {
        SignalStream.ignoreSIGPIPE()
        let output = DemoOutput()
        let place: DemoPlace
        do {
            place = try DemoPlace.create(dir)
        } catch let error as SyncError {
            output.error(error.description)
            throw ExitCode(ExitStatus.failure)
        }
        let scenario = DemoScenario(place: place, duration: try Self.parseFor(duration), keep: keep, verbose: verbose, output: output)
        var failure: (any Error)?
        do {
            // The first Ctrl-C ends the demo early (writers finish their update, syncd commits and
            // pushes what is pending, the summary is checked); a second one stops at once.
            // After a second one, how the scenario's syncd ended (changes left uncommitted) is
            // not the demo's failure: the line below says it stopped at once.
            try await runUntilStopped(
                {
                    do { try await scenario.run() } catch { if !Task.isCancelled { throw error } }
                }, gracefulStop: { scenario.requestStop() })
        } catch {
            failure = error
        }
        let finished = scenario.finished
        if !finished && failure == nil {
            output.plain("\nStopped at once (a second Ctrl-C): no summary was checked.")
        }
        if keep {
            output.plain("Kept: \(place.root) (remove it with `rm -rf \(place.root)`)")
        } else {
            do {
                try place.remove()
                output.plain("Removed \(place.root) and everything in it.")
            } catch {
                output.error("could not remove \(place.root): \(error); remove it by hand")
                throw ExitCode(ExitStatus.failure)
            }
        }
        if let failure {
            output.error((failure as? SyncError)?.detailedDescription ?? "\(failure)")
            throw ExitCode(ExitStatus.failure)
        }
        guard finished else {
            // A second Ctrl-C: no summary was checked.
            throw ExitCode(130)
        }
        if !scenario.allGood { throw ExitCode(ExitStatus.failure) }
        if scenario.stopRequested { throw ExitCode(130) }
    }
}

/// The scratch directory and what the demo puts in it.
struct DemoPlace: Sendable {
    /// Absolute, symlinks resolved.
    let root: String
    /// The demo made `root` itself (else it was an empty directory: only its contents go).
    let createdRoot: Bool

    var remote: String { root + "/remote.git" }
    var laptop: String { root + "/laptop" }
    var desk: String { root + "/desk" }
    /// Every write of the demo's writers, one JSON line each (what the summary checks).
    var manifest: String { root + "/writes.jsonl" }
    /// syncd's own log lines.
    var log: String { root + "/syncd.log" }

    /// `dir` must be new or an empty directory; without one, a new directory under $TMPDIR.
    static func create(_ dir: String?) throws -> DemoPlace {
        guard let dir else {
            let base = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
            var template = Array("\(base)/syncd-demo-XXXXXX".utf8CString)
            let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
            guard let created else {
                throw SyncError(.syscall, "cannot create a scratch directory in \(base) (\(String(cString: strerror(errno)))): set TMPDIR, or name one with --dir")
            }
            return DemoPlace(root: try resolved(String(cString: created)), createdRoot: true)
        }
        let path = Array(dir.utf8)
        if Syscall.exists(path) {
            let entries: [DirectoryEntry]
            do {
                entries = try DirectoryListing.list(Array(try resolved(dir).utf8))
            } catch {
                throw SyncError(.syscall, "--dir \(dir) is not a directory the demo can use: name a new or empty directory", cause: error)
            }
            guard entries.isEmpty else {
                throw SyncError(.syscall, "--dir \(dir) is not empty: name a new or empty directory (the demo removes everything it creates there)")
            }
            return DemoPlace(root: try resolved(dir), createdRoot: false)
        }
        do {
            try Syscall.makeDirectory(path, mode: 0o755)
        } catch {
            throw SyncError(.syscall, "cannot create --dir \(dir): does its parent exist, and can you write there?", cause: error)
        }
        return DemoPlace(root: try resolved(dir), createdRoot: true)
    }

    private static func resolved(_ path: String) throws -> String {
        guard let real = realpath(path, nil) else {
            throw SyncError(.syscall, "cannot resolve \(path) (\(String(cString: strerror(errno))))")
        }
        defer { free(real) }
        return String(cString: real)
    }

    /// Removes what the demo created: `root` itself when it made it, else everything in it.
    func remove() throws(SyscallError) {
        if createdRoot {
            try Self.removeTree(Array(root.utf8))
        } else {
            for entry in try DirectoryListing.list(Array(root.utf8)) {
                try Self.removeTree(Array(root.utf8) + [UInt8(ascii: "/")] + entry.name)
            }
        }
    }

    /// `rm -rf` for a tree the demo made: symlinks are removed, never followed.
    static func removeTree(_ path: [UInt8]) throws(SyscallError) {
        let info: stat
        do {
            info = try Syscall.lstat(path)
        } catch {
            if error.errno == Errno(ENOENT) { return }
            throw error
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            for entry in try DirectoryListing.list(path) {
                try removeTree(path + [UInt8(ascii: "/")] + entry.name)
            }
            let result = Syscall.withCStringResult(path) { rmdir($0) }
            if result != 0 { throw SyscallError(call: "rmdir", path: Syscall.display(path), errno: Errno(errno)) }
        } else {
            try Syscall.unlink(path)
        }
    }
}
