#if canImport(Glibc)
import Glibc
#endif

/// An errno value kept with the failing call, so a message can say which call failed and why.
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    public var name: String {
        switch rawValue {
        case EPERM: return "EPERM"
        case ENOENT: return "ENOENT"
        case EINTR: return "EINTR"
        case EIO: return "EIO"
        case EBADF: return "EBADF"
        case EAGAIN: return "EAGAIN"
        case ENOMEM: return "ENOMEM"
        case EACCES: return "EACCES"
        case EEXIST: return "EEXIST"
        case ENOTDIR: return "ENOTDIR"
        case EISDIR: return "EISDIR"
        case EINVAL: return "EINVAL"
        case EMFILE: return "EMFILE"
        case ENOSPC: return "ENOSPC"
        case ELOOP: return "ELOOP"
        case ENAMETOOLONG: return "ENAMETOOLONG"
        case EWOULDBLOCK: return "EWOULDBLOCK"
        default: return "errno \(rawValue)"
        }
    }

    public var description: String {
        "\(name): \(String(cString: strerror(rawValue)))"
    }

    public static let noSpace = Errno(ENOSPC)
    public static let notFound = Errno(ENOENT)
    public static let tryAgain = Errno(EAGAIN)
    public static let invalid = Errno(EINVAL)
    public static let notDirectory = Errno(ENOTDIR)
    public static let loop = Errno(ELOOP)
    public static let noMemory = Errno(ENOMEM)
}
