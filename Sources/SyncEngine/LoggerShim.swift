import Logging

// TEMPORARY (issue 16). SyncService.swift is being split into several files; so that the split
// and the move to swift-log merge mechanically, SyncService's call sites were left in the old
// closure style: `log(.warning, text)`, `found.note(.warning, text)`, `found.sink`. This file
// keeps them compiling. It goes once those call sites read `log.warning("…")`,
// `found.log.warning("…")` and `found.log`: delete it and the compiler lists what is left.

extension Logger {
    /// `log(.info, text)`: the old `LogSink` call, for SyncService's call sites only.
    func callAsFunction(
        _ level: Logger.Level, _ message: String, file: String = #fileID, function: String = #function, line: UInt = #line
    ) {
        log(level: level, "\(message)", file: file, function: function, line: line)
    }
}

extension RecoveryNotes {
    /// The old name of `log`.
    var sink: Logger { log }

    /// `log.log(level:…)` under its old name.
    func note(
        _ level: Logger.Level, _ message: String, file: String = #fileID, function: String = #function, line: UInt = #line
    ) {
        log.log(level: level, "\(message)", file: file, function: function, line: line)
    }
}
