import Glibc
import SyncCore
import SyncEngine
import SyncSystem

/// The writer's side of the protocol (`WriterTurn`), with syncctl's messages and exits: wait out
/// a pause lease, then hold the sync lock shared. Used by `as-writer` and `rewind`.
func acquireWriterLock(_ client: ControlClient, within limit: Duration, limitText: String, purpose: String) async throws -> FileLock {
    let directory = client.lockDirectory
    let lock: FileLock
    do {
        lock = try FileLock(path: directory.syncLock)
    } catch {
        throw Failure("cannot open the sync lock \(Syscall.display(directory.syncLock)): \(error)"
            + (error.errno == Errno(ELOOP) ? " (a symlink: remove it)" : ""))
    }
    let deadline = ContinuousClock.now.advanced(by: limit)
    let turn = try await WriterTurn.take(lock, in: directory, until: deadline) { lease in
        warn("writers are asked to pause until \(WallClock.rfc3339(seconds: lease.expiresAt)) (\(lease.reason)); waiting")
    }
    switch turn {
    case .granted: return lock
    case .emergencyStop:
        throw Failure("an emergency stop is set for \(client.repository.workTreeDisplay); not \(purpose) (see `syncctl status`)", code: ExitStatus.unavailable)
    case .gaveUp(let leaseInForce):
        throw Failure("gave up after \(limitText): " + (leaseInForce ? "a pause lease is still in force" : "syncd holds the sync lock"), code: ExitStatus.unavailable)
    }
}
