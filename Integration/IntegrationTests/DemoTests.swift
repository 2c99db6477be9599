import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Testing

/// `syncd demo`: the real binary, its summary checked against the repositories it made.
@Suite("syncd demo", .serialized)
struct DemoTests {
    func demo(_ arguments: [String], environment: [String: String?] = [:]) -> ProcessHarness {
        ProcessHarness(ProcessHarness.product("syncd"), ["demo"] + arguments, environment: environment)
    }

    /// The first capture of `pattern` in `text`.
    func capture(_ pattern: String, in text: String) throws -> String {
        let regex = try Regex(pattern)
        guard let match = text.firstMatch(of: regex), match.count > 1, let value = match[1].substring else {
            throw TestFailure("no match for \(pattern) in:\n\(text)")
        }
        return String(value)
    }

    func show(_ git: GitRunner, _ name: String) async throws -> String? {
        let result = try await git.run(["cat-file", "blob", GitArgument(name)], readOnly: true, acceptedExitCodes: [0, 128])
        return result.exitCode == 0 ? String(decoding: result.standardOutput, as: UTF8.self) : nil
    }

    @Test("demo --for 20s --keep: every write of both writers is in laptop's history or working tree, the conflict's both sides exist, the summary is true")
    func summaryMatchesRepositories() async throws {
        let scratch = try TemporaryDirectory(prefix: "syncd-demo-test")
        defer { scratch.remove() }
        let dir = scratch.sub("demo")
        let run = demo(["--for", "20s", "--keep", "--dir", dir])
        #expect(try await run.exit(within: .seconds(180)) == .exited(0), "stdout:\n\(run.stdout)\nstderr:\n\(run.stderr)")
        let out = run.stdout
        // What it says as it happens, with the commands a person could type.
        let laptop = dir + "/laptop"
        for expected in [
            "] commit ", "pushed to origin", "pulled in the remote's new commits", "syncd waits",
            "$ syncctl -C \(laptop) emergency-stop", "$ syncctl -C \(laptop) resume --clear-emergency",
            "$ syncctl -C \(laptop) pause", "$ syncctl -C \(laptop) resume", "syncctl -C \(laptop) status",
            "syncctl -C \(laptop) conflicts", "CONFLICT with origin in shared/plan.md", "nothing lost",
        ] {
            #expect(out.contains(expected), "missing \"\(expected)\" in:\n\(out)")
        }
        #expect(!out.contains("PROBLEM"), "\(out)")

        let git = GitRunner(workTree: Array(laptop.utf8))
        let remote = dir + "/remote.git"
        // commits: the count is syncd's commits in laptop's history (they carry Syncd-Batch).
        let commits = Int(try capture(#"commits: (\d+) by syncd"#, in: out)) ?? -1
        let batches = try await git.run(["log", "--format=%(trailers:key=Syncd-Batch,valueonly)", "HEAD"], readOnly: true)
        let batchCount = String(decoding: batches.standardOutput, as: UTF8.self).split(separator: "\n").filter { !$0.isEmpty }.count
        #expect(commits > 0 && commits == batchCount, "summary: \(commits), history: \(batchCount)")
        // pushes: the remote has laptop's HEAD.
        let head = String(decoding: try await git.run(["rev-parse", "HEAD"], readOnly: true).standardOutput, as: UTF8.self).filter { !$0.isWhitespace }
        let said = try capture(#"origin's main is laptop's HEAD ([0-9a-f]+)"#, in: out)
        let remoteMain = String(decoding: try await git.run(["ls-remote", GitArgument(remote), "refs/heads/main"], readOnly: true).standardOutput, as: UTF8.self)
        #expect(head.hasPrefix(said) && remoteMain.hasPrefix(head), "HEAD \(head), summary \(said), remote \(remoteMain)")
        #expect(Int(try capture(#"pushes: (\d+) to origin"#, in: out)) ?? 0 > 0)
        #expect(Int(try capture(#"pulls: (\d+)"#, in: out)) ?? 0 > 0)

        // Every write in writes.jsonl, checked here, independently of the demo's own check.
        let manifest = try String(contentsOfFile: dir + "/writes.jsonl", encoding: .utf8)
        let writes = manifest.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
        let headLog = try await show(git, "HEAD:status/history.log") ?? ""
        let treeLog = (try? String(contentsOfFile: laptop + "/status/history.log", encoding: .utf8)) ?? ""
        var notes = 0
        var rounds = 0
        for write in writes {
            let path = try #require(write["path"] as? String)
            let content = try #require(write["content"] as? String)
            switch write["writer"] as? String {
            case "notes":
                notes += 1
                let committed = try await show(git, "HEAD:\(path)")
                let inTree = try? String(contentsOfFile: laptop + "/" + path, encoding: .utf8)
                #expect(committed == content || inTree == content, "LOST: \(path)")
            case "status":
                rounds += 1
                #expect(headLog.contains(content) || treeLog.contains(content), "LOST: status round \(write["round"] ?? "?")")
            default:
                break
            }
        }
        #expect(notes > 3 && rounds > 1, "\(writes.count) writes")
        #expect(out.contains("\(notes) notes written") && out.contains("\(rounds) rounds written"), "\(out)")
        // Every commit that changed the status holds one whole round (the protocol's promise).
        let changed = String(decoding: try await git.run(["log", "--format=%H", "HEAD", "--", "status"], readOnly: true).standardOutput, as: UTF8.self)
            .split(separator: "\n").map(String.init)
        #expect(!changed.isEmpty)
        for commit in changed {
            let summary = try await show(git, "\(commit):status/summary.md") ?? ""
            let json = try await show(git, "\(commit):status/status.json") ?? ""
            let round = try capture(#"round (\d+)"#, in: summary)
            #expect(json.contains("\"round\":\(round),"), "commit \(commit): summary at round \(round), json \(json)")
        }

        // The conflict: laptop's line on the conflict branch, here and on the remote; the desk's
        // line in its commit; both in HEAD after the merge by hand.
        let branch = try capture(#"laptop's line on (syncd/conflict/\S+) "#, in: out)
        let deskCommit = try capture(#"the desk's line in ([0-9a-f]+)"#, in: out)
        #expect(try await show(git, "refs/heads/\(branch):shared/plan.md")?.contains("changed on the laptop") == true)
        let remoteBranch = String(decoding: try await git.run(["ls-remote", GitArgument(remote), GitArgument("refs/heads/\(branch)")], readOnly: true).standardOutput, as: UTF8.self)
        let remoteTip = try #require(remoteBranch.split(separator: "\t").first.map(String.init), "\(branch) is not on the remote")
        #expect(try await show(git, "\(remoteTip):shared/plan.md")?.contains("changed on the laptop") == true)
        #expect(try await show(git, "\(deskCommit):shared/plan.md")?.contains("changed on the desk") == true)
        let plan = try await show(git, "HEAD:shared/plan.md") ?? ""
        #expect(plan.contains("changed on the laptop") && plan.contains("changed on the desk"), "\(plan)")
        let fixture = try await GitFixture(in: laptop)
        try await fixture.fsck()
        // Nothing paused or stopped is left in a kept workspace.
        #expect(!FileManager.default.fileExists(atPath: laptop + "/.git/syncd/emergency-stop.json"))
        #expect(!FileManager.default.fileExists(atPath: laptop + "/.git/syncd/paused.json"))
    }

    @Test("demo without --keep leaves nothing behind (default directory under TMPDIR)")
    func nothingLeftBehind() async throws {
        let scratch = try TemporaryDirectory(prefix: "syncd-demo-tmp")
        defer { scratch.remove() }
        let run = demo(["--for", "15s"], environment: ["TMPDIR": scratch.path])
        #expect(try await run.exit(within: .seconds(180)) == .exited(0), "stdout:\n\(run.stdout)\nstderr:\n\(run.stderr)")
        #expect(run.stdout.contains("scratch repositories in \(scratch.path)/syncd-demo-"), "\(run.stdout)")
        #expect(run.stdout.contains("nothing lost"), "\(run.stdout)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty)
    }

    @Test("Ctrl-C ends the demo cleanly: writers finish, syncd commits and pushes, the summary is checked, everything is removed; exit 130")
    func interrupted() async throws {
        let scratch = try TemporaryDirectory(prefix: "syncd-demo-test")
        defer { scratch.remove() }
        let dir = scratch.sub("demo")
        let run = demo(["--for", "60s", "--dir", dir])
        try await run.waitForLine("the first commit", within: .seconds(60)) { $0.contains("] commit ") }
        run.signal(SIGINT)
        #expect(try await run.exit(within: .seconds(60)) == .exited(130), "stdout:\n\(run.stdout)\nstderr:\n\(run.stderr)")
        #expect(run.stdout.contains("Ctrl-C: ending the demo"), "\(run.stdout)")
        #expect(run.stdout.contains("nothing lost"), "\(run.stdout)")
        #expect(!FileManager.default.fileExists(atPath: dir))
    }

    @Test("bad uses: a non-empty --dir is refused and left alone; --for outside 15s–10m is a usage error")
    func refusals() async throws {
        let scratch = try TemporaryDirectory(prefix: "syncd-demo-test")
        defer { scratch.remove() }
        try Files.write(scratch.sub("mine.txt"), "not the demo's\n")
        let busy = demo(["--dir", scratch.path])
        #expect(try await busy.exit() == .exited(1))
        #expect(busy.stderr.contains("is not empty"), "\(busy.stderr)")
        #expect(try String(contentsOfFile: scratch.sub("mine.txt"), encoding: .utf8) == "not the demo's\n")
        let short = demo(["--for", "5s"])
        #expect(try await short.exit() == .exited(64))
        #expect(short.stderr.contains("--for 5s"), "\(short.stderr)")
    }
}
