import Logging
import SyncTestKit
import Synchronization
import Testing

@testable import SyncSystem

/// syncd's log handler: the line format tests and docs grep (`syncd: warning: …`, `<4>warning: …`),
/// the repeat limiter, metadata; and the recorder behind `RecoveryNotes` and `LogCollector`.
@Suite("Log handler")
struct LogHandlerTests {
    /// The handler's output and clock, in the test's hands.
    final class Output: Sendable {
        private let written = Mutex<[String]>([])
        private let elapsed = Mutex<Duration>(.zero)
        private let start = ContinuousClock.now

        var text: String { written.withLock { $0.joined() } }
        func advance(_ duration: Duration) { elapsed.withLock { $0 += duration } }

        func logger(journal: Bool = false, hidden: Set<String> = [], level: Logger.Level = .info) -> Logger {
            var logger = Logger(label: "syncd") { _ in
                StandardErrorLogHandler(
                    journal: journal, hidden: hidden,
                    write: { text in self.written.withLock { $0.append(text) } },
                    now: { self.start + self.elapsed.withLock { $0 } })
            }
            logger.logLevel = level
            return logger
        }
    }

    @Test("outside the journal: `syncd: level: message`, one line each; below the level nothing")
    func plainFormat() {
        let output = Output()
        let log = output.logger(level: .info)
        log.debug("not written")
        log.info("watching /w")
        log.warning("cannot watch sub/")
        log.error("batch 3 failed")
        #expect(output.text == "syncd: info: watching /w\nsyncd: warning: cannot watch sub/\nsyncd: error: batch 3 failed\n")
    }

    @Test("under the journal: each line starts with its syslog priority, a multi-line message on every line")
    func journalFormat() {
        let output = Output()
        let log = output.logger(journal: true, level: .debug)
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("first\nsecond")
        #expect(output.text == "<7>debug: d\n<6>info: i\n<4>warning: w\n<3>error: first\n<3>error: second\n")
        #expect(StandardErrorLogHandler.priority(.critical) == 2)
        #expect(StandardErrorLogHandler.priority(.notice) == 5)
        #expect(StandardErrorLogHandler.priority(.trace) == 7)
    }

    @Test("metadata after the message, keys sorted; hidden keys and the limiter's own not printed")
    func metadata() {
        let output = Output()
        var log = output.logger(hidden: ["workspace"])
        log[metadataKey: "workspace"] = "/w"
        log.info("started")
        log[metadataKey: "remote"] = "origin"
        log.warning("push failed", metadata: ["batch": "12"])
        log.error("two\nlines", metadata: .limitRepeats(within: .seconds(600)))
        #expect(output.text == """
            syncd: info: started
            syncd: warning: push failed [batch=12 remote=origin]
            syncd: error: two
            syncd: error: lines [remote=origin]

            """)
    }

    @Test("a message repeated within a minute is written once; the next one says how many were held back")
    func repeats() {
        let output = Output()
        let log = output.logger()
        var withRemote = log
        withRemote[metadataKey: "remote"] = "origin"
        log.warning("push failed")
        withRemote.warning("push failed")  // a copy with other metadata shares the limiter
        log.warning("push failed")
        log.warning("another failure")
        output.advance(.seconds(61))
        log.warning("push failed")
        log.warning("push failed")
        #expect(output.text == """
            syncd: warning: push failed
            syncd: warning: another failure
            syncd: warning: push failed (repeated 2 more times in the last minute)

            """)
    }

    @Test("a message's own window and key (SyncService's throttles): texts that differ count as one")
    func ownWindowAndKey() {
        let output = Output()
        let log = output.logger()
        for unpushed in 1...3 {
            log.warning("cannot sync: offline (\(unpushed) not pushed)", metadata: .limitRepeats(within: .seconds(600), key: "sync offline"))
            output.advance(.seconds(120))
        }
        output.advance(.seconds(300))
        log.warning("cannot sync: offline (4 not pushed)", metadata: .limitRepeats(within: .seconds(600), key: "sync offline"))
        #expect(output.text == """
            syncd: warning: cannot sync: offline (1 not pushed)
            syncd: warning: cannot sync: offline (4 not pushed) (repeated 2 more times in the last 10 minutes)

            """)
    }

    @Test("the limiter's wording for other windows")
    func windowWords() {
        #expect(RepeatLimiter.describe(.seconds(60)) == "minute")
        #expect(RepeatLimiter.describe(.seconds(300)) == "5 minutes")
        #expect(RepeatLimiter.describe(.seconds(90)) == "90 s")
    }

    @Test("the recorder keeps every level and hands each message on with its metadata; the next logger filters")
    func recorder() {
        let output = Output()
        var upstream = output.logger(hidden: ["workspace"], level: .warning)
        upstream[metadataKey: "workspace"] = "/w"
        let recorder = LogRecorder()
        var log = recorder.logger(forwardingTo: upstream)
        log[metadataKey: "batch"] = "7"
        log.info("kept, not written")
        log.warning("removed a stale index.lock")
        #expect(recorder.entries.map(\.message) == ["kept, not written", "removed a stale index.lock"])
        #expect(recorder.entries.map(\.level) == [.info, .warning])
        #expect(recorder.entries.last?.metadata == ["batch": "7"])
        #expect(output.text == "syncd: warning: removed a stale index.lock [batch=7]\n")
        #expect(recorder.take().count == 2 && recorder.entries.isEmpty)

        let collector = LogCollector()
        collector.logger.debug("d")
        collector.logger.error("e")
        #expect(collector.lines == ["debug: d", "error: e"])
        #expect(collector.warnings == ["e"])
    }
}
