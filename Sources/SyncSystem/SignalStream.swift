import CSyncShims
import Dispatch
import Glibc

/// Delivers process signals as an async sequence. The default action of each signal is replaced
/// by SIG_IGN first: a dispatch source only observes signals, it does not stop them from killing
/// the process (dispatch_source_create(3)).
public enum SignalStream {
    public static func make(_ signals: [Int32]) -> AsyncStream<Int32> {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        var sources: [any DispatchSourceSignal] = []
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            sources.append(source)
        }
        let keep = SourceBox(sources)
        continuation.onTermination = { _ in keep.cancel() }
        return stream
    }

    /// Called first thing by every executable: a write to a closed pipe (git died, `syncd watch | head`)
    /// must become EPIPE, not a silent death.
    public static func ignoreSIGPIPE() {
        signal(SIGPIPE, SIG_IGN)
    }

    /// Makes SIGABRT end the process even when another process sends it — systemd's watchdog
    /// does (`WatchdogSignal=`, SIGABRT by default). The Swift runtime's crash handler still
    /// prints its backtrace first (where each thread was stuck), but on its own it returns
    /// afterwards, and for a signal sent with kill(2) the program then simply goes on: a wedged
    /// syncd stayed wedged until systemd's TimeoutAbortSec ran out (swiftlang/swift#89461).
    /// Called first thing by `syncd run`.
    public static func makeAbortFatal() {
        _ = csync_make_sigabrt_fatal()
    }
}

private final class SourceBox: @unchecked Sendable {
    // @unchecked: the array is written once in init and only read in cancel(), which
    // onTermination calls once.
    private let sources: [any DispatchSourceSignal]
    init(_ sources: [any DispatchSourceSignal]) { self.sources = sources }
    func cancel() { sources.forEach { $0.cancel() } }
}
