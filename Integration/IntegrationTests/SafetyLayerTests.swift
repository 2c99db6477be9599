import Foundation
import Glibc
import SyncCore
import SyncGit
import SyncTestKit
import Testing

/// The layers behind the watcher (issue 15): the periodic reconcile finds what inotify never
/// reported; `syncctl verify` proves the data and fails on each kind of damage; the off-site
/// copy restores on its own, and a crash in the middle of copying leaves nothing verify accepts.
@Suite("safety layers: reconcile, verify, off-site backups (real processes)", .serialized)
struct SafetyLayerTests {
    static func syncctl(_ arguments: [String]) async throws -> (exit: ProcessHarness.Exit, output: String) {
        let process = syncctlProcess(arguments)
        let exit = try await process.exit(within: .seconds(120))
        return (exit, process.stdout + process.stderr)
    }

    static func bundles(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".bundle") }.sorted()
    }

    @Test("a write inotify never reports (through mmap) is committed by the periodic reconcile, counted and named")
    func reconcileFindsMmapWrite() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let path = fixture.file("mapped.txt")
        try Files.write(path, "aaaaaaaaaa\n")
        let syncd = SyncdHarness(fixture, ["--quiet-period", "100ms", "--reconcile-interval", "1s"])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        try await syncd.settled()

        // Opened for writing (no event: IN_OPEN is not watched), changed through a shared
        // mapping (inotify reports nothing for mmap writes), kept open (no IN_CLOSE_WRITE).
        let fd = open(path, O_RDWR)
        #expect(fd >= 0)
        guard let mapping = mmap(nil, 11, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapping != MAP_FAILED else {
            throw TestFailure("mmap failed: errno \(errno)")
        }
        defer {
            munmap(mapping, 11)
            close(fd)
        }
        let bytes = Array("bbbbbbbbbb".utf8)
        bytes.withUnsafeBytes { mapping.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        #expect(msync(mapping, 11, MS_SYNC) == 0)

        try await waitUntil(.seconds(60), "the reconcile commits the mmap write; stderr: \(syncd.process.stderr.suffix(1500))") {
            (try? await fixture.run(["show", "HEAD:mapped.txt"])) == "bbbbbbbbbb\n"
        }
        #expect(syncd.process.stderr.contains("no inotify event reported: mapped.txt"))
        let records = syncd.journal().filter { $0["event"] as? String == "reconcile" }
        #expect(records.count == 1, "\(records)")
        #expect((records.first?["found"] as? Int) == 1)
        #expect((syncd.state()?["reconcile_found"] as? Int) == 1)
        // Reconciles go on, and a path committed once is not counted again.
        let seen = syncd.state()?["last_reconcile_at"] as? String ?? ""
        try await waitUntil(.seconds(30), "another reconcile ran") {
            let now = syncd.state()?["last_reconcile_at"] as? String ?? ""
            return !now.isEmpty && now != seen
        }
        #expect((syncd.state()?["reconcile_found"] as? Int) == 1)
        #expect(try await syncd.stop() == .exited(0))
    }

    @Test("verify passes on a healthy workspace; the off-site copy restores alone (remote and .git gone); verify FAILs on a truncated bundle, a missing middle bundle, a corrupt object, an unreachable backup dir, and WARNs on unpushed commits")
    func verifyAndOffsite() async throws {
        let remote = try await RemoteSyncTests.Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let offsite = remote.root.path + "/offsite"
        // It must exist: syncd never creates it (an unmounted disk's empty mount point is no backup).
        try Files.mkdirs(offsite)
        let local = a.path + "/.git/syncd/backups"
        let syncd = SyncdHarness(a, RemoteSyncTests.fast + ["--push-delay", "0", "--backup-dir", offsite])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        // The first fetch round bundles the seed commit (a full bundle); then one bundle a round.
        for round in 1...3 {
            try Files.write(a.file("round\(round).txt"), "round \(round)\n")
            try await waitUntil(.seconds(60), "bundle \(round) made and copied off-site; stderr: \(syncd.process.stderr.suffix(1500))") {
                guard Self.bundles(local).count >= round + 1, Self.bundles(offsite).count >= round + 1 else { return false }
                let pushed = try await remote.remoteHead()
                return try await pushed == a.head()
            }
        }
        try await syncd.settled()
        #expect(try await syncd.stop() == .exited(0))
        #expect(Self.bundles(local) == Self.bundles(offsite))
        let commits = try await a.commitCount()

        let healthy = try await Self.syncctl(["verify", "-C", a.path])
        #expect(healthy.exit == .exited(0), "\(healthy.output)")
        #expect(healthy.output.contains("restore on their own"))
        let json = try await Self.syncctl(["verify", "-C", a.path, "--json"])
        #expect(json.output.contains(#""result":"ok""#), "\(json.output)")

        // The off-site copy alone rebuilds every commit.
        try Files.move(a.path + "/.git", a.path + "/.git-away")
        try Files.move(remote.url, remote.url + "-away")
        let newest = try #require(Self.bundles(offsite).last)
        let restored = remote.root.path + "/restored"
        let restore = try await Self.syncctl(["restore", "-C", remote.root.path, offsite + "/" + newest, "--into", restored])
        try Files.move(a.path + "/.git-away", a.path + "/.git")
        try Files.move(remote.url + "-away", remote.url)
        #expect(restore.exit == .exited(0), "\(restore.output)")
        let copy = try await GitFixture(in: restored)
        #expect(try await copy.commitCount() == commits)
        let restoredHead = try await copy.head()
        #expect(try await restoredHead == a.head())

        // A truncated bundle.
        let names = Self.bundles(local)
        #expect(names.count == 4, "\(names)")
        let last = local + "/" + names[3]
        let saved = try Data(contentsOf: URL(fileURLWithPath: last))
        try saved.prefix(saved.count / 2).write(to: URL(fileURLWithPath: last))
        let truncated = try await Self.syncctl(["verify", "-C", a.path])
        #expect(truncated.exit == .exited(2), "\(truncated.output)")
        #expect(truncated.output.contains("FAIL backups") && truncated.output.contains(names[3]), "\(truncated.output)")
        try saved.write(to: URL(fileURLWithPath: last))

        // A bundle missing in the middle of a chain.
        let middle = local + "/" + names[1]
        try Files.move(middle, middle + ".away")
        let gap = try await Self.syncctl(["verify", "-C", a.path])
        #expect(gap.exit == .exited(2), "\(gap.output)")
        #expect(gap.output.contains("one of its chain is missing"), "\(gap.output)")
        try Files.move(middle + ".away", middle)

        // A corrupt loose object (written by the test, so loose for sure).
        let blob = String(decoding: try await a.git.run(["hash-object", "-w", "--stdin"], input: Array("a loose object\n".utf8)).standardOutput, as: UTF8.self)
            .filter { !$0.isWhitespace }
        try await a.run(["update-ref", "refs/keep/blob", GitArgument(blob)])
        let object = a.path + "/.git/objects/" + blob.prefix(2) + "/" + blob.dropFirst(2)
        let original = try Data(contentsOf: URL(fileURLWithPath: object))
        chmod(object, 0o644)
        try Data("not zlib at all".utf8).write(to: URL(fileURLWithPath: object))
        let corrupt = try await Self.syncctl(["verify", "-C", a.path])
        #expect(corrupt.exit == .exited(2), "\(corrupt.output)")
        #expect(corrupt.output.contains("FAIL objects"), "\(corrupt.output)")
        try original.write(to: URL(fileURLWithPath: object))
        try await a.run(["update-ref", "-d", "refs/keep/blob"])

        // An unreachable off-site directory.
        try await a.run(["config", "syncd.backupDir", GitArgument(remote.root.path + "/unmounted-disk")])
        let unreachable = try await Self.syncctl(["verify", "-C", a.path])
        #expect(unreachable.exit == .exited(2), "\(unreachable.output)")
        #expect(unreachable.output.contains("FAIL off-site") && unreachable.output.contains("not reachable"), "\(unreachable.output)")
        try await a.run(["config", "--unset", "syncd.backupDir"])

        // Unpushed commits while the remote is away: a WARN, exit 1.
        try Files.write(a.file("offline.txt"), "made while offline\n")
        try await a.run(["add", "offline.txt"])
        try await a.run(["commit", "-qm", "offline"])
        try Files.move(remote.url, remote.url + "-away")
        let offline = try await Self.syncctl(["verify", "-C", a.path])
        try Files.move(remote.url + "-away", remote.url)
        #expect(offline.exit == .exited(1), "\(offline.output)")
        #expect(offline.output.contains("WARN remote") && offline.output.contains("1 commit(s)"), "\(offline.output)")
    }

    @Test("kill -9 while a bundle is copied off-site: no file verify accepts is left, and the restart copies it")
    func killDuringOffsiteCopy() async throws {
        let remote = try await RemoteSyncTests.Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let offsite = remote.root.path + "/offsite"
        // It must exist: syncd never creates it (an unmounted disk's empty mount point is no backup).
        try Files.mkdirs(offsite)
        let arguments = RemoteSyncTests.fast + ["--push-delay", "0", "--backup-dir", offsite]
        let first = SyncdHarness(a, arguments, environment: ["SYNCD_FAILPOINT": "offsite-before-rename"])
        defer { first.process.signal(SIGKILL) }
        try await first.ready()
        try Files.write(a.file("one.txt"), "one\n")
        try await first.process.waitForStderr("failpoint offsite-before-rename reached", within: .seconds(60))
        try await first.kill9()
        #expect(Self.bundles(offsite).isEmpty)
        let partial = ((try? FileManager.default.contentsOfDirectory(atPath: offsite)) ?? []).filter { $0.hasSuffix(".partial") }
        #expect(partial.count == 1, "\(partial)")
        try await a.run(["config", "syncd.backupDir", GitArgument(offsite)])
        let before = try await Self.syncctl(["verify", "-C", a.path])
        #expect(before.exit == .exited(2), "\(before.output)")
        #expect(before.output.contains("FAIL off-site") && before.output.contains("lacks the newest backup"), "\(before.output)")

        let second = SyncdHarness(a, arguments)
        defer { second.process.signal(SIGKILL) }
        try await second.ready()
        try Files.write(a.file("two.txt"), "two\n")
        try await waitUntil(.seconds(60), "the restart copies every bundle off-site; stderr: \(second.process.stderr.suffix(1500))") {
            Self.bundles(offsite).count >= 2 && Self.bundles(offsite) == Self.bundles(a.path + "/.git/syncd/backups")
        }
        try await second.settled()
        #expect(try await second.stop() == .exited(0))
        let after = try await Self.syncctl(["verify", "-C", a.path])
        #expect(!after.output.contains("FAIL"), "\(after.output)")
    }

    @Test("a start after kill -9 writes one recovery record and counts it; a start after a clean stop writes none")
    func recoveryRecord() async throws {
        let fixture = try await GitFixture()
        defer { fixture.remove() }
        let first = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        try await first.ready()
        try Files.write(fixture.file("a.txt"), "a\n")
        try await first.settled()
        try await first.kill9()

        func recoveriesSinceLastStart(_ syncd: SyncdHarness) -> [[String: Any]] {
            let journal = syncd.journal()
            let start = journal.lastIndex { $0["event"] as? String == "start" } ?? 0
            return journal[start...].filter { $0["event"] as? String == "recovery" }
        }
        let second = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        defer { second.process.signal(SIGKILL) }
        try await second.ready()
        let records = recoveriesSinceLastStart(second)
        #expect(records.count == 1, "\(records)")
        #expect((records.first?["found"] as? String)?.contains("without a clean stop") == true)
        #expect((second.state()?["recoveries"] as? Int) == 1)
        #expect(try await second.stop() == .exited(0))

        let third = SyncdHarness(fixture, ["--quiet-period", "100ms"])
        defer { third.process.signal(SIGKILL) }
        try await third.ready()
        #expect(recoveriesSinceLastStart(third).isEmpty)
        #expect(try await third.stop() == .exited(0))
    }

    @Test("a symlinked backupDir given as a flag is followed; verify checks it; when it goes away status says so (degraded, exit 1)")
    func offsiteThroughSymlinkAndStatus() async throws {
        let remote = try await RemoteSyncTests.Remote()
        defer { remote.remove() }
        let a = try await remote.clone("a")
        let disk = remote.root.path + "/disk"
        try Files.mkdirs(disk)
        let link = remote.root.path + "/backup-link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: disk)
        let syncd = SyncdHarness(a, RemoteSyncTests.fast + ["--push-delay", "0", "--backup-dir", link])
        defer { syncd.process.signal(SIGKILL) }
        try await syncd.ready()
        try Files.write(a.file("one.txt"), "one\n")
        try await waitUntil(.seconds(60), "a bundle copied through the symlink; stderr: \(syncd.process.stderr.suffix(1500))") {
            !Self.bundles(disk).isEmpty && Self.bundles(disk) == Self.bundles(a.path + "/.git/syncd/backups")
        }
        try await syncd.settled()
        // The flag is not in git config: verify learns it from the running syncd.
        let verified = try await Self.syncctl(["verify", "-C", a.path])
        #expect(verified.output.contains("OK   off-site"), "\(verified.output)")

        try Files.move(disk, disk + ".unmounted")
        try Files.write(a.file("two.txt"), "two\n")
        try await waitUntil(.seconds(60), "the failing copy is in state.json") {
            !((syncd.state()?["backup_offsite_error"] as? String) ?? "").isEmpty
        }
        let status = try await Self.syncctl(["status", "-C", a.path])
        #expect(status.exit == .exited(1), "\(status.output)")
        #expect(status.output.contains("OFF-SITE BACKUP FAILING"), "\(status.output)")
        #expect(status.output.contains("off-site backup failing"), "\(status.output)")
        #expect(try await syncd.stop() == .exited(0))
    }
}
