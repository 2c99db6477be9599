import SyncCore
import SyncSystem

/// What `syncctl pause`, `resume` and `emergency-stop` do, shared with `syncd demo` so the demo
/// takes exactly the path a person's command takes: write the control file, write the request,
/// signal syncd (SIGUSR1), wait until `state.json` confirms it.
extension ControlClient {
    /// How a request ended.
    public enum RequestOutcome: Sendable {
        /// syncd confirmed it; its state then.
        case confirmed(StatusSnapshot)
        /// No syncd runs for the workspace: the request is recorded and applies when one starts.
        case notRunning
        /// syncd did not confirm within the timeout.
        case notConfirmed
    }

    /// `syncctl pause [--for] [--reason]`: pauses until `until` (seconds since the epoch), or
    /// until a resume.
    public func pause(reason: String, until: Double?, timeout: Duration) async throws -> RequestOutcome {
        let pause = DaemonPause(reason: reason, by: Self.requester, since: ControlFile.now(), until: until, serial: ControlFile.newSerial())
        try ControlFile.write(pause, to: lockDirectory.daemonPause)
        return try await request("pause", timeout: timeout) { state in state.paused }
    }

    /// `syncctl resume [--clear-emergency]`. The caller refuses first when an emergency stop is set
    /// and `clearEmergency` is false (an emergency stop is only ever cleared on purpose).
    public func resume(clearEmergency: Bool, timeout: Duration) async throws -> RequestOutcome {
        try ControlFile.remove(lockDirectory.daemonPause)
        if clearEmergency { try ControlFile.remove(lockDirectory.emergencyStop) }
        return try await request("resume", timeout: timeout) { state in
            !state.paused && !state.emergencyStop
        }
    }

    /// `syncctl emergency-stop [--reason]`: confirmed once syncd's phase is `emergency-stop`.
    public func emergencyStop(reason: String, timeout: Duration) async throws -> RequestOutcome {
        let stop = EmergencyStop(reason: reason, by: Self.requester, since: ControlFile.now(), serial: ControlFile.newSerial())
        try ControlFile.write(stop, to: lockDirectory.emergencyStop)
        return try await request("emergency-stop", timeout: timeout) { state in
            state.emergencyStop && state.phase == .emergencyStop
        }
    }

    /// `sync-request.json` (`sync`, `commit`, `squash`): written, syncd told, and its state once
    /// it has finished the request (`sync_serial_done` reached the request's serial).
    public func syncRequest(_ request: ControlRequest, timeout: Duration) async throws -> RequestOutcome {
        try ControlFile.write(request, to: lockDirectory.syncRequest)
        guard notify() else { return .notRunning }
        let state = await waitForState(timeout: timeout) { state in state.syncSerialDone >= request.serial }
        return state.map { .confirmed($0) } ?? .notConfirmed
    }

    /// Writes the control request, signals syncd and waits until state.json has applied it (its
    /// `control_serial` reached the request's) and `confirmed` holds.
    public func request(
        _ command: String, timeout: Duration, confirmed: @escaping (StatusSnapshot) -> Bool
    ) async throws -> RequestOutcome {
        let serial = ControlFile.newSerial()
        try ControlFile.write(ControlRequest(command: command, serial: serial, by: Self.requester), to: lockDirectory.controlRequest)
        guard notify() else { return .notRunning }
        let state = await waitForState(timeout: timeout) { state in
            state.controlSerial >= serial && confirmed(state)
        }
        return state.map { .confirmed($0) } ?? .notConfirmed
    }
}

/// The writer's side of the protocol (docs/PROTOCOL.md), as `syncctl as-writer` runs it: no
/// emergency stop, no pause lease in force, then the sync lock shared, with the lease checked
/// again under it (a lease written meanwhile goes first).
public enum WriterTurn {
    public enum Outcome: Sendable, Equatable {
        /// `lock` is held shared: write the whole change, then unlock it.
        case granted
        /// An emergency stop is set: the writer does not run.
        case emergencyStop
        /// `deadline` passed while a pause lease was in force, or while syncd held the lock.
        case gaveUp(leaseInForce: Bool)
    }

    /// Waits for the writer's turn until `deadline`, checking every 20 ms. `leaseNoticed` is
    /// called once, for the first pause lease in force that makes it wait.
    public static func take(
        _ lock: FileLock, in directory: LockDirectory, until deadline: ContinuousClock.Instant,
        leaseNoticed: (WriterLease) -> Void = { _ in }
    ) async throws -> Outcome {
        let clock = ContinuousClock()
        var announced = false
        while true {
            if Syscall.exists(directory.emergencyStop) { return .emergencyStop }
            let lease = activeLease(directory)
            if let lease, !announced {
                leaseNoticed(lease)
                announced = true
            }
            if lease == nil, try lock.tryLock(.shared) {
                // A lease written between the check and the lock wins: let syncd go first.
                guard activeLease(directory) != nil else { return .granted }
                lock.unlock()
            }
            if clock.now >= deadline { return .gaveUp(leaseInForce: lease != nil) }
            try await clock.sleep(for: .milliseconds(20))
        }
    }

    /// The writer pause lease, when one is in force now.
    public static func activeLease(_ directory: LockDirectory) -> WriterLease? {
        if case .value(let lease) = ControlFile.read(WriterLease.self, at: directory.writerLease), lease.isActive(at: ControlFile.now()) {
            return lease
        }
        return nil
    }
}
