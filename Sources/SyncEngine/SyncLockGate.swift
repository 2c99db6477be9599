import Glibc
import Logging
import SyncCore
import SyncSystem

/// The coordinator stage: syncd's side of the writer protocol (docs/PROTOCOL.md). Writers hold
/// the sync lock shared while they write; syncd takes it exclusive, without waiting, only to
/// snapshot a batch or to move the working tree to the remote's changes. While writers hold it
/// the caller retries; after `leaseAfter` a writer pause lease asks new writers to hold off so
/// the current ones can finish; after `reportAfter` the holders are named in the log (at most
/// once a minute). Instants are passed in, so the waiting logic never reads a clock itself.
struct SyncLockGate {
    typealias Instant = ContinuousClock.Instant

    private(set) var lock: FileLock
    let lockDirectory: LockDirectory
    /// syncd holds the lock exclusively now.
    private(set) var held = false
    var leaseCap: Duration
    var reportAfter: Duration
    private let log: Logger
    /// Since when writers have kept syncd out (nil while it is not waiting).
    private(set) var blockingSince: Instant?
    /// The same, as wall-clock time for the status file ("" while not waiting).
    private(set) var blockingSinceText = ""
    private var leaseWritten = false
    private var lastReport: Instant?

    init(lockDirectory: LockDirectory, leaseCap: Duration, reportAfter: Duration, log: Logger) throws {
        do {
            lock = try FileLock(path: lockDirectory.syncLock)
        } catch {
            throw SyncError(
                .syscall,
                "cannot open the sync lock \(Syscall.display(lockDirectory.syncLock))"
                    + (error.errno == Errno(ELOOP) ? ": it is a symlink; remove it (syncd never follows one there)" : ""),
                cause: error)
        }
        self.lockDirectory = lockDirectory
        self.leaseCap = leaseCap
        self.reportAfter = reportAfter
        self.log = log
    }

    /// Takes the sync lock exclusively without waiting; false while writers hold it.
    mutating func tryAcquire(purpose: String, leaseAfter: Duration, now: Instant) throws -> Bool {
        let waited = now - (blockingSince ?? now)
        if waited >= leaseAfter, !leaseWritten {
            let created = ControlFile.now()
            let lease = WriterLease(
                holder: ProcessIdentity.current(), reason: purpose, createdAt: created,
                expiresAt: created + Double(leaseCap.components.seconds))
            do {
                try ControlFile.write(lease, to: lockDirectory.writerLease)
                leaseWritten = true
            } catch {
                log.warning("cannot write the writer pause lease \(Syscall.display(lockDirectory.writerLease)): \(error)")
            }
        }
        let acquired: Bool
        do {
            acquired = try lock.tryLock(.exclusive)
        } catch {
            throw SyncError(.syscall, "cannot take the sync lock \(Syscall.display(lock.path))", cause: error)
        }
        if acquired {
            held = true
            return true
        }
        if blockingSince == nil {
            blockingSince = now
            blockingSinceText = WallClock.rfc3339()
        }
        if waited >= reportAfter, lastReport.map({ now - $0 >= .seconds(60) }) ?? true {
            lastReport = now
            let holders = ProcessTable.processesHolding(lock.path).filter { $0 != getpid() }
            let names = holders.map { pid in "pid \(pid)" + (ProcessTable.commandLine(of: pid).map { " (\($0))" } ?? "") }
            let named = names.isEmpty ? "" : ": " + names.joined(separator: ", ")
            log.warning("""
                writers have held the sync lock \(Syscall.display(lock.path)) for \(waited.components.seconds) s\(named); \
                syncd keeps waiting and commits nothing half-written. A writer that never releases it must be fixed or stopped
                """)
        }
        return false
    }

    /// Opens the sync lock again when its file (or the lock directory) was deleted or replaced:
    /// writers lock the file the path names now, so syncd must lock that one too. Only while
    /// syncd does not hold it (a snapshot in progress finishes on the old file first). True when
    /// it did.
    mutating func reopenIfReplaced() throws -> Bool {
        guard !held, !lock.isIntact else { return false }
        try lockDirectory.prepare()
        do {
            lock = try FileLock(path: lockDirectory.syncLock)
        } catch {
            throw SyncError(.syscall, "cannot open the sync lock \(Syscall.display(lockDirectory.syncLock)) again", cause: error)
        }
        return true
    }

    /// Releases the lock and the lease; writers go on.
    mutating func release() {
        lock.unlock()
        held = false
        if leaseWritten {
            try? ControlFile.remove(lockDirectory.writerLease)
            leaseWritten = false
        }
        blockingSince = nil
        blockingSinceText = ""
        lastReport = nil
    }
}
