import SyncCore
import SyncGit
import SyncSystem

/// The summary: what syncd did, checked against the repositories. Every write of both writers
/// must be in laptop's history or its working tree; every commit that changed the status must
/// hold one whole round of it; both sides of the conflict must exist.
struct DemoCheck {
    let place: DemoPlace
    let record: DemoRecord
    let output: DemoOutput

    var git: GitRunner { GitRunner(workTree: Array(place.laptop.utf8)) }

    /// Prints the summary; true when everything checked out.
    func run(narrator: DemoNarrator, facts: DemoScenario.Facts) async -> Bool {
        var problems = facts.failures + (await narrator.problems)
        var lines: [String] = []
        do {
            lines += try await history(narrator: narrator, facts: facts, problems: &problems)
            lines += try await writes(narrator: narrator, problems: &problems)
            lines += try await conflict(narrator: narrator, facts: facts, problems: &problems)
        } catch {
            problems.append("the check itself failed: \((error as? SyncError)?.description ?? "\(error)")")
        }
        output.plain("\nSummary, checked against the repositories:")
        for line in lines { output.plain("  " + line) }
        if problems.isEmpty {
            output.plain("  nothing lost: every write of both writers is in laptop's history or working tree\n")
        } else {
            for problem in problems { output.plain("  PROBLEM: " + problem) }
            output.plain("  NOT everything checked out: see the problems above, and syncd's log in \(place.log) (run again with --keep to look)\n")
        }
        output.plain("""
            To run syncd on a workspace of your own: `syncd run ~/notes` (it commits there), or as a service:
            `syncctl enable ~/notes`. Writers that must not be committed half-way: `syncctl as-writer -C ~/notes -- CMD`.
            """)
        return problems.isEmpty
    }

    /// syncd's commits in laptop's history; pushes; pulls; laptop and the remote agree.
    private func history(narrator: DemoNarrator, facts: DemoScenario.Facts, problems: inout [String]) async throws -> [String] {
        let head = try await git.run(["rev-parse", "HEAD"], readOnly: true).text
        let reachable = Set(try await git.run(["rev-list", "HEAD"], readOnly: true).text.split(separator: "\n").map(String.init))
        let commits = await narrator.commits
        let missing = commits.filter { !reachable.contains($0) }
        if !missing.isEmpty {
            problems.append("\(missing.count) of syncd's commits are not in laptop's history: \(missing.map { String($0.prefix(12)) }.joined(separator: ", "))")
        }
        let remoteMain = try await git.run(["ls-remote", GitArgument(place.remote), "refs/heads/main"], readOnly: true).text
            .split(separator: "\t").first.map(String.init) ?? ""
        let pushes = await narrator.pushes
        let unresolved = await narrator.conflict != nil && facts.resolution == nil
        let pulls = await narrator.integrations
        var lines = [
            "commits: \(commits.count) by syncd, all \(commits.count - missing.count) in laptop's history",
            "pushes: \(pushes) to origin; "
                + (remoteMain == head
                    ? "origin's main is laptop's HEAD \(head.prefix(12))"
                    : "origin's main is \(remoteMain.prefix(12)), laptop's HEAD \(head.prefix(12)) is not pushed yet"
                        + (unresolved ? " (the conflict is not resolved: syncd pushes main once a person merges)" : " (syncd pushes it at its next start)")),
            "pulls: \(pulls) (the desk's commits, brought into laptop by syncd)",
        ]
        let waits = await narrator.writerWaits
        if waits > 0 { lines.append("waits: syncd waited \(waits) time(s) for the status writer to finish an update") }
        return lines
    }

    /// Every note and every status round, in HEAD or the working tree; every commit that changed
    /// the status holds one round whole.
    private func writes(narrator: DemoNarrator, problems: inout [String]) async throws -> [String] {
        let all = record.all
        let notes = all.filter { $0.writer == .notes }
        let rounds = all.filter { $0.writer == .status }
        let inHead = try await blobs(notes.map { "HEAD:\($0.path)" })
        var committed = 0
        var onlyInTree = 0
        for (note, blob) in zip(notes, inHead) {
            if blob == note.content {
                committed += 1
            } else if DemoFiles.read(place.laptop + "/" + note.path) == note.content {
                onlyInTree += 1
            } else {
                problems.append("LOST: \(note.path) as the note taker wrote it is neither in laptop's HEAD nor in its working tree")
            }
        }
        var lines = ["note taker (ignores the protocol): \(notes.count) notes written, \(committed) in laptop's HEAD"
            + (onlyInTree > 0 ? ", \(onlyInTree) only in the working tree (written after syncd's last commit)" : "")]
        let headLog = try await blobs(["HEAD:status/history.log"]).first.flatMap { $0 } ?? ""
        let treeLog = DemoFiles.read(place.laptop + "/status/history.log") ?? ""
        let keptRounds = rounds.filter { headLog.contains($0.content) || treeLog.contains($0.content) }
        for round in rounds where !keptRounds.contains(where: { $0.round == round.round }) {
            problems.append("LOST: status round \(round.round) is in neither laptop's HEAD nor its working tree")
        }
        // Every commit that changed the status, read back: its three files name one round.
        let changed = try await git.run(["log", "--format=%H", "HEAD", "--", "status"], readOnly: true).text.split(separator: "\n").map(String.init)
        let contents = try await blobs(changed.flatMap { ["\($0):status/summary.md", "\($0):status/status.json", "\($0):status/history.log"] })
        var committedRounds = Set<Int>()
        var torn: [String] = []
        for (index, commit) in changed.enumerated() {
            let summary = Self.round(in: contents[index * 3] ?? "", after: "round ")
            let json = Self.round(in: contents[index * 3 + 1] ?? "", after: "\"round\":")
            let history = Self.round(in: (contents[index * 3 + 2] ?? "").split(separator: "\n").last.map(String.init) ?? "", after: "round ")
            if let summary, summary == json, summary == history {
                committedRounds.insert(summary)
            } else {
                torn.append(String(commit.prefix(12)))
            }
        }
        if !torn.isEmpty {
            problems.append("commits holding half a status update: \(torn.joined(separator: ", "))")
        }
        lines.append("status writer (under the protocol): \(rounds.count) rounds written, \(keptRounds.count) in status/history.log; "
            + "\(changed.count) commits changed status/, \(torn.isEmpty ? "each holds one whole round" : "\(torn.count) hold HALF a round")"
            + (committedRounds.count < keptRounds.count
                ? " (\(committedRounds.count) rounds have a commit of their own: rounds rewritten before syncd could commit them, while it was paused, are in the history log)"
                : ""))
        return lines
    }

    /// laptop's side on the conflict branch, here and on the remote; the desk's side in its commit;
    /// both lines in HEAD once resolved.
    private func conflict(narrator: DemoNarrator, facts: DemoScenario.Facts, problems: inout [String]) async throws -> [String] {
        guard let conflict = await narrator.conflict else {
            if facts.conflictStaged && !facts.interrupted { problems.append("no conflict was reported, though both machines changed the same line") }
            return facts.conflictStaged ? ["conflict: none reported (the demo was stopped before syncd found it)"] : []
        }
        let path = DemoScenario.planPath
        let branch = conflict.branch
        let remoteTip = try await git.run(["ls-remote", GitArgument(place.remote), GitArgument("refs/heads/\(branch)")], readOnly: true).text
            .split(separator: "\t").first.map(String.init)
        var wanted = ["refs/heads/\(branch):\(path)"]
        if let remoteTip { wanted.append("\(remoteTip):\(path)") }
        if let desk = facts.deskConflictCommit { wanted.append("\(desk):\(path)") }
        let found = try await blobs(wanted + ["HEAD:\(path)"])
        let localSide = found[0]?.contains(DemoScenario.laptopLine) == true
        let remoteSide = remoteTip != nil && found[1]?.contains(DemoScenario.laptopLine) == true
        let deskSide = facts.deskConflictCommit != nil && found[wanted.count - 1]?.contains(DemoScenario.deskLine) == true
        let head = found.last.flatMap { $0 } ?? ""
        if !localSide { problems.append("the conflict branch \(branch) does not hold laptop's line") }
        if !remoteSide { problems.append("the conflict branch \(branch) is not on the remote with laptop's line") }
        if !deskSide { problems.append("the desk's side of the conflict is not in laptop's repository") }
        let both = head.contains(DemoScenario.laptopLine) && head.contains(DemoScenario.deskLine)
        if facts.resolution != nil && !both { problems.append("HEAD's \(path) lacks one side after the resolution") }
        return ["conflict: \(conflict.files.joined(separator: ", ")): laptop's line on \(branch) (here and on origin), "
            + "the desk's line in \(facts.deskConflictCommit.map { String($0.prefix(12)) } ?? "?")"
            + (both ? "; both lines in HEAD after the merge by hand" : "")]
    }

    /// The contents of `names` (`REV:PATH`), nil for each one that does not exist; one git call.
    private func blobs(_ names: [String]) async throws -> [String?] {
        guard !names.isEmpty else { return [] }
        let result = try await git.run(["cat-file", "--batch"], input: Array((names.joined(separator: "\n") + "\n").utf8), readOnly: true)
        let bytes = result.standardOutput
        var values: [String?] = []
        var index = 0
        while values.count < names.count, index < bytes.count {
            guard let newline = bytes[index...].firstIndex(of: UInt8(ascii: "\n")) else { break }
            let header = String(decoding: bytes[index..<newline], as: UTF8.self).split(separator: " ")
            index = newline + 1
            guard header.count == 3, let size = Int(header[2]) else {
                values.append(nil)  // "<name> missing" (or ambiguous)
                continue
            }
            values.append(String(decoding: bytes[index..<min(bytes.count, index + size)], as: UTF8.self))
            index += size + 1
        }
        while values.count < names.count { values.append(nil) }
        return values
    }

    /// The number after `marker` in `text`.
    static func round(in text: String, after marker: String) -> Int? {
        guard let range = text.firstRange(of: marker) else { return nil }
        return Int(text[range.upperBound...].prefix { $0.isNumber })
    }
}
