import Glibc
import Logging

/// Crash testing: when `SYNCD_FAILPOINT` names a point of an integrating sync cycle, syncd stops there (logs it, then waits
/// forever) so a test can `kill -9` it at exactly that moment of a sync cycle. Unset in
/// production: each call is one environment lookup.
enum Failpoint {
    static func hit(_ name: String, log: Logger) async {
        guard let wanted = getenv("SYNCD_FAILPOINT").map({ String(cString: $0) }), wanted == name else { return }
        log.warning("failpoint \(name) reached; waiting to be killed")
        while true { try? await Task.sleep(for: .seconds(3600)) }
    }

    /// The same for a point inside synchronous code (the thread waits to be killed).
    static func hitBlocking(_ name: String, log: Logger) {
        guard let wanted = getenv("SYNCD_FAILPOINT").map({ String(cString: $0) }), wanted == name else { return }
        log.warning("failpoint \(name) reached; waiting to be killed")
        while true { sleep(3600) }
    }
}
