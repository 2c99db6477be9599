/// The one error type of syncd: a stable code, a message that names the path or setting and says
/// what to do, and the underlying cause.
///
/// `description` is the one line a person sees; `detailedDescription` adds the cause chain for logs.
public struct SyncError: Error, CustomStringConvertible, Sendable {
    /// A stable, machine-readable error class. Extensible: add a static member, never an enum case.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A system call failed; the message names the call and the path.
        public static let syscall = Code("syscall")
        /// The path given is not inside a git working tree.
        public static let notARepository = Code("not-a-repository")
        /// A git child process failed or could not be started.
        public static let git = Code("git")
        /// The workspace root (or its .git) was deleted or moved away while watching.
        public static let rootGone = Code("root-gone")
        /// A command-line flag or setting has a value that is not allowed.
        /// The disk or quota is full.
        public static let diskFull = Code("disk-full")
        /// A setting (git config `syncd.*` or its flag) has a value that is not allowed.
        public static let invalidSetting = Code("invalid-setting")
        /// Another syncd already runs for this workspace.
        public static let alreadyRunning = Code("already-running")
        /// The workspace belongs to another user than the one syncd runs as (root on a user's
        /// workspace, or git's "dubious ownership"): a restart cannot fix it.
        public static let wrongOwner = Code("wrong-owner")
        /// Output could not be parsed (for example from git).
        public static let malformed = Code("malformed")
    }

    public var code: Code
    public var message: String
    public var cause: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause {
            return "\(message) (\(cause))"
        }
        return message
    }

    /// A multi-line form for logs: the message, then every cause on its own line.
    public var detailedDescription: String {
        var lines = ["[\(code)] \(message)"]
        var next: (any Error)? = cause
        while let current = next {
            lines.append("  caused by: \(current)")
            next = (current as? SyncError)?.cause
        }
        return lines.joined(separator: "\n")
    }
}

/// Wraps an error that is not `Sendable` (or not ours) by its description, so it can be a cause.
public struct UnderlyingError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ error: any Error) { description = String(describing: error) }
}
