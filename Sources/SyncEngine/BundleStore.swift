import Glibc
import SyncCore
import SyncSystem

/// The header of a git bundle: `-SHA` prerequisite lines and `SHA refname` lines, up to an empty
/// line. A bundle without prerequisites is full: it restores on its own.
public struct BundleHeader: Sendable {
    public var prerequisites: [String] = []
    public var refs: [(commit: String, name: String)] = []
    /// The file starts like a bundle (`# v2 git bundle` or v3).
    public var isBundle = false

    public var isFull: Bool { prerequisites.isEmpty }

    public static func read(_ path: [UInt8]) -> BundleHeader {
        var header = BundleHeader()
        guard let bytes = try? Syscall.readFile(path, limit: 64 * 1024) else { return header }
        for (index, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let text = String(decoding: line, as: UTF8.self)
            if index == 0 {
                header.isBundle = text.hasPrefix("# v2 git bundle") || text.hasPrefix("# v3 git bundle")
                continue
            }
            if line.isEmpty { break }
            if text.hasPrefix("@") { continue }  // v3 capabilities
            if text.hasPrefix("-") {
                header.prerequisites.append(String(text.dropFirst().prefix { $0 != " " }))
            } else if let space = text.firstIndex(of: " ") {
                header.refs.append((String(text[..<space]), String(text[text.index(after: space)...])))
            }
        }
        return header
    }

    /// The commit recorded for `branch`.
    public func tip(of branch: String) -> String? { refs.first { $0.name == branch }?.commit }
}

/// A directory of bundle backups (`.git/syncd/backups`, or the off-site `syncd.backupDir`).
/// Bundles are named by time, so name order is age order. A chain is a full bundle and the
/// incremental ones after it; retention removes whole chains only, so every kept bundle can be
/// restored from the kept files alone, without the remote.
public struct BundleStore: Sendable {
    public let directory: [UInt8]

    public init(directory: [UInt8]) { self.directory = directory }

    public struct Backup: Sendable {
        public var path: [UInt8]
        public var name: String
        public var size: Int
        public var modified: Double
    }

    /// The bundles, newest first (only complete ones: a `.partial` name is never listed).
    public func list() -> [Backup] {
        guard let entries = try? DirectoryListing.list(directory).filter({ $0.type == .regular }).map(\.name) else { return [] }
        var backups: [Backup] = []
        for name in entries where name.count > 7 && name.suffix(7).elementsEqual(".bundle".utf8) {
            let path = directory + [UInt8(ascii: "/")] + name
            guard let info = try? Syscall.lstat(path) else { continue }
            backups.append(Backup(
                path: path, name: String(decoding: name, as: UTF8.self), size: Int(info.st_size),
                modified: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9))
        }
        return backups.sorted { $0.name > $1.name }
    }

    /// The chains, oldest first, each oldest bundle first. Bundles before the first full one
    /// (left by an older syncd, or after a deletion) form a chain that lacks its base.
    public func chains() -> [[Backup]] {
        var chains: [[Backup]] = []
        for backup in list().reversed() {
            if BundleHeader.read(backup.path).isFull || chains.isEmpty {
                chains.append([backup])
            } else {
                chains[chains.count - 1].append(backup)
            }
        }
        return chains
    }

    /// Should the next bundle be full? When there is none yet, or the current chain started
    /// longer ago than half the retention age or holds half the kept count: chains stay short
    /// enough that dropping an old one keeps the rest restorable.
    public func nextIsFull(keep: Int, maxAge: Duration, now: Double) -> Bool {
        guard let current = chains().last, let first = current.first else { return true }
        if !BundleHeader.read(first.path).isFull { return true }
        let halfAge = Double(maxAge.components.seconds) / 2
        return current.count >= max(1, keep / 2) || now - first.modified > halfAge
    }

    /// Removes whole chains that are past the limits: a chain goes when its newest bundle is
    /// older than `maxAge`, or when the newer chains already hold `keep` bundles. The newest
    /// chain always stays.
    public func prune(keep: Int, maxAge: Duration, now: Double) {
        let all = chains()
        var newerCount = 0
        for (index, chain) in all.enumerated().reversed() {
            defer { newerCount += chain.count }
            if index == all.count - 1 { continue }
            let newest = chain.last?.modified ?? 0
            if newerCount >= keep || now - newest > Double(maxAge.components.seconds) {
                for backup in chain { try? Syscall.unlink(backup.path) }
            }
        }
    }

    /// Copies `source` here under the same name: a temporary `.partial` name, fsync, rename, fsync
    /// of the directory. A crash leaves at most a `.partial` file, which is never listed.
    public func store(copyOf source: [UInt8], name: String, beforeRename: () -> Void = {}) throws(SyscallError) {
        try Syscall.makeDirectory(directory)
        let final = directory + [UInt8(ascii: "/")] + Array(name.utf8)
        let temporary = final + Array(".partial".utf8)
        let input = try Syscall.openRegular(source, flags: O_RDONLY)
        defer { Syscall.close(input) }
        let output = try Syscall.openRegular(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        do {
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let count = try chunk.withUnsafeMutableBytes { raw in
                    Result { () throws(SyscallError) -> Int in try Syscall.read(input, into: raw) }
                }.get()
                if count == 0 { break }
                try Syscall.writeAll(output, Array(chunk[..<count]))
            }
            try Syscall.fsync(output, path: temporary)
            Syscall.close(output)
        } catch {
            Syscall.close(output)
            try? Syscall.unlink(temporary)
            throw error
        }
        beforeRename()
        do {
            try Syscall.rename(temporary, to: final)
            try Syscall.fsyncDirectory(directory)
        } catch {
            try? Syscall.unlink(temporary)
            throw error
        }
    }
}
