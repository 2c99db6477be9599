import Logging
import SyncCore
import SyncSystem
import SyncWatcher

/// Appends records to the journal for every stage of the service; a failed append is logged,
/// never thrown (the journal is the history, not the commit path).
struct JournalRecorder {
    let journal: Journal
    let log: Logger

    func callAsFunction(_ event: String, _ fill: (inout JSONLine) -> Void) {
        do {
            try journal.append(event, fill)
        } catch {
            log.warning("cannot append to the journal \(Syscall.display(journal.path)): \(error)")
        }
    }
}
