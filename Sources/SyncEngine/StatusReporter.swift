import Glibc
import Logging
import SyncCore
import SyncGit
import SyncSystem
import SyncWatcher

/// The status reporter: what syncd is doing now, told to `state.json`, the metrics file,
/// systemd (ready, watchdog, the status line) and the alert hook.
///
/// Owned by `SyncService` and used only from it. Every stage writes its part of `status`; the
/// reporter decides when that reaches the disk (at once on a change of phase, at most once per
/// `refresh` for counts) and which incidents alert.
final class StatusReporter {
    typealias Instant = ContinuousClock.Instant

    var status = StatusSnapshot()
    let notifier = SystemdNotifier.fromEnvironment()
    /// state.json lags the pending count by at most `refresh` (see `changed(now:)`).
    static let refresh: Duration = .seconds(1)
    /// The pending flush (`changed(now:)` says when; the service runs it).
    var flush: Task<Void, Never>?
    private var dirty = false
    private var lastWrite: Instant?
    private var readySent = false
    private var lastWatchdogPing: Instant?
    private var lastStatusLine = ""
    private var incidents = Incidents()
    private let path: [UInt8]
    private let workspace: String
    private var metricsFile: String
    private var alertCommand: String
    private(set) var alertAfter: Duration
    private let log: Logger
    private let record: JournalRecorder

    init(stateDirectory: [UInt8], workspace: String, settings: Settings, log: Logger, record: JournalRecorder) {
        path = stateDirectory + Array("/state.json".utf8)
        self.workspace = workspace
        metricsFile = settings.metricsFile
        alertCommand = settings.alertCommand
        alertAfter = settings.alertAfter
        self.log = log
        self.record = record
    }

    /// Settings reloaded (SIGHUP): the metrics file and the alert hook follow.
    func adopt(_ settings: Settings) {
        metricsFile = settings.metricsFile
        alertCommand = settings.alertCommand
        alertAfter = settings.alertAfter
    }

    var fileExists: Bool { Syscall.exists(path) }

    func write() {
        dirty = false
        lastWrite = ContinuousClock.now
        do {
            try status.write(to: path)
        } catch {
            if error.errno == Errno(EISDIR) || error.errno == Errno(ENOTEMPTY) {
                log.error("cannot write the status file: \(ControlFile.notAFile(path, error)); until then syncctl cannot see what syncd does")
            } else {
                log.warning("cannot write \(Syscall.display(path)): \(error)")
            }
        }
        if !metricsFile.isEmpty {
            do {
                try AtomicFile.write(Array(metricsFile.utf8), Array(Metrics.text(status).utf8))
            } catch {
                log.warning("cannot write the metrics file \(metricsFile): \(error)")
            }
        }
    }

    /// A count changed without a change of phase: state.json follows within `refresh`, at most
    /// once per `refresh` (a burst of events is not a burst of fsyncs). Returns when to flush,
    /// when a flush must be scheduled (the service runs it in its own task, so its loop's one
    /// timer is untouched).
    func changed(now: Instant) -> Instant? {
        dirty = true
        guard let last = lastWrite, now - last < Self.refresh else {
            write()
            return nil
        }
        guard flush == nil else { return nil }
        return last.advanced(by: Self.refresh)
    }

    /// The scheduled flush is due.
    func flushed() {
        flush = nil
        if dirty { write() }
    }

    func setPhase(_ phase: StatusSnapshot.Phase, reason: String = "", code: String = "") {
        guard phase != status.phase || reason != status.reason else { return }
        status.phase = phase
        status.reason = reason
        status.reasonCode = code
        write()
        sendStatus()
    }

    /// A git call became slow, or a slow one ended: state.json says so at once (the loop may be
    /// waiting on that very call).
    func slowGit(_ slow: GitMonitor.Call?) {
        status.slowGit = slow?.command ?? ""
        status.slowGitSince = slow?.startedAt ?? ""
        status.slowGitPath = slow?.path ?? ""
        write()
        sendStatus()
    }

    // MARK: - systemd

    /// After the initial reconcile (the crawl is done and the startup batch was tried), once.
    func sendReady() {
        guard !readySent else { return }
        readySent = true
        notifier.send("READY=1\nSTATUS=\(statusLine())")
    }

    func pingWatchdog(now: Instant) {
        guard let interval = notifier.watchdogInterval else { return }
        if lastWatchdogPing.map({ now - $0 >= interval / 4 }) ?? true {
            lastWatchdogPing = now
            notifier.send("WATCHDOG=1")
        }
    }

    /// Stopping, either way: no more flushes, and systemd is told.
    func stopping() {
        flush?.cancel()
        notifier.send("STOPPING=1\nSTATUS=stopping: committing what is pending, then a final push")
    }

    /// One line for systemctl status: the phase and why, the watch, the last commit, the remote.
    func statusLine() -> String {
        var parts = [status.phase.rawValue + (status.reason.isEmpty ? "" : ": " + String(status.reason.prefix(120)))]
        parts.append("watching \(status.watchedDirectories) directories")
        if !status.lastCommit.isEmpty { parts.append("last commit \(status.lastCommit.prefix(8)) at \(status.lastCommitAt)") }
        if status.pendingPaths > 0 { parts.append("\(status.pendingPaths) pending") }
        if !status.slowGit.isEmpty { parts.append("SLOW GIT since \(status.slowGitSince): \(status.slowGit)") }
        if !status.remote.isEmpty {
            if status.offlineSince.isEmpty {
                parts.append("\(status.unpushedCommits) unpushed")
            } else if status.syncProblemKind == RemoteProblem.Kind.setup.rawValue {
                parts.append("SETUP PROBLEM with \(status.remote) since \(status.offlineSince) (see syncctl status)")
            } else {
                parts.append("offline since \(status.offlineSince)")
            }
        }
        return parts.joined(separator: "; ")
    }

    private func sendStatus() {
        guard notifier.isActive else { return }
        let line = statusLine()
        guard line != lastStatusLine else { return }
        lastStatusLine = line
        notifier.send("STATUS=\(line)")
    }

    // MARK: - alerts

    /// When a failure that must last `alertAfter` before its alert needs a wake-up.
    func nextIncidentCheck(now: Instant) -> Instant? {
        incidents.nextCheck(now: now, alertAfter: alertAfter)
    }

    /// Runs the alert command for incidents that just became alert-worthy, once each.
    func checkIncidents(now: Instant) {
        let fired = incidents.update(status, now: now, alertAfter: alertAfter)
        for incident in fired {
            log.error("ALERT \(incident.name): \(incident.message)")
            record("alert") { line in
                line.add("incident", incident.name)
                line.add("message", incident.message)
            }
            guard !alertCommand.isEmpty else { continue }
            let command = alertCommand
            let workspace = workspace
            let log = log
            Task { await AlertHook.run(command, incident: incident, workspace: workspace, log: log) }
        }
    }
}
