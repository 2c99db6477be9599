import Glibc
import SyncCore

/// An inotify instance: close-on-exec and non-blocking (the reader thread polls it).
///
/// The descriptor is closed when the last reference goes away; stop the reader thread first.
public final class InotifyDescriptor: Sendable {
    public let fd: Int32

    /// The events syncd asks for on every watched directory (man inotify(7)): content, metadata
    /// (git tracks the executable bit), creation, deletion, both halves of a rename, and the
    /// directory's own deletion or move. Never follows a symlink, only watches directories, and
    /// drops events for names already unlinked.
    public static let directoryMask: UInt32 =
        UInt32(IN_MODIFY) | UInt32(IN_ATTRIB) | UInt32(IN_CLOSE_WRITE) | UInt32(IN_CREATE) | UInt32(IN_DELETE)
        | UInt32(IN_MOVED_FROM) | UInt32(IN_MOVED_TO) | UInt32(IN_DELETE_SELF) | UInt32(IN_MOVE_SELF)
        | UInt32(IN_ONLYDIR) | UInt32(IN_DONT_FOLLOW) | UInt32(IN_EXCL_UNLINK)

    public init() throws(SyscallError) {
        fd = try Syscall.retrying("inotify_init1") { inotify_init1(Int32(IN_CLOEXEC) | Int32(IN_NONBLOCK)) }
    }

    deinit {
        Syscall.close(fd)
    }

    /// Adds (or updates) the watch on the directory at the absolute path `path`. Adding an inode that
    /// is already watched returns its existing descriptor (the caller reconciles its table).
    public func addWatch(_ path: [UInt8], mask: UInt32 = InotifyDescriptor.directoryMask) throws(SyscallError) -> Int32 {
        try Syscall.withCString(path) { (cPath) throws(SyscallError) -> Int32 in
            try Syscall.retrying("inotify_add_watch", path: Syscall.display(path)) {
                inotify_add_watch(fd, cPath, mask)
            }
        }
    }

    /// Removes a watch. EINVAL means the kernel already dropped it (the directory is gone): not an error.
    public func removeWatch(_ wd: Int32) {
        _ = inotify_rm_watch(fd, wd)
    }
}
