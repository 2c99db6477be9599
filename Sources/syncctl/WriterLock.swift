import Glibc
import SyncCore
import SyncEngine
import SyncSystem

/// The writer's side of the protocol (docs/PROTOCOL.md): wait out a pause lease, then hold the
/// sync lock shared. Used by `as-writer` and `rewind`.
func acquireWriterLock(_ client: ControlClient, within limit: Duration, limitText: String, purpose: String) async throws -> FileLock {
    let directory = client.lockDirectory
    let lock: FileLock
    do {
        lock = try FileLock(path: directory.syncLock)
    } catch {
        fail("cannot open the sync lock \(Syscall.display(directory.syncLock)): \(error)"
            + (error.errno == Errno(ELOOP) ? " (a symlink: remove it)" : ""))
    }
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: limit)
    var announced = false
    while true {
        if Syscall.exists(directory.emergencyStop) {
            fail("an emergency stop is set for \(client.repository.workTreeDisplay); not \(purpose) (see `syncctl status`)", code: ExitStatus.unavailable)
        }
        let leaseActive: Bool
        if case .value(let lease) = ControlFile.read(WriterLease.self, at: directory.writerLease), lease.isActive(at: ControlFile.now()) {
            leaseActive = true
            if !announced {
                try? Syscall.writeAll(2, Array("syncctl: writers are asked to pause until \(WallClock.rfc3339(seconds: lease.expiresAt)) (\(lease.reason)); waiting\n".utf8))
                announced = true
            }
        } else {
            leaseActive = false
        }
        if !leaseActive, try lock.tryLock(.shared) {
            // A lease written between the check and the lock wins: let syncd go first.
            if case .value(let lease) = ControlFile.read(WriterLease.self, at: directory.writerLease), lease.isActive(at: ControlFile.now()) {
                lock.unlock()
            } else {
                return lock
            }
        }
        if clock.now >= deadline {
            fail("gave up after \(limitText): " + (leaseActive ? "a pause lease is still in force" : "syncd holds the sync lock"), code: ExitStatus.unavailable)
        }
        try await clock.sleep(for: .milliseconds(20))
    }
}
