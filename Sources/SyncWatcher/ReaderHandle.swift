import Glibc
import SyncSystem
import Synchronization

/// The running reader, reachable from outside the `run()` task (only to hold it back in tests).
final class ReaderHandle: Sendable {
    private let current = Mutex<InotifyReader?>(nil)
    func set(_ reader: InotifyReader?) { current.withLock { $0 = reader } }
    var reader: InotifyReader? { current.withLock { $0 } }
}

enum ProcessEnvironment {
    static var current: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }
}
