import Glibc
import Logging
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem
import SyncWatcher
import Synchronization

/// The demo's timeline: repositories, the service, the writers, the other machine, an emergency
/// stop that sets up a conflict, its resolution under a pause, and the graceful stop. Every step
/// uses the code a person's command would (`SyncService` as `syncd run` runs it; `ControlClient`
/// as `syncctl` uses it; `WriterTurn` as `syncctl as-writer` runs it; plain git for the people).
final class DemoScenario: Sendable {
    let place: DemoPlace
    let duration: Duration
    let keep: Bool
    let verbose: Bool
    let output: DemoOutput
    let stop = DemoStop()
    let record: DemoRecord

    /// Timings for the demo, written into the workspace's git config (name, value, default).
    static let settings: [(name: String, value: String, standard: String)] = [
        ("syncd.quietPeriod", "1s", "2s"),
        ("syncd.pushDelay", "1s", "2s"),
        ("syncd.syncInterval", "3s", "5m"),
        // About one commit a second for up to ten minutes is the demo, not a loop.
        ("syncd.breakerMaxCommits", "2000", "120"),
    ]

    /// The line both machines change: the conflict.
    static let planPath = "shared/plan.md"
    static let planStart = "# Plan\n\nmeeting: Tuesday 10:00\nagenda: desk/agenda.md\n"
    static let laptopLine = "meeting: Wednesday 9:00 (changed on the laptop)"
    static let deskLine = "meeting: Thursday 14:00 (changed on the desk)"

    /// What happened, for the summary.
    struct Facts: Sendable {
        var interrupted = false
        var finished = false
        var allGood = false
        /// Steps that did not work (the summary fails with them).
        var failures: [String] = []
        /// Reached the conflict step (a conflict must then exist).
        var conflictStaged = false
        var deskConflictCommit: String?
        var resolution: String?
    }

    private let facts = Mutex(Facts())

    init(place: DemoPlace, duration: Duration, keep: Bool, verbose: Bool, output: DemoOutput) {
        self.place = place
        self.duration = duration
        self.keep = keep
        self.verbose = verbose
        self.output = output
        record = DemoRecord(manifest: place.manifest)
    }

    var finished: Bool { facts.withLock { $0.finished } }
    var allGood: Bool { facts.withLock { $0.allGood } }
    var stopRequested: Bool { facts.withLock { $0.interrupted } }

    /// The first Ctrl-C.
    func requestStop() {
        facts.withLock { $0.interrupted = true }
        stop.request()
        output.say("Ctrl-C: ending the demo now. The writers finish their update; syncd commits and pushes what is pending,\n"
            + "as it does for Ctrl-C or `systemctl stop` (a second Ctrl-C stops at once)")
    }

    private func failed(_ what: String) {
        facts.withLock { $0.failures.append(what) }
        output.say("PROBLEM: \(what)")
    }

    var laptop: String { place.laptop }
    var laptopGit: GitRunner { GitRunner(workTree: Array(place.laptop.utf8)) }
    var deskGit: GitRunner { GitRunner(workTree: Array(place.desk.utf8)) }
    /// The commands a person would type.
    var ctl: String { "syncctl -C \(place.laptop)" }

    func run() async throws {
        introduce()
        try await createRepositories()
        let repository = try await Repository.discover(at: place.laptop)
        let (settings, warnings) = try await Settings.load(git: repository.git, overrides: [])
        let log = Logger(label: "syncd") { _ in DemoLogHandler(file: DemoLogHandler.File(path: place.log), output: output, verbose: verbose) }
        for warning in warnings { log.warning("\(warning)") }
        let service = try SyncService(repository: repository, settings: settings, log: log)
        let client = try await ControlClient.open(at: place.laptop)
        let narrator = DemoNarrator(
            output: output, git: laptopGit, stateDirectory: client.stateDirectory, remote: "origin",
            quietPeriod: Settings.formatDuration(settings.quietPeriod), maxLatency: Settings.formatDuration(settings.maxLatency))
        let serviceEnded = DemoStop()
        output.startClock()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { serviceEnded.request() }
                try await service.run()
            }
            group.addTask {
                while !serviceEnded.requested {
                    await narrator.poll()
                    try await Task.sleep(for: .milliseconds(100))
                }
                await narrator.poll()
            }
            group.addTask { try await self.script(service: service, client: client, narrator: narrator) }
            try await group.waitForAll()
        }
        let check = DemoCheck(place: place, record: record, output: output)
        let snapshot = facts.withLock { $0 }
        let good = await check.run(narrator: narrator, facts: snapshot)
        facts.withLock {
            $0.finished = true
            $0.allGood = good
        }
    }

    private func introduce() {
        output.plain("""
            syncd demo: the real syncd service on scratch repositories in \(place.root)
            (no repository of yours is touched; everything is removed at the end\(keep ? ": no, --keep keeps it" : " unless --keep"))
              laptop/      the workspace syncd keeps committed and synced, like your notes or project
              remote.git/  its remote: a bare repository standing for GitHub or your server
              desk/        another clone of the remote, standing for a second machine
            It runs for \(Settings.formatDuration(duration)); Ctrl-C ends it early, cleanly.

            """)
    }

    /// remote.git (bare), laptop (the workspace, with a first commit pushed), desk (a clone).
    private func createRepositories() async throws {
        let top = GitRunner(workTree: Array(place.root.utf8))
        _ = try await top.run(["init", "-q", "--bare", "-b", "main", "remote.git"])
        _ = try await top.run(["init", "-q", "-b", "main", "laptop"])
        let laptop = laptopGit
        _ = try await laptop.run(["config", "user.name", "You, on the laptop"])
        _ = try await laptop.run(["config", "user.email", "laptop@syncd-demo.invalid"])
        try DemoFiles.write(place.laptop + "/README.md", """
            # A workspace made by `syncd demo`

            syncd keeps this working tree committed and synced with ../remote.git while programs write into it.
            ../desk is another clone of the same remote, standing for a second machine.

            """)
        try DemoFiles.makeDirectory(place.laptop + "/shared")
        try DemoFiles.write(place.laptop + "/" + Self.planPath, Self.planStart)
        _ = try await laptop.run(["add", "README.md", GitArgument(Self.planPath)])
        _ = try await laptop.run(Self.plainGit + ["commit", "-q", "--no-verify", "-m", "The demo's workspace"])
        _ = try await laptop.run(["remote", "add", "origin", GitArgument(place.remote)])
        _ = try await laptop.run(["push", "-q", "-u", "origin", "main"])
        for (name, value, _) in Self.settings {
            _ = try await laptop.run(["config", GitArgument(name), GitArgument(value)])
        }
        _ = try await top.run(["clone", "-q", GitArgument(place.remote), "desk"])
        _ = try await deskGit.run(["config", "user.name", "You, on the desk"])
        _ = try await deskGit.run(["config", "user.email", "desk@syncd-demo.invalid"])
        output.plain("""
            syncd runs on laptop/ as `syncd run \(place.laptop)` runs it (the same service, in this process),
            with shorter timings so that things happen quickly: \(Self.settings.prefix(3).map { "\($0.name) \($0.value)" }.joined(separator: ", "))
            (git config in laptop/; the defaults are \(Self.settings.prefix(3).map(\.standard).joined(separator: ", "))). Try these in another terminal while it runs:
              \(ctl) status
              git -C \(place.laptop) log --stat -3

            """)
    }

    /// A user's global config must not make the demo's own commits wait for a signing key, nor
    /// turn its pulls into rebases or refuse their merges.
    static let plainGit: [GitArgument] = ["-c", "commit.gpgSign=false", "-c", "pull.rebase=false", "-c", "pull.ff=true", "-c", "merge.ff=true"]

    // MARK: - the timeline

    private func script(service: SyncService, client: ControlClient, narrator: DemoNarrator) async throws {
        defer { stop.request() }
        let started = try await stop.wait(.seconds(60)) {
            let phase = client.state()?.phase
            return phase == .idle || phase == .pending
        }
        if started {
            let watched = client.state().map { String($0.watchedDirectories) } ?? "?"
            output.say("syncd is watching laptop/ (\(watched) directories) and syncs with origin (remote.git)")
            let writers = Writers(
                notes: NoteTaker(workspace: laptop, period: .milliseconds(2500), record: record, output: output, stop: stop),
                status: StatusWriter(
                    workspace: laptop, lockDirectory: client.lockDirectory, period: .seconds(4), updateTime: .milliseconds(1500),
                    record: record, output: output, stop: stop))
            output.say("""
                two writers start in laptop/:
                the status writer rewrites status/summary.md and status/status.json (they must agree) and appends to status/history.log
                  every 4 s, under the writer protocol: it holds the shared sync lock while it writes, as `syncctl as-writer -- CMD` does,
                  and takes about 1.5 s per update
                the note taker writes a new note into notes/ every 2.5 s and knows nothing of syncd
                """)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writers.notes.run() }
                group.addTask { try await writers.status.run() }
                try await timeline(client: client, narrator: narrator)
                output.say(facts.withLock { $0.interrupted }
                    ? "stopping the writers (each finishes its update)"
                    : "time is up: the writers stop (each finishes its update)")
                stop.request()
                try await group.waitForAll()
            }
        } else if !stop.requested {
            failed("syncd did not finish its startup within 60 s (see \(place.log))")
        }
        await clearControls(client)
        output.say("stopping syncd the way Ctrl-C or `systemctl stop` stops `syncd run`: it commits what is pending and pushes first")
        await service.requestStop()
    }

    private struct Writers: Sendable {
        let notes: NoteTaker
        let status: StatusWriter
    }

    /// The steps, at fractions of the duration from now (later when a step before took longer).
    private func timeline(client: ControlClient, narrator: DemoNarrator) async throws {
        let start = ContinuousClock.now
        func at(_ fraction: Double) async throws -> Bool {
            try await stop.sleep(until: start.advanced(by: duration * fraction))
        }
        guard try await at(0.15) else { return }
        let pulls = await narrator.integrations
        await deskAddsAgenda()
        // The pull is shown before the conflict is set up (it would otherwise come with it).
        let pulled = try await stop.wait(.seconds(15)) { await narrator.integrations > pulls }
        if !pulled && !stop.requested { failed("syncd did not pull in the desk's commit within 15 s") }
        guard try await at(0.3) else { return }
        await emergencyStopAndConflict(client: client, narrator: narrator)
        guard !stop.requested, try await at(0.75) else { return }
        await deskPulls()
        _ = try await at(1)
    }

    /// The other machine commits a new file and pushes it; syncd on the laptop pulls it in.
    private func deskAddsAgenda() async {
        output.say("on desk, the other machine, a person adds desk/agenda.md and commits and pushes it with plain git\n"
            + "(git pull; git add desk/agenda.md; git commit; git push)")
        do {
            let content = "# Agenda\n\nwritten on the desk at \(DemoFiles.clock())\n- review the status\n"
            let commit = try await deskCommit("desk/agenda.md", content, message: "Agenda, written on the desk")
            output.say("desk pushed \(commit.prefix(8)); syncd on laptop pulls it in at its next sync (every 3 s, or when its next push finds the remote moved)")
        } catch {
            failed("the desk could not commit and push: \((error as? SyncError)?.description ?? "\(error)")")
        }
    }

    /// An emergency stop; while it holds, both machines change the same line; clearing it makes
    /// syncd commit the laptop's side and find the conflict. Then a person resolves it.
    private func emergencyStopAndConflict(client: ControlClient, narrator: DemoNarrator) async {
        output.say("EMERGENCY STOP, as a person would do it in another terminal:\n$ \(ctl) emergency-stop --reason \"the demo shows an emergency stop\"")
        guard await confirm("emergency stop", { try await client.emergencyStop(reason: "the demo shows an emergency stop", timeout: .seconds(10)) }) else { return }
        output.say("syncd does no git work now, until someone clears the stop (it survives restarts); it still watches, so nothing written meanwhile is missed")
        facts.withLock { $0.conflictStaged = true }
        do {
            let planned = Self.planStart.replacingFirst("meeting: Tuesday 10:00", with: Self.laptopLine)
            try DemoFiles.write(laptop + "/" + Self.planPath, planned)
            record.add(DemoWrite(writer: .person, path: Self.planPath, content: planned))
            output.say("on laptop, a person changes a line of \(Self.planPath) to \"\(Self.laptopLine)\" (not committed: syncd is stopped)")
            let deskPlan = try await deskChange(Self.planPath) { $0.replacingFirst("meeting: Tuesday 10:00", with: Self.deskLine) }
            let commit = try await deskCommit(Self.planPath, deskPlan, message: "Plan: the meeting moves to Thursday (desk)")
            facts.withLock { $0.deskConflictCommit = commit }
            output.say("on desk, the same line becomes \"\(Self.deskLine)\", committed and pushed (\(commit.prefix(8)))")
        } catch {
            failed("the conflict could not be set up: \((error as? SyncError)?.description ?? "\(error)")")
        }
        // A stop meanwhile: the emergency stop is cleared on the way out (`clearControls`).
        guard (try? await stop.sleep(for: max(Duration.seconds(2), duration * 0.08))) == true else { return }
        let pending = client.state().map { String($0.pendingPathsTotal) } ?? "?"
        output.say("syncd is still stopped, with \(pending) path(s) pending (`\(ctl) status` says EMERGENCY STOP, exit 1)\n"
            + "$ \(ctl) resume --clear-emergency")
        guard await confirm("clearing the emergency stop", { try await client.resume(clearEmergency: true, timeout: .seconds(10)) }) else { return }
        output.say("cleared: syncd commits what was written meanwhile, then syncs, and finds that both machines changed the same line")
        let seen = (try? await stop.wait(.seconds(30)) { await narrator.conflict != nil }) ?? false
        guard seen else {
            if !stop.requested { failed("syncd reported no conflict within 30 s") }
            return
        }
        output.say("""
            the writers go on and syncd keeps committing on laptop; it pushes main again once a person merges. To see it:
            $ \(ctl) status       (exit 1, degraded: CONFLICT, and which branch holds laptop's side)
            $ \(ctl) conflicts    (the conflict branches, here and on the remote, and their files)
            """)
        guard (try? await stop.sleep(for: .seconds(2))) == true else { return }
        await resolve(client: client, narrator: narrator)
    }

    /// A person merges the remote's side by hand, keeping both lines, with syncd paused meanwhile
    /// (README: "To prepare a commit of your own, pause syncd").
    private func resolve(client: ControlClient, narrator: DemoNarrator) async {
        output.say("a person resolves it as syncd's log says, pausing syncd first so the merge is theirs alone:\n$ \(ctl) pause --reason \"resolving the conflict\"")
        guard await confirm("the pause", { try await client.pause(reason: "resolving the conflict", until: nil, timeout: .seconds(10)) }) else { return }
        output.say("""
            paused: syncd collects changes but commits nothing (the writers are not affected)
            $ git -C \(place.laptop) merge origin/main     (CONFLICT in \(Self.planPath); both lines are kept)
            $ git -C \(place.laptop) add \(Self.planPath) && git -C \(place.laptop) commit --no-edit
            """)
        do {
            let merge = try await laptopGit.run(
                Self.plainGit + ["merge", "--no-edit", "--no-verify", "-q", "origin/main"], acceptedExitCodes: [0, 1])
            if merge.exitCode == 1 {
                let merged = DemoFiles.read(laptop + "/" + Self.planPath) ?? ""
                guard merged.contains("<<<<<<<") else {
                    throw SyncError(.git, "git merge origin/main failed: \(merge.standardError.split(separator: "\n").first ?? "")")
                }
                let resolved = Self.planStart.replacingFirst("meeting: Tuesday 10:00", with: Self.laptopLine + "\n" + Self.deskLine)
                try DemoFiles.write(laptop + "/" + Self.planPath, resolved)
                _ = try await laptopGit.run(["add", GitArgument(Self.planPath)])
                _ = try await laptopGit.run(Self.plainGit + ["commit", "-q", "--no-verify", "--no-edit"])
            }
            let head = try await laptopGit.run(["rev-parse", "HEAD"], readOnly: true).text
            facts.withLock { $0.resolution = head }
            output.say("merged: \(head.prefix(8)) has both lines")
        } catch {
            failed("the merge by hand did not work: \((error as? SyncError)?.description ?? "\(error)")")
        }
        let pushesBefore = await narrator.pushes
        output.say("$ \(ctl) resume")
        guard await confirm("the resume", { try await client.resume(clearEmergency: false, timeout: .seconds(10)) }) else { return }
        output.say("resumed: syncd commits what the writers wrote during the pause, as one batch, and pushes the merge")
        let pushed = (try? await stop.wait(.seconds(30)) {
            guard await narrator.pushes > pushesBefore else { return false }
            return client.state()?.conflictBranch == ""
        }) ?? false
        if pushed {
            output.say("the conflict is resolved: origin/main has both lines. `\(ctl) conflicts` lists its branch as resolved, and `--clean` deletes it")
        } else if !stop.requested {
            failed("the merge was not pushed within 30 s")
        }
    }

    /// The other machine pulls: it has everything the laptop's writers wrote, with nobody
    /// committing by hand there.
    private func deskPulls() async {
        output.say("on desk: git pull")
        do {
            _ = try await deskGit.run(Self.plainGit + ["pull", "-q", "--no-rebase", "--no-edit", "--no-verify", "origin", "main"])
            let notes = (try? DirectoryListing.list(Array((place.desk + "/notes").utf8)))?.count ?? 0
            let status = DemoFiles.read(place.desk + "/status/summary.md")?.split(separator: "\n").first { $0.hasPrefix("round ") }
            let plan = DemoFiles.read(place.desk + "/" + Self.planPath) ?? ""
            output.say("desk now has what laptop's writers wrote: \(notes) notes, the status at \(status.map { String($0.prefix { $0 != "," }) } ?? "no round yet"), "
                + (plan.contains(Self.laptopLine) && plan.contains(Self.deskLine) ? "and the resolved plan with both lines" : "and the plan as the remote has it"))
        } catch {
            failed("git pull on desk did not work: \((error as? SyncError)?.description ?? "\(error)")")
        }
    }

    /// Leaves no pause or emergency stop behind (a Ctrl-C in between), so the final batch commits
    /// everything and a kept workspace runs normally.
    private func clearControls(_ client: ControlClient) async {
        let directory = client.lockDirectory
        guard Syscall.exists(directory.emergencyStop) || Syscall.exists(directory.daemonPause) else { return }
        output.say("$ \(ctl) resume --clear-emergency      (the demo leaves nothing paused or stopped)")
        _ = await confirm("the resume", { try await client.resume(clearEmergency: true, timeout: .seconds(10)) })
    }

    /// Runs a control request and says how it ended; false when it was not confirmed.
    private func confirm(_ what: String, _ request: () async throws -> ControlClient.RequestOutcome) async -> Bool {
        let started = ContinuousClock.now
        do {
            switch try await request() {
            case .confirmed:
                output.say("syncd confirmed \(what) in \((ContinuousClock.now - started).wholeMilliseconds) ms")
                return true
            case .notRunning:
                failed("\(what): syncd is not running")
            case .notConfirmed:
                failed("\(what): syncd did not confirm within 10 s")
            }
        } catch {
            failed("\(what): \((error as? SyncError)?.description ?? "\(error)")")
        }
        return false
    }

    // MARK: - the other machine (plain git)

    /// The desk's current version of `path` (after a pull), changed by `change`.
    private func deskChange(_ path: String, _ change: (String) -> String) async throws -> String {
        _ = try await deskGit.run(Self.plainGit + ["pull", "-q", "--no-rebase", "--no-edit", "--no-verify", "origin", "main"])
        return change(DemoFiles.read(place.desk + "/" + path) ?? "")
    }

    /// pull, write, add, commit, push (pulling again when the push is rejected); the commit.
    private func deskCommit(_ path: String, _ content: String, message: String) async throws -> String {
        let git = deskGit
        _ = try await git.run(Self.plainGit + ["pull", "-q", "--no-rebase", "--no-edit", "--no-verify", "origin", "main"])
        if let slash = path.lastIndex(of: "/") { try DemoFiles.makeDirectory(place.desk + "/" + path[..<slash]) }
        try DemoFiles.write(place.desk + "/" + path, content)
        _ = try await git.run(["add", GitArgument(path)])
        _ = try await git.run(Self.plainGit + ["commit", "-q", "--no-verify", "-m", GitArgument(message)])
        let commit = try await git.run(["rev-parse", "HEAD"], readOnly: true).text
        record.add(DemoWrite(writer: .desk, path: path, content: content))
        for attempt in 1...5 {
            let push = try await git.run(["push", "-q", "origin", "main"], acceptedExitCodes: [0, 1])
            if push.exitCode == 0 { return commit }
            // laptop pushed meanwhile: merge its commits, then push again.
            guard attempt < 5 else {
                throw SyncError(.git, "git push from desk was rejected 5 times: \(push.standardError.split(separator: "\n").first ?? "")")
            }
            _ = try await git.run(Self.plainGit + ["pull", "-q", "--no-rebase", "--no-edit", "--no-verify", "origin", "main"])
        }
        return commit
    }
}

/// syncd's own log lines: all of them into syncd.log; warnings and errors (and, with --verbose,
/// everything) also in the demo's output, as what syncd logs.
struct DemoLogHandler: LogHandler {
    /// syncd.log, shared by every copy of the logger.
    final class File: Sendable {
        let fd: Int32

        init(path: String) {
            fd = (try? Syscall.open(Array(path.utf8), flags: O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, mode: 0o644)) ?? -1
        }

        deinit { if fd >= 0 { Syscall.close(fd) } }
    }

    let file: File
    let output: DemoOutput
    let verbose: Bool
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let text = "\(event.level.rawValue): \(event.message)"
            + StandardErrorLogHandler.metadataSuffix(metadata.merging(event.metadata ?? [:]) { _, new in new })
        if file.fd >= 0 { try? Syscall.writeAll(file.fd, Array("\(WallClock.rfc3339()) \(text)\n".utf8)) }
        if verbose || event.level >= .warning { output.say("syncd logs: \(text)") }
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        replacing(target, with: replacement, maxReplacements: 1)
    }
}
