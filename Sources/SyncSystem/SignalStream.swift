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
}

private final class SourceBox: @unchecked Sendable {
    // @unchecked: the array is written once in init and only read in cancel(), which
    // onTermination calls once.
    private let sources: [any DispatchSourceSignal]
    init(_ sources: [any DispatchSourceSignal]) { self.sources = sources }
    func cancel() { sources.forEach { $0.cancel() } }
}
