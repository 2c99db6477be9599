import FoundationEssentials
import Glibc
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem

/// Follows what the service does, from the files it keeps for people and programs (the journal,
/// `.git/syncd/journal.jsonl`, and `state.json`), and says it in plain words as it happens. It
/// also counts what the summary reports.
actor DemoNarrator {
    private let output: DemoOutput
    private let git: GitRunner
    private let stateDirectory: [UInt8]
    private let remote: String
    private let quietPeriod: String
    private let maxLatency: String
    private var offset = 0
    private var partial: [UInt8] = []
    private var triggers: [Int: String] = [:]
    private var lastPushed: String?
    private var waitingForWriters = false

    /// syncd's commits this run, oldest first.
    private(set) var commits: [String] = []
    private(set) var pushes = 0
    private(set) var integrations = 0
    /// The conflict branch and its files, once syncd reported one.
    private(set) var conflict: (branch: String, files: [String])?
    /// Times syncd waited for a writer holding the sync lock.
    private(set) var writerWaits = 0
    private(set) var problems: [String] = []
    private(set) var stopped = false

    init(output: DemoOutput, git: GitRunner, stateDirectory: [UInt8], remote: String, quietPeriod: String, maxLatency: String) {
        self.output = output
        self.git = git
        self.stateDirectory = stateDirectory
        self.remote = remote
        self.quietPeriod = quietPeriod
        self.maxLatency = maxLatency
    }

    /// Reads what is new in the journal and in state.json, and says it.
    func poll() async {
        await readJournal()
        readState()
    }

    private func readJournal() async {
        let path = stateDirectory + Array("/journal.jsonl".utf8)
        guard let fd = try? Syscall.open(path, flags: O_RDONLY | O_NOFOLLOW) else { return }
        defer { Syscall.close(fd) }
        guard lseek(fd, off_t(offset), SEEK_SET) >= 0, let bytes = try? Syscall.readAll(fd, limit: 16 * 1024 * 1024) else { return }
        offset += bytes.count
        partial += bytes
        guard let end = partial.lastIndex(of: UInt8(ascii: "\n")) else { return }
        let complete = partial[..<end]
        partial = Array(partial[(end + 1)...])
        for line in complete.split(separator: UInt8(ascii: "\n")) {
            guard let record = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line)) else { continue }
            await narrate(record)
        }
    }

    private func narrate(_ record: [String: JSONValue]) async {
        let event = record["event"]?.string ?? ""
        let batch = record["batch"]?.number.map { Int($0) } ?? 0
        switch event {
        case "batch":
            triggers[batch] = record["trigger"]?.string ?? ""
        case "commit":
            let commit = record["commit"]?.string ?? ""
            commits.append(commit)
            let subject = (try? await git.run(["log", "-1", "--format=%s", GitArgument(commit)], readOnly: true))?.text ?? ""
            output.say("commit \(commit.prefix(8)) (\(explain(record["trigger"]?.string ?? triggers[batch] ?? ""))): \(subject)")
        case "deferred":
            output.say("syncd waits to commit batch \(batch): \(record["message"]?.string ?? "")")
        case "failed":
            let error = record["error"]?.string ?? ""
            problems.append("batch \(batch) failed: \(error)")
            output.say("batch \(batch) FAILED (syncd retries; nothing is lost): \(error)")
        case "breaker-open":
            problems.append("the circuit breaker opened")
            output.say("the circuit breaker opened: too many commits in a short time; syncd stops committing for a while")
        case "sync-done" where record["pushed"]?.bool == true:
            let head = (try? await git.run(["rev-parse", "-q", "--verify", GitArgument("refs/remotes/\(remote)/main")], readOnly: true, acceptedExitCodes: [0, 1]))?.text ?? ""
            var count = ""
            if let lastPushed, !head.isEmpty,
                let counted = try? await git.run(["rev-list", "--count", GitArgument("\(lastPushed)..\(head)")], readOnly: true, acceptedExitCodes: [0, 128]),
                counted.exitCode == 0
            {
                count = " (\(counted.text) new commit\(counted.text == "1" ? "" : "s"))"
            }
            if !head.isEmpty { lastPushed = head }
            output.say("pushed to \(remote): its main is now \(head.prefix(8))\(count)")
            // Counted once said: the timeline waits on the count (the git calls above let it in).
            pushes += 1
        case "integrated":
            let commit = record["commit"]?.string ?? ""
            output.say("pulled in the remote's new commits: \(record["how"]?.string ?? "integrated") → \(commit.prefix(8)); only the paths they changed were touched")
            integrations += 1
        case "sync-conflict":
            let branch = record["branch"]?.string ?? ""
            let files: [String]
            if case .array(let values) = record["files"] { files = values.map(\.description) } else { files = [] }
            conflict = (branch, files)
            output.say("CONFLICT with \(remote) in \(files.joined(separator: ", ")): syncd changed nothing in the working tree;\n"
                + "laptop's side is on the branch \(branch) (pushed to \(remote) too), the remote's side stays \(remote)/main")
        case "sync-failed":
            let error = record["error"]?.string ?? ""
            output.say("syncd cannot sync with \(remote) (\(record["kind"]?.string ?? "offline")): \(error); it keeps committing locally and retries")
        case "stop":
            stopped = true
            if let error = record["error"]?.string {
                problems.append("syncd stopped with an error: \(error)")
                output.say("syncd stopped with an error: \(error)")
            } else {
                output.say("syncd stopped")
            }
        default:
            break
        }
    }

    /// state.json: the waits for writers holding the sync lock (they make no journal line).
    private func readState() {
        guard let bytes = try? Syscall.readFile(stateDirectory + Array("/state.json".utf8), limit: 1 << 20),
            let state = try? JSONDecoder().decode(StatusSnapshot.self, from: Data(bytes))
        else { return }
        let waiting = state.phase == .deferred && state.reasonCode == "writers-active"
        if waiting && !waitingForWriters {
            writerWaits += 1
            output.say(writerWaits == 1
                ? "syncd waits: the status writer holds the sync lock, half-way through its update;\nthe batch waits for it, so no commit ever holds half an update"
                : "syncd waits for the status writer to finish its update")
        }
        waitingForWriters = waiting
    }

    private func explain(_ trigger: String) -> String {
        switch trigger {
        case "quiet": "nothing changed for \(quietPeriod)"
        case "max-latency": "its oldest change was \(maxLatency) old"
        case "size": "many paths were pending"
        case "startup": "what changed while syncd was not running"
        case "requested": "asked for: a resume or `syncctl sync`"
        case "shutdown": "syncd is stopping"
        case "before-integration": "first, before pulling in the remote's commits"
        default: trigger.isEmpty ? "a batch" : trigger
        }
    }
}

