import SyncCore
import SyncGit
import SyncSystem

/// What one crawl level did: the watches it added, what it could not watch, what it found.
struct CrawlLevel: Sendable {
    var added: [(path: RepoPath, wd: Int32)] = []
    /// Directories left unwatched because the watch limit was reached (ENOSPC/ENOMEM).
    var unwatched: [RepoPath] = []
    /// Directories that could not be watched or listed for another reason (permissions): the
    /// processor keeps them as unreadable and tries again.
    var problems: [(path: RepoPath, error: SyscallError)] = []
    /// Subdirectories found, not yet filtered through the ignore rules.
    var subdirectories: [RepoPath] = []
    /// Entries reported as `found` (only for directories the caller asked to report).
    var found: [Change] = []
    var limitReached = false
}

/// Adds watches and lists directories, level by level, in the race-free order of inotify(7):
/// add the watch first, then list, so anything created before the watch is seen by the listing
/// and anything created after it makes an event.
public enum Crawler {
    /// The blocking half of one level (run off the cooperative pool). `limitReached` carries over
    /// from earlier levels: once the kernel said ENOSPC, syncd stops asking and only lists, so it can
    /// say how many directories need watching.
    static func crawlLevel(
        _ directories: [RepoPath],
        repository: Repository,
        inotify: InotifyDescriptor,
        limitReached: Bool,
        fault: WatcherOptions.AddWatchFault? = nil,
        report: @Sendable (RepoPath) -> Bool
    ) -> CrawlLevel {
        var level = CrawlLevel()
        level.limitReached = limitReached
        for directory in directories {
            let absolute = repository.absolute(directory)
            if level.limitReached {
                level.unwatched.append(directory)
            } else {
                do throws(SyscallError) {
                    if let errno = fault?(directory) {
                        throw SyscallError(call: "inotify_add_watch", path: Syscall.display(absolute), errno: errno)
                    }
                    let wd = try inotify.addWatch(absolute)
                    level.added.append((directory, wd))
                } catch {
                    switch error.errno {
                    case .noSpace, .noMemory:
                        level.limitReached = true
                        level.unwatched.append(directory)
                    case .notFound, .notDirectory, .loop:
                        continue  // gone, or replaced by a file or symlink: its parent's events say so.
                    default:
                        level.problems.append((directory, error))
                        continue
                    }
                }
            }
            list(directory, repository: repository, into: &level, report: report(directory))
        }
        return level
    }

    /// Lists `directory` into `level`: its subdirectories (`.git` left out) and, when `report`,
    /// every entry as found. One that cannot be listed is a problem, unless it is gone.
    static func list(_ directory: RepoPath, repository: Repository, into level: inout CrawlLevel, report: Bool) {
        let entries: [DirectoryEntry]
        do {
            entries = try DirectoryListing.list(repository.absolute(directory))
        } catch {
            switch error.errno {
            case .notFound, .notDirectory, .loop: break
            default: level.problems.append((directory, error))
            }
            return
        }
        for entry in entries where entry.name != dotGit {
            let child = directory.appending(entry.name)
            let isDirectory = entry.type == .directory
            if isDirectory { level.subdirectories.append(child) }
            if report { level.found.append(Change(path: child, kind: .found, isDirectory: isDirectory)) }
        }
    }

    /// The subdirectories of a level that the crawl enters: those git does not ignore (one
    /// `git check-ignore` for the whole level), and the ones it ignores.
    static func entered(_ subdirectories: [RepoPath], oracle: any IgnoreOracle) async throws -> (entered: [RepoPath], ignored: Set<RepoPath>) {
        let ignored = try await oracle.ignored(subdirectories)
        return (subdirectories.filter { !ignored.contains($0) }, ignored)
    }

    /// How many directories the watcher would watch in `repository` (`syncctl doctor` compares it
    /// with the inotify limit): the crawl's walk, listing only. Nil when git cannot say what it
    /// ignores.
    public static func directoriesToWatch(_ repository: Repository) async -> Int? {
        let oracle = GitIgnoreOracle(git: repository.git)
        var count = 1
        var directories: [RepoPath] = [.root]
        while !directories.isEmpty {
            var level = CrawlLevel()
            for directory in directories { list(directory, repository: repository, into: &level, report: false) }
            guard let next = try? await entered(level.subdirectories, oracle: oracle) else { return nil }
            directories = next.entered
            count += directories.count
        }
        return count
    }

    static let dotGit: [UInt8] = Array(".git".utf8)
}
