import Synchronization
import SyncSystem

/// Watches the git calls of one service. A call that runs longer than `slowAfter` is reported
/// once (which call, the working-tree file git has open if any, how long), and again when it
/// ends; a deadline (set when syncd stops) ends every call still running then: SIGTERM to the
/// call's process group (git and whatever it started, such as a clean filter), never SIGKILL.
public final class GitMonitor: Sendable {
    public struct Call: Sendable, Equatable {
        public let id: Int
        /// `git …` as a person would type it.
        public let command: String
        public let started: ContinuousClock.Instant
        /// When it started, RFC 3339.
        public let startedAt: String
        public internal(set) var pid: Int32?
        /// The working-tree file git had open when the call was found slow (the file a clean
        /// filter is given, for example); nil when none.
        public internal(set) var path: String?
        /// Reported as slow.
        public internal(set) var slow = false

        /// "`git …` (reading PATH)".
        public var description: String { "`\(command)`" + (path.map { " (working on \($0))" } ?? "") }
    }

    public enum Event: Sendable {
        /// A call passed `slowAfter` and still runs.
        case slow(Call, running: Duration)
        /// A slow call moved on to another working-tree file (status follows; not logged).
        case located(Call)
        /// A call reported as slow ended by itself.
        case finished(Call, after: Duration)
        /// A call was ended at the deadline.
        case stopped(Call, after: Duration, reason: String)

        public var call: Call {
            switch self {
            case .slow(let call, _), .located(let call), .finished(let call, _), .stopped(let call, _, _): return call
            }
        }

        /// True for a line worth a warning (slow or stopped), false for the all-clear.
        public var isWarning: Bool {
            switch self {
            case .slow, .stopped: return true
            case .located, .finished: return false
            }
        }

        /// The log line; nil for an event only status needs.
        public var logLine: String? {
            if case .located = self { return nil }
            return message
        }

        public var message: String {
            switch self {
            case .located(let call):
                return "the slow git call \(call.description) goes on"
            case .slow(let call, let running):
                return "git has been running for \(Self.seconds(running)) (since \(call.startedAt)): \(call.description); "
                    + "syncd waits for it (a clean filter or hook that never returns? a slow disk?). "
                    + "`syncctl status` shows it while it lasts"
            case .finished(let call, let after):
                return "the slow git call \(call.description) finished after \(Self.seconds(after))"
            case .stopped(let call, let after, let reason):
                return "stopped \(call.description) after \(Self.seconds(after)) (SIGTERM to its process group): \(reason)"
            }
        }

        static func seconds(_ duration: Duration) -> String {
            "\(duration.components.seconds) s"
        }
    }

    struct State {
        var nextID = 0
        var calls: [Int: Call] = [:]
        var deadline: (at: ContinuousClock.Instant, reason: String)?
        var stopped: [Call] = []
    }

    /// A call running longer than this is reported.
    public let slowAfter: Duration
    private let state = Mutex(State())
    private let handler: @Sendable (Event) -> Void
    private let clock = ContinuousClock()

    public init(slowAfter: Duration, handler: @escaping @Sendable (Event) -> Void) {
        self.slowAfter = slowAfter
        self.handler = handler
    }

    /// The calls reported as slow that still run, oldest first.
    public var slowCalls: [Call] {
        state.withLock { $0.calls.values.filter(\.slow).sorted { $0.started < $1.started } }
    }

    /// Every call still running at `deadline` (and every call started after it) is ended then,
    /// with `reason` in its error. nil lifts the deadline.
    public func stopCalls(at deadline: ContinuousClock.Instant?, reason: String = "") {
        state.withLock { $0.deadline = deadline.map { ($0, reason) } }
    }

    /// The deadline is set and has passed: a call started now would be ended at once.
    public var deadlinePassed: Bool {
        let now = clock.now
        return state.withLock { $0.deadline.map { now >= $0.at } ?? false }
    }

    /// The calls ended at a deadline so far, oldest first.
    public var stoppedCalls: [Call] { state.withLock { $0.stopped } }

    // MARK: - used by GitRunner

    func begin(_ command: String) -> Int {
        let now = clock.now
        let startedAt = WallClock.rfc3339()
        return state.withLock { state in
            state.nextID += 1
            state.calls[state.nextID] = Call(id: state.nextID, command: command, started: now, startedAt: startedAt)
            return state.nextID
        }
    }

    func started(_ id: Int, pid: Int32) {
        state.withLock { $0.calls[id]?.pid = pid }
    }

    /// The call `id` while it runs.
    func call(_ id: Int) -> Call? { state.withLock { $0.calls[id] } }

    /// The deadline's reason, while one is set.
    var deadlineReason: String { state.withLock { $0.deadline?.reason ?? "" } }

    /// The call ended: reports the end of a slow call, or the stop at the deadline.
    func end(_ id: Int, stopped: Bool) {
        let now = clock.now
        let (call, reason): (Call?, String) = state.withLock { state in
            let call = state.calls.removeValue(forKey: id)
            if stopped, let call { state.stopped.append(call) }
            return (call, state.deadline?.reason ?? "")
        }
        guard let call else { return }
        if stopped {
            handler(.stopped(call, after: now - call.started, reason: reason))
        } else if call.slow {
            handler(.finished(call, after: now - call.started))
        }
    }

    /// Runs beside the call: reports it once it is slow (`locate` names the file git has open)
    /// and returns when the deadline passes. Throws CancellationError when the call ends first.
    func watch(_ id: Int, locate: @Sendable (Int32) -> String?) async throws {
        while true {
            let now = clock.now
            guard let found = state.withLock({ state in state.calls[id].map { ($0, state.deadline?.at) } }) else { return }
            var call = found.0
            let deadline = found.1
            if let deadline, now >= deadline {
                if call.path == nil, let pid = call.pid, let path = locate(pid) {
                    state.withLock { $0.calls[id]?.path = path }
                }
                return
            }
            if !call.slow, now - call.started >= slowAfter {
                call.slow = true
                call.path = call.pid.flatMap(locate)
                let reported = call
                state.withLock { $0.calls[id] = reported }
                handler(.slow(reported, running: now - call.started))
            } else if call.slow, let path = call.pid.flatMap(locate), path != call.path {
                // git opened the file after the report, or went on to the next one.
                call.path = path
                let located = call
                state.withLock { $0.calls[id]?.path = path }
                handler(.located(located))
            }
            // A deadline may be set while the call runs: look again at least every second.
            var wake = now.advanced(by: .seconds(1))
            if !call.slow { wake = min(wake, call.started.advanced(by: slowAfter)) }
            if let deadline { wake = min(wake, deadline) }
            try await clock.sleep(until: wake)
        }
    }
}
