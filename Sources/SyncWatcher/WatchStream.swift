import SyncCore
import SyncSystem

/// `syncd watch`: the change stream as JSON lines, one per change, plus notices (`ready`,
/// `rescan`, `degraded`, `recovered`). After a rescan request the reconciled paths follow, each with
/// `"rescan":true`.
public enum WatchStream {
    public static func noticeLine(_ notice: WatcherNotice) -> String {
        var line = JSONLine()
        switch notice {
        case let .ready(watched, ignored, unwatched):
            line.add("kind", "ready")
            line.add("watched", watched)
            line.add("ignored", ignored)
            line.add("unwatched", unwatched)
        case let .degraded(message):
            line.add("kind", "degraded")
            line.add("message", message)
        case let .recovered(watched):
            line.add("kind", "recovered")
            line.add("watched", watched)
        }
        return line.text
    }

    public static func rescanLine(_ reasons: Set<RescanReason>) -> String {
        var line = JSONLine()
        line.add("kind", "rescan")
        line.add("reasons", reasons.map(\.rawValue).sorted())
        line.add("rescan", true)
        return line.text
    }

    /// Consumes `watcher.changes` and writes lines through `emit` until the watcher stops.
    public static func pump(_ watcher: Watcher, emit: ([String]) throws -> Void) async throws {
        while let taken = await watcher.changes.next() {
            var lines = taken.notices.map(noticeLine)
            lines += taken.changes.map(\.jsonLine)
            if !taken.rescanReasons.isEmpty {
                lines.append(rescanLine(taken.rescanReasons))
                lines += try await watcher.reconcile().map(\.jsonLine)
            }
            try emit(lines)
        }
    }
}
