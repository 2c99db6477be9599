import SyncCore
/// Why a fetch or push did not go through, sorted into what waiting can fix (`offline`: the
/// network or the server is down, or it timed out) and what only a person can fix (`setup`: an
/// unknown ssh host key, a key or password refused, a key that needs a passphrase and no agent,
/// a remote repository that does not exist). Setup problems are never reported as "offline".
public struct RemoteProblem: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case offline, setup }

    public var kind: Kind
    /// git's or ssh's first meaningful line, on one line.
    public var message: String
    /// What to do about it, for setup problems.
    public var fix: String

    public init(kind: Kind, message: String, fix: String = "") {
        self.kind = kind
        self.message = message
        self.fix = fix
    }

    /// Sorts git's stderr of a failed network command.
    public init(gitOutput: String, exitCode: Int32, remote: String, operation: String) {
        let first = Self.oneLine(Self.meaningfulLines(gitOutput) ?? "git \(operation) exited \(exitCode)")
        self.message = first
        let text = gitOutput.lowercased()
        if text.contains("host key verification failed") || text.contains("remote host identification has changed") {
            kind = .setup
            fix = "ssh does not know the host key of \(remote)'s server: as the user syncd runs as, connect once with "
                + "`ssh -p PORT USER@HOST` and accept the key, or `ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts`"
        } else if text.contains("permission denied (publickey") || text.contains("permission denied, please try again")
            || text.contains("authentication failed") || text.contains("could not read username") || text.contains("could not read password")
            || text.contains("enter passphrase") || text.contains("incorrect passphrase")
        {
            kind = .setup
            fix = "the remote refused syncd's credentials: check the key or token of the user syncd runs as; a key with a passphrase "
                + "needs an agent (`ssh-add`, and give the service SSH_AUTH_SOCK); `GIT_SSH_COMMAND=\"ssh -o BatchMode=yes\" git \(operation) \(remote)` shows the same error"
        } else if text.contains("does not appear to be a git repository") || text.contains("repository not found")
            || text.contains("access denied or repository not exported")
            || (text.contains("repository") && text.contains("not found")) || text.contains("no such remote")
        {
            kind = .setup
            fix = "the URL of \(remote) does not name a repository: check `git remote get-url \(remote)` and fix it with `git remote set-url \(remote) URL`"
        } else {
            kind = .offline
            fix = ""
        }
    }

    public var description: String { fix.isEmpty ? message : "\(message) (setup problem: \(fix))" }

    /// The first line that says something (git prints "fatal: Could not read from remote
    /// repository." after ssh's own, more useful line).
    static func meaningfulLines(_ text: String) -> String? {
        let lines = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).map { String($0).trimmed }.filter { !$0.isEmpty }
        let generic = ["fatal: could not read from remote repository.", "please make sure you have the correct access rights",
                       "and the repository exists."]
        let useful = lines.filter { line in !generic.contains { line.lowercased().hasPrefix($0) } }
        // "fatal: unable to connect to HOST:" says little without the next line (the errno).
        return useful.isEmpty ? lines.first : useful.prefix(2).joined(separator: " ")
    }

    /// Any text from git or ssh made into one line (`OneLine.make`).
    public static func oneLine(_ text: String) -> String { OneLine.make(text) }
}
