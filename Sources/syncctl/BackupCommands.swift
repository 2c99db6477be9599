import ArgumentParser
import SyncCore
import SyncEngine
import SyncGit
import SyncSystem

/// `syncctl backups` and `restore`: the bundle chains syncd keeps in its state directory.
struct Backups: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the bundle backups, newest first.")
    @OptionGroup var options: WorkspaceOptions

    func run() async throws {
        let client = try await options.client()
        let directory = client.stateDirectory + Array("/backups".utf8)
        let backups = BundleStore(directory: directory).list()
        guard !backups.isEmpty else {
            say("no backups yet in \(Syscall.display(directory)) (syncd writes one per sync cycle that has new commits)")
            return
        }
        for backup in backups {
            let header = BundleHeader.read(backup.path)
            let kind = header.isFull ? "full" : "incremental"
            let tips = header.refs.map { "\($0.name) \($0.commit.prefix(12))" }.joined(separator: ", ")
            say("\(backup.name)  \(WallClock.rfc3339(seconds: backup.modified))  \(backup.size) bytes  \(kind)  \(tips)")
        }
    }
}

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a bundle backup into a new branch of the workspace, or into a new directory; never over the working tree.")
    @OptionGroup var options: WorkspaceOptions
    @Argument(help: "A bundle name from `syncctl backups`, or a path.")
    var bundle: String
    @Option(help: "The new branch to create (default: syncd/restore/<bundle name>).")
    var branch: String?
    @Option(help: "Restore into this new directory instead (a fresh clone with the chain of bundles up to this one).")
    var into: String?

    func run() async throws {
        // A bundle given by path restores --into a new directory without any workspace: the
        // off-site copy after the disk with the repository died.
        let standalone = bundle.contains("/") && into != nil
        let client: ControlClient? = standalone ? try? await ControlClient.open(at: options.workspace) : try await options.client()
        let path: [UInt8]
        if bundle.contains("/") {
            path = Array(bundle.utf8)
        } else if let client {
            path = client.stateDirectory + Array("/backups/\(bundle)".utf8)
        } else {
            throw Failure("no workspace at \(options.workspace) to find \(bundle) in; give the bundle's path")
        }
        guard Syscall.exists(path) else { throw Failure("no bundle \(bundle) (see `syncctl backups`)") }
        let header = BundleHeader.read(path)
        guard header.isBundle, let tip = header.refs.first else { throw Failure("\(Syscall.display(path)) is not a git bundle (no refs in its header)") }
        let stem = String(decoding: path.split(separator: UInt8(ascii: "/")).last ?? [], as: UTF8.self)
        let stemName = stem.hasSuffix(".bundle") ? String(stem.dropLast(".bundle".count)) : stem
        if let into {
            guard !Syscall.exists(Array(into.utf8)) else { throw Failure("\(into) exists; restore needs a new directory") }
            // The chain: the full bundle this one builds on and every bundle between, oldest first.
            let store = BundleStore(directory: AtomicFile.parentDirectory(of: path))
            let chain = store.chains().first { $0.contains { $0.name == stem } }.map { chain in
                chain.filter { $0.name <= stem }.map(\.path)
            } ?? [path]
            let target = GitRunner(workTree: Array(into.utf8))
            _ = try await GitRunner(workTree: Array(".".utf8)).run(["init", "-q", GitArgument(into)])
            // Bundles made by syncd ≥ 0.12 hold everything since the full one; older ones left
            // out what the remote had, so the remote is fetched too when there is one.
            var fetched = ""
            if let client {
                let branch = GitDirectoryState.currentBranch(client.repository)
                if let remote = await Syncer.configuredRemote(client.repository, branch: branch),
                    let url = try? await client.repository.git.run(["remote", "get-url", GitArgument(remote)], readOnly: true).standardOutput,
                    !url.isEmpty
                {
                    let location = String(decoding: url, as: UTF8.self).filter { $0 != "\n" }
                    let fetch = try await target.run(["fetch", "-q", GitArgument(location), "+refs/heads/*:refs/remotes/origin/*"], acceptedExitCodes: Set(0...255))
                    fetched = fetch.exitCode == 0 ? " (with the history of \(remote))" : ""
                }
            }
            for part in chain {
                let result = try await target.run(["bundle", "unbundle", GitArgument(rawBytes: part)], acceptedExitCodes: [0, 1, 128])
                if result.exitCode != 0 {
                    throw Failure("cannot apply \(Syscall.display(part)): \(result.standardError.split(separator: "\n").first ?? "")"
                        + " (its base is neither in an older bundle nor on the remote; restore with --branch inside the workspace instead)")
                }
            }
            let local = tip.name.hasPrefix("refs/heads/") ? tip.name : "refs/heads/restored"
            _ = try await target.run(["update-ref", GitArgument(local), GitArgument(tip.commit)])
            _ = try await target.run(["symbolic-ref", "HEAD", GitArgument(local)])
            _ = try await target.run(["reset", "-q", "--hard"])
            say("restored \(tip.name) at \(tip.commit.prefix(12)) into \(into) from \(chain.count) bundle(s)\(fetched)")
            return
        }
        guard let client else { throw Failure("no workspace at \(options.workspace)") }
        let git = client.repository.git
        let newBranch = branch ?? "syncd/restore/\(stemName)"
        let unbundled = try await git.run(["bundle", "unbundle", GitArgument(rawBytes: path)], acceptedExitCodes: [0, 1, 128])
        guard unbundled.exitCode == 0 else {
            throw Failure("cannot apply \(Syscall.display(path)): \(unbundled.standardError.split(separator: "\n").first ?? "")")
        }
        // The empty old value makes update-ref refuse to replace an existing branch.
        let created = try await git.run(["update-ref", GitArgument("refs/heads/\(newBranch)"), GitArgument(tip.commit), ""], acceptedExitCodes: [0, 128])
        guard created.exitCode == 0 else { throw Failure("branch \(newBranch) exists already; pick another with --branch") }
        say("restored \(tip.name) at \(tip.commit.prefix(12)) as branch \(newBranch) (the working tree is untouched)")
    }
}
