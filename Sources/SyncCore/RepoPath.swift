/// A path relative to the workspace root, kept as the bytes the kernel and git use.
///
/// Components are separated by `/`, there is no leading or trailing slash, and the empty path is the
/// root itself. Names are bytes, not `String`s: a non-UTF-8 name survives unchanged.
public struct RepoPath: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ text: String) { self.bytes = Array(text.utf8) }

    public static let root = RepoPath(bytes: [])

    public var isRoot: Bool { bytes.isEmpty }

    /// The path of `name` inside this directory.
    public func appending(_ name: [UInt8]) -> RepoPath {
        if bytes.isEmpty { return RepoPath(bytes: name) }
        var joined = bytes
        joined.reserveCapacity(bytes.count + 1 + name.count)
        joined.append(UInt8(ascii: "/"))
        joined.append(contentsOf: name)
        return RepoPath(bytes: joined)
    }

    /// The last component (the whole path for a top-level name).
    public var lastComponent: [UInt8] {
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return bytes }
        return Array(bytes[(slash + 1)...])
    }

    /// The containing directory; the root for a top-level name and for the root itself.
    public var parent: RepoPath {
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return .root }
        return RepoPath(bytes: Array(bytes[..<slash]))
    }

    /// True when `self` is `ancestor` or lies below it.
    public func isWithin(_ ancestor: RepoPath) -> Bool {
        if ancestor.isRoot { return true }
        guard bytes.count >= ancestor.bytes.count, bytes.starts(with: ancestor.bytes) else { return false }
        return bytes.count == ancestor.bytes.count || bytes[ancestor.bytes.count] == UInt8(ascii: "/")
    }

    /// The text form when the bytes are valid UTF-8, otherwise nil.
    public var utf8String: String? {
        String(validating: bytes, as: UTF8.self)
    }

    /// A display form: the text, with invalid bytes replaced by U+FFFD. Lossy; for people only.
    public var description: String {
        String(decoding: bytes, as: UTF8.self)
    }

    public static func < (lhs: RepoPath, rhs: RepoPath) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}
