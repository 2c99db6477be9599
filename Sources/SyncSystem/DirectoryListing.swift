import Glibc

/// One entry of a directory, as readdir(3) reports it (resolved with fstatat when d_type is unknown).
public struct DirectoryEntry: Sendable, Hashable {
    public enum EntryType: Sendable, Hashable {
        case directory, regular, symlink, other
    }

    public var name: [UInt8]
    public var type: EntryType
}

public enum DirectoryListing {
    /// Lists the directory at the absolute path `path` without following a symlink at any point of
    /// the last component (O_NOFOLLOW | O_DIRECTORY), skipping `.` and `..`.
    public static func list(_ path: [UInt8]) throws(SyscallError) -> [DirectoryEntry] {
        let fd = try Syscall.open(path, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        guard let dir = fdopendir(fd) else {
            let error = SyscallError(call: "fdopendir", path: Syscall.display(path), errno: .init(Glibc.errno))
            Syscall.close(fd)
            throw error
        }
        defer { closedir(dir) }
        var entries: [DirectoryEntry] = []
        while true {
            Glibc.errno = 0
            guard let entry = readdir(dir) else {
                let code = Glibc.errno
                if code == 0 { break }
                if code == EINTR { continue }
                throw SyscallError(call: "readdir", path: Syscall.display(path), errno: .init(code))
            }
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { raw -> [UInt8] in
                let end = raw.firstIndex(of: 0) ?? raw.count
                return Array(raw[..<end])
            }
            if name == [0x2E] || name == [0x2E, 0x2E] { continue }
            let type: DirectoryEntry.EntryType
            switch Int(entry.pointee.d_type) {
            case Int(DT_DIR): type = .directory
            case Int(DT_REG): type = .regular
            case Int(DT_LNK): type = .symlink
            case Int(DT_UNKNOWN): type = resolve(dirfd(dir), name)
            default: type = .other
            }
            entries.append(DirectoryEntry(name: name, type: type))
        }
        return entries
    }

    /// Some filesystems report DT_UNKNOWN; ask fstatat without following links.
    private static func resolve(_ dirFD: Int32, _ name: [UInt8]) -> DirectoryEntry.EntryType {
        var info = stat()
        var terminated = name
        terminated.append(0)
        let result = terminated.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                fstatat(dirFD, $0, &info, AT_SYMLINK_NOFOLLOW)
            }
        }
        guard result == 0 else { return .other }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        case S_IFREG: return .regular
        case S_IFLNK: return .symlink
        default: return .other
        }
    }
}
