import Logging
import SyncCore
import SyncGit

/// Everything `syncd run` can be told, read from git config keys `syncd.*` in the workspace, with
/// command-line flags on top. Defaults are what an unattended service should do.
public struct Settings: Sendable, Equatable {
    /// Quiet time after the last change before a batch is committed.
    public var quietPeriod: Duration = .seconds(2)
    /// Longest time the first uncommitted change waits, however busy the writers are.
    public var maxLatency: Duration = .seconds(20)
    /// Pending paths that trigger a commit at once.
    public var maxBatchPaths = 20_000
    /// The circuit breaker opens when more than this many commits land within `breakerWindow`.
    public var breakerMaxCommits = 120
    public var breakerWindow: Duration = .seconds(600)
    /// An `index.lock` older than this that no process holds open is removed.
    public var staleLockAge: Duration = Settings.defaultStaleLockAge
    /// The one default for `staleLockAge` (tools outside the service use it too).
    public static let defaultStaleLockAge: Duration = .seconds(600)
    /// A git call running longer than this is logged and shown in status (`slow_git`).
    public var slowGitAfter: Duration = .seconds(30)
    /// At a stop, the longest syncd waits for git to commit what is pending (the commit in
    /// flight included); then git gets SIGTERM and syncd exits with an error naming what stayed
    /// uncommitted. The unit's TimeoutStopSec (180 s) covers it, the final push and the grace.
    public var stopTimeout: Duration = .seconds(60)
    /// syncd's own git writes fsync objects, index and refs (git's core.fsync=all).
    public var fsync = true
    /// Split index for big indexes (see README): `auto` turns it on from 4 MiB of index.
    public var splitIndex: SplitIndexMode = .auto
    /// Rescan interval for directories the inotify watch limit left unwatched.
    public var rescanInterval: Duration = .seconds(30)
    /// Journal size before it is rotated (three old journals are kept).
    public var journalMaxBytes = 8 * 1024 * 1024
    /// The least severe log level written.
    public var logLevel: Logger.Level = .info
    /// Where the lock files live (empty: syncd's state directory in the git directory).
    public var lockDir = ""
    /// Longest writer pause lease syncd takes.
    public var writerLeaseCap: Duration = .seconds(300)
    /// How long syncd waits for writers to release the sync lock before it names them in the log.
    public var writerLockTimeout: Duration = .seconds(60)
    /// The remote to sync with (empty: the branch's upstream remote, else `origin`; none: no sync).
    public var remote = ""
    /// Least time between two sync cycles.
    public var syncInterval: Duration = .seconds(300)
    /// How soon after a commit it is pushed (commits within it go in one push); 0: at once.
    public var pushDelay: Duration = .seconds(2)
    /// Limit for one fetch or push.
    public var networkTimeout: Duration = .seconds(120)
    /// Bundle backups kept (newest first), and the oldest kept.
    public var backupKeep = 20
    public var backupMaxAge: Duration = .seconds(30 * 86_400)
    /// Off-site copy of every bundle ("" = none): another disk or a network mount.
    public var backupDir = ""
    /// syncd's own unpushed commits reach the branch as one commit per window (zero: off).
    public var squash: Duration = .zero
    public var squashKeep: Duration = .seconds(30 * 86_400)
    /// How often a full `git status` looks for changes the watcher missed (zero: never).
    public var reconcileInterval: Duration = .seconds(3600)
    /// Diverged histories: merge (default), or rebase syncd's own unpushed commits.
    public var integrate: IntegratePolicy = .merge
    /// A merge conflict resolved for one side (`ours` = local, `theirs` = remote), or none.
    public var strategyOption: StrategyOption = .none

    /// Prometheus text file for node_exporter's textfile collector ("" = none).
    public var metricsFile = ""
    /// Shell command run with a JSON description on stdin when a failure persists ("" = none).
    public var alertCommand = ""
    /// How long a push or commit failure must last before the alert command runs.
    public var alertAfter: Duration = .seconds(600)

    public enum IntegratePolicy: String, Sendable, Equatable, CaseIterable { case merge, rebase }
    public enum StrategyOption: String, Sendable, Equatable, CaseIterable { case none, ours, theirs }

    public init() {}

    public enum SplitIndexMode: String, Sendable, Equatable, CaseIterable {
        case auto, `true`, `false`
    }

    /// The levels `syncd.logLevel` accepts (swift-log has more: trace, notice, critical).
    public static let logLevels: [Logger.Level] = [.debug, .info, .warning, .error]

    /// One setting: its git config key, the flag that overrides it, what it accepts and how to apply it.
    public struct Key: Sendable {
        public let name: String
        public let flag: String
        public let allowed: String
        public let help: String
        let apply: @Sendable (inout Settings, String) -> Bool
        let current: @Sendable (Settings) -> String
    }

    /// A key's default, as its flag's help shows it.
    public static func defaultText(_ key: Key) -> String {
        let value = key.current(Settings())
        return value.isEmpty ? "none" : value
    }

    /// Every `syncd.*` key, in the order the README lists them.
    public static let keys: [Key] = [
        Key(
            name: "syncd.quietPeriod", flag: "--quiet-period", allowed: "a duration from 0s to 1h, like 2s or 500ms",
            help: "quiet time after the last change before committing",
            apply: { s, v in set(&s.quietPeriod, parseDuration(v), within: .zero ... .seconds(3600)) },
            current: { formatDuration($0.quietPeriod) }),
        Key(
            name: "syncd.maxLatency", flag: "--max-latency", allowed: "a duration from 100ms to 24h, like 20s or 5m",
            help: "longest wait for the first uncommitted change, however busy the writers",
            apply: { s, v in set(&s.maxLatency, parseDuration(v), within: .milliseconds(100) ... .seconds(86_400)) },
            current: { formatDuration($0.maxLatency) }),
        Key(
            name: "syncd.maxBatchPaths", flag: "--max-batch-paths", allowed: "a whole number from 1 to 1000000",
            help: "pending paths that trigger a commit at once",
            apply: { s, v in set(&s.maxBatchPaths, Int(v), within: 1 ... 1_000_000) },
            current: { String($0.maxBatchPaths) }),
        Key(
            name: "syncd.breakerMaxCommits", flag: "--breaker-max-commits", allowed: "a whole number from 1 to 100000",
            help: "commits within breakerWindow that open the circuit breaker",
            apply: { s, v in set(&s.breakerMaxCommits, Int(v), within: 1 ... 100_000) },
            current: { String($0.breakerMaxCommits) }),
        Key(
            name: "syncd.breakerWindow", flag: "--breaker-window", allowed: "a duration from 1s to 24h, like 10m",
            help: "the circuit breaker's window, and how long it stays open",
            apply: { s, v in set(&s.breakerWindow, parseDuration(v), within: .seconds(1) ... .seconds(86_400)) },
            current: { formatDuration($0.breakerWindow) }),
        Key(
            name: "syncd.staleLockAge", flag: "--stale-lock-age", allowed: "a duration from 1s to 7d, like 10m",
            help: "age after which an index.lock nobody holds open is removed",
            apply: { s, v in set(&s.staleLockAge, parseDuration(v), within: .seconds(1) ... .seconds(604_800)) },
            current: { formatDuration($0.staleLockAge) }),
        Key(
            name: "syncd.slowGitAfter", flag: "--slow-git-after", allowed: "a duration from 1s to 1h, like 30s",
            help: "a git call running longer is logged and shown in status",
            apply: { s, v in set(&s.slowGitAfter, parseDuration(v), within: .seconds(1) ... .seconds(3600)) },
            current: { formatDuration($0.slowGitAfter) }),
        Key(
            name: "syncd.stopTimeout", flag: "--stop-timeout", allowed: "a duration from 1s to 2m, like 60s",
            help: "at a stop, the longest wait for git to commit what is pending",
            apply: { s, v in set(&s.stopTimeout, parseDuration(v), within: .seconds(1) ... .seconds(120)) },
            current: { formatDuration($0.stopTimeout) }),
        Key(
            name: "syncd.fsync", flag: "--fsync", allowed: "a boolean: true/false, yes/no, on/off, 1/0",
            help: "fsync objects, index and refs on every commit (power-loss safety)",
            apply: { s, v in set(&s.fsync, parseBool(v)) },
            current: { $0.fsync ? "true" : "false" }),
        Key(
            name: "syncd.splitIndex", flag: "--split-index", allowed: "auto, true or false",
            help: "write a split index (auto: when the index exceeds 4 MiB)",
            apply: { s, v in set(&s.splitIndex, SplitIndexMode(rawValue: v.lowercased())) },
            current: { $0.splitIndex.rawValue }),
        Key(
            name: "syncd.rescanInterval", flag: "--rescan-interval", allowed: "a duration from 1s to 24h, like 30s",
            help: "rescan interval for directories the inotify watch limit left unwatched",
            apply: { s, v in set(&s.rescanInterval, parseDuration(v), within: .seconds(1) ... .seconds(86_400)) },
            current: { formatDuration($0.rescanInterval) }),
        Key(
            name: "syncd.journalMaxSize", flag: "--journal-max-size", allowed: "a size from 64KiB to 1GiB, like 8MiB",
            help: "journal size before rotation",
            apply: { s, v in set(&s.journalMaxBytes, parseSize(v), within: 64 * 1024 ... 1 << 30) },
            current: { String($0.journalMaxBytes) }),
        Key(
            name: "syncd.logLevel", flag: "--log-level", allowed: "debug, info, warning or error",
            help: "least severe log level written",
            apply: { s, v in set(&s.logLevel, logLevels.first { $0.rawValue == v.lowercased() }) },
            current: { $0.logLevel.rawValue }),
        Key(
            name: "syncd.lockDir", flag: "--lock-dir", allowed: "a directory path (relative to the top of the working tree, or absolute)",
            help: "directory of the lock files writers and syncctl use",
            apply: { s, v in
                guard !v.isEmpty, !v.contains("\0") else { return false }
                s.lockDir = v
                return true
            },
            current: { $0.lockDir }),
        Key(
            name: "syncd.writerLeaseCap", flag: "--writer-lease-cap", allowed: "a duration from 1s to 1h, like 5m",
            help: "longest writer pause lease syncd takes",
            apply: { s, v in set(&s.writerLeaseCap, parseDuration(v), within: .seconds(1) ... .seconds(3600)) },
            current: { formatDuration($0.writerLeaseCap) }),
        Key(
            name: "syncd.writerLockTimeout", flag: "--writer-lock-timeout", allowed: "a duration from 1s to 1h, like 60s",
            help: "wait for writers holding the sync lock before naming them in the log",
            apply: { s, v in set(&s.writerLockTimeout, parseDuration(v), within: .seconds(1) ... .seconds(3600)) },
            current: { formatDuration($0.writerLockTimeout) }),
        Key(
            name: "syncd.remote", flag: "--remote", allowed: "the name of a configured remote (`git remote`), or `none` to never sync",
            help: "remote to sync with (default: the branch's upstream remote, else origin)",
            apply: { s, v in
                guard !v.isEmpty, !v.contains(" "), !v.hasPrefix("-") else { return false }
                s.remote = v
                return true
            },
            current: { $0.remote }),
        Key(
            name: "syncd.syncInterval", flag: "--sync-interval", allowed: "a duration from 1s to 24h, like 5m",
            help: "least time between two sync cycles",
            apply: { s, v in set(&s.syncInterval, parseDuration(v), within: .seconds(1) ... .seconds(86_400)) },
            current: { formatDuration($0.syncInterval) }),
        Key(
            name: "syncd.pushDelay", flag: "--push-delay", allowed: "a duration from 0s to 24h, like 2s",
            help: "how soon after a commit it is pushed (commits made meanwhile go in the same push)",
            apply: { s, v in set(&s.pushDelay, parseDuration(v), within: .zero ... .seconds(86_400)) },
            current: { formatDuration($0.pushDelay) }),
        Key(
            name: "syncd.networkTimeout", flag: "--network-timeout", allowed: "a duration from 1s to 1h, like 2m",
            help: "limit for one fetch or push",
            apply: { s, v in set(&s.networkTimeout, parseDuration(v), within: .seconds(1) ... .seconds(3600)) },
            current: { formatDuration($0.networkTimeout) }),
        Key(
            name: "syncd.backupKeep", flag: "--backup-keep", allowed: "a whole number from 1 to 10000",
            help: "bundle backups kept",
            apply: { s, v in set(&s.backupKeep, Int(v), within: 1 ... 10_000) },
            current: { String($0.backupKeep) }),
        Key(
            name: "syncd.backupMaxAge", flag: "--backup-max-age", allowed: "a duration from 1h to 3650d, like 30d",
            help: "oldest bundle backup kept",
            apply: { s, v in set(&s.backupMaxAge, parseDuration(v), within: .seconds(3600) ... .seconds(3650 * 86_400)) },
            current: { formatDuration($0.backupMaxAge) }),
        Key(
            name: "syncd.backupDir", flag: "--backup-dir", allowed: "an absolute directory path outside the working tree (another disk or a network mount), or none",
            help: "off-site copy of every bundle backup",
            apply: { s, v in
                guard v == "none" || v.hasPrefix("/") else { return false }
                s.backupDir = v == "none" ? "" : v
                return true
            },
            current: { $0.backupDir }),
        Key(
            name: "syncd.reconcileInterval", flag: "--reconcile-interval", allowed: "0 (off) or a duration from 1s to 7d, like 1h",
            help: "how often git status checks for changes the watcher missed",
            apply: { s, v in
                if v == "0" {
                    s.reconcileInterval = .zero
                    return true
                }
                return set(&s.reconcileInterval, parseDuration(v), within: .seconds(1) ... .seconds(604_800))
            },
            current: { formatDuration($0.reconcileInterval) }),
        Key(
            name: "syncd.squash", flag: "--squash", allowed: "0 (off) or a duration from 1s to 30d, like 1h",
            help: "syncd's own unpushed commits reach the branch as one commit per window",
            apply: { s, v in
                if v == "0" || v.lowercased() == "off" {
                    s.squash = .zero
                    return true
                }
                return set(&s.squash, parseDuration(v), within: .seconds(1) ... .seconds(30 * 86_400))
            },
            current: { formatDuration($0.squash) }),
        Key(
            name: "syncd.squashKeep", flag: "--squash-keep", allowed: "a duration from 1d to 3650d, like 30d",
            help: "how long the unsquashed originals stay reachable locally",
            apply: { s, v in set(&s.squashKeep, parseDuration(v), within: .seconds(86_400) ... .seconds(3650 * 86_400)) },
            current: { formatDuration($0.squashKeep) }),
        Key(
            name: "syncd.integrate", flag: "--integrate", allowed: "merge or rebase",
            help: "diverged histories: merge, or rebase syncd's own unpushed commits",
            apply: { s, v in set(&s.integrate, IntegratePolicy(rawValue: v.lowercased())) },
            current: { $0.integrate.rawValue }),
        Key(
            name: "syncd.strategyOption", flag: "--strategy-option", allowed: "none, ours or theirs",
            help: "settle merge conflicts for the local (ours) or the remote (theirs) side",
            apply: { s, v in set(&s.strategyOption, StrategyOption(rawValue: v.lowercased())) },
            current: { $0.strategyOption.rawValue }),
        Key(
            name: "syncd.metricsFile", flag: "--metrics-file", allowed: "an absolute path ending in .prom",
            help: "Prometheus text file (node_exporter textfile collector)",
            apply: { s, v in
                guard v.hasPrefix("/"), v.hasSuffix(".prom") else { return false }
                s.metricsFile = v
                return true
            },
            current: { $0.metricsFile }),
        Key(
            name: "syncd.alertCommand", flag: "--alert-command", allowed: "a shell command",
            help: "run with a JSON description on stdin when a failure persists",
            apply: { s, v in
                guard !v.isEmpty else { return false }
                s.alertCommand = v
                return true
            },
            current: { $0.alertCommand }),
        Key(
            name: "syncd.alertAfter", flag: "--alert-after", allowed: "a duration from 1s to 7d, like 10m",
            help: "how long a push or commit failure lasts before the alert",
            apply: { s, v in set(&s.alertAfter, parseDuration(v), within: .seconds(1) ... .seconds(604_800)) },
            current: { formatDuration($0.alertAfter) }),
    ]

    /// Where a value came from, for error messages.
    public enum Source: Sendable, Equatable {
        case gitConfig
        case flag
    }

    /// Applies `value` to the setting `name` (case-insensitive, with or without `syncd.`).
    public mutating func apply(_ name: String, _ value: String, from source: Source) throws {
        guard let key = Self.key(named: name) else {
            throw SyncError(
                .invalidSetting,
                "unknown setting \(name); known settings: \(Self.keys.map(\.name).joined(separator: ", "))"
            )
        }
        guard key.apply(&self, value.trimmed) else {
            let origin = source == .flag ? "\(key.flag) \(value)" : "git config \(key.name) = \"\(value)\""
            throw SyncError(
                .invalidSetting,
                "invalid value for \(key.name) (\(origin)): expected \(key.allowed)"
                    + (source == .gitConfig ? "; fix it with `git config \(key.name) VALUE` or remove it with `git config --unset \(key.name)`" : "")
            )
        }
    }

    public static func key(named name: String) -> Key? {
        let lowered = name.lowercased()
        return keys.first { $0.name.lowercased() == lowered || $0.name.lowercased() == "syncd." + lowered }
    }

    /// Checks relations between settings.
    public func validate() throws {
        if maxLatency < quietPeriod {
            throw SyncError(
                .invalidSetting,
                "syncd.maxLatency (\(Self.formatDuration(maxLatency))) is shorter than syncd.quietPeriod "
                    + "(\(Self.formatDuration(quietPeriod))): the maximum latency must be at least the quiet period"
            )
        }
    }

    /// Reads `syncd.*` from the workspace's git config (all scopes git reads), then applies
    /// `overrides` (flag values by setting name). Unknown `syncd.*` keys are reported in `warnings`.
    public static func load(
        git: GitRunner,
        overrides: [(name: String, value: String)] = []
    ) async throws -> (settings: Settings, warnings: [String]) {
        let result = try await git.run(
            ["config", "-z", "--get-regexp", "^syncd\\."],
            readOnly: true,
            acceptedExitCodes: [0, 1]
        )
        var settings = Settings()
        var warnings: [String] = []
        for record in result.nulSeparatedFields {
            let newline = record.firstIndex(of: UInt8(ascii: "\n")) ?? record.endIndex
            let name = String(decoding: record[..<newline], as: UTF8.self)
            let value = newline < record.endIndex ? String(decoding: record[(newline + 1)...], as: UTF8.self) : "true"
            guard key(named: name) != nil else {
                warnings.append(
                    "ignoring unknown setting \(name) in git config (a typo?); known settings: "
                        + keys.map(\.name).joined(separator: ", ")
                )
                continue
            }
            try settings.apply(name, value, from: .gitConfig)
        }
        for (name, value) in overrides {
            try settings.apply(name, value, from: .flag)
        }
        try settings.validate()
        return (settings, warnings)
    }

    // MARK: value parsing

    private static func set<T: Comparable>(_ target: inout T, _ value: T?, within range: ClosedRange<T>) -> Bool {
        guard let value, range.contains(value) else { return false }
        target = value
        return true
    }

    private static func set<T>(_ target: inout T, _ value: T?) -> Bool {
        guard let value else { return false }
        target = value
        return true
    }

    /// `2s`, `500ms`, `1m30s`, `1h`, `1d`; a bare number is seconds.
    public static func parseDuration(_ text: String) -> Duration? {
        let text = text.lowercased()
        if text.isEmpty { return nil }
        if let seconds = Int(text) { return seconds >= 0 ? .seconds(seconds) : nil }
        var total: Duration = .zero
        var number = ""
        var unit = ""
        func flush() -> Bool {
            guard let value = Int(number), value >= 0 else { return false }
            let scale: Duration
            switch unit {
            case "ms": scale = .milliseconds(1)
            case "s": scale = .seconds(1)
            case "m", "min": scale = .seconds(60)
            case "h": scale = .seconds(3600)
            case "d": scale = .seconds(86_400)
            default: return false
            }
            total += scale * value
            number = ""
            unit = ""
            return true
        }
        for character in text {
            if character.isNumber && character.isASCII {
                if !unit.isEmpty { guard flush() else { return nil } }
                number.append(character)
            } else if character.isLetter {
                guard !number.isEmpty else { return nil }
                unit.append(character)
            } else {
                return nil
            }
        }
        guard !number.isEmpty, !unit.isEmpty, flush() else { return nil }
        return total
    }

    /// `8MiB`, `512k`, `1G`, `4096` (bytes); binary units.
    public static func parseSize(_ text: String) -> Int? {
        let lowered = text.lowercased()
        let digits = lowered.prefix { $0.isNumber && $0.isASCII }
        guard let value = Int(digits) else { return nil }
        let unit = lowered.dropFirst(digits.count)
        let scale: Int
        switch unit {
        case "", "b": scale = 1
        case "k", "kb", "kib": scale = 1024
        case "m", "mb", "mib": scale = 1024 * 1024
        case "g", "gb", "gib": scale = 1024 * 1024 * 1024
        default: return nil
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: scale)
        return overflow ? nil : product
    }

    /// git's boolean spellings.
    public static func parseBool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "true", "yes", "on", "1": true
        case "false", "no", "off", "0": false
        default: nil
        }
    }

    /// `2s`, `500ms`, `1m30s`.
    public static func formatDuration(_ duration: Duration) -> String {
        let milliseconds = duration.wholeMilliseconds
        if milliseconds % 1000 != 0 { return "\(milliseconds)ms" }
        var seconds = milliseconds / 1000
        if seconds == 0 { return "0s" }
        var text = ""
        for (unit, size) in [("h", Int64(3600)), ("m", 60), ("s", 1)] where seconds >= size {
            text += "\(seconds / size)\(unit)"
            seconds %= size
        }
        return text
    }
}
