import SyncEngine
import Testing

/// A made-up instant: tests move time by hand, so nothing here depends on how fast the machine is.
struct ManualInstant: InstantProtocol {
    var offset: Duration
    func advanced(by duration: Duration) -> ManualInstant { ManualInstant(offset: offset + duration) }
    func duration(to other: ManualInstant) -> Duration { other.offset - offset }
    static func < (lhs: ManualInstant, rhs: ManualInstant) -> Bool { lhs.offset < rhs.offset }
}

/// A manual clock: `now` only moves when the test says so.
struct ManualClock {
    var now = ManualInstant(offset: .zero)
    mutating func advance(_ duration: Duration) { now = now.advanced(by: duration) }
}

@Suite("Batcher on a manual clock")
struct BatcherTests {
    func makeBatcher(quiet: Duration = .seconds(2), maxLatency: Duration = .seconds(20), maxPaths: Int = 1000) -> Batcher<ManualInstant> {
        Batcher(quietPeriod: quiet, maxLatency: maxLatency, maxPaths: maxPaths)
    }

    @Test("nothing pending: nothing due, no deadline (no polling when idle)")
    func idle() {
        let batcher = makeBatcher()
        #expect(batcher.due(at: ManualInstant(offset: .seconds(1000))) == nil)
        #expect(batcher.deadline == nil)
        #expect(!batcher.hasPending)
    }

    @Test("a burst is committed once, a quiet period after its last change")
    func quietAfterBurst() {
        var clock = ManualClock()
        var batcher = makeBatcher()
        for count in 1...50 {
            batcher.changed(pendingPaths: count, at: clock.now)
            clock.advance(.milliseconds(20))
            #expect(batcher.due(at: clock.now) == nil)
        }
        let last = batcher.lastChange!
        #expect(batcher.deadline == last.advanced(by: .seconds(2)))
        clock.now = last.advanced(by: .milliseconds(1999))
        #expect(batcher.due(at: clock.now) == nil)
        clock.now = last.advanced(by: .seconds(2))
        #expect(batcher.due(at: clock.now) == .quiet)
        batcher.batchTaken()
        #expect(batcher.deadline == nil)
        #expect(batcher.due(at: clock.now.advanced(by: .seconds(60))) == nil)
    }

    @Test("a writer that changes a file every 0.5 s forever still gets a commit at least every maxLatency")
    func writerNeverStops() {
        var clock = ManualClock()
        var batcher = makeBatcher()
        var commits: [ManualInstant] = []
        // Ten minutes of a writer touching one file every 500 ms; the loop plays the service:
        // it records changes and takes a batch whenever one is due.
        for _ in 0..<(10 * 60 * 2) {
            batcher.changed(pendingPaths: 1, at: clock.now)
            clock.advance(.milliseconds(500))
            if batcher.due(at: clock.now) != nil {
                #expect(batcher.due(at: clock.now) == .maxLatency)
                commits.append(clock.now)
                batcher.batchTaken()
            }
        }
        #expect(commits.count >= 29)
        var previous = ManualInstant(offset: .zero)
        for commit in commits {
            #expect(previous.duration(to: commit) <= .seconds(20) + .milliseconds(500))
            previous = commit
        }
    }

    @Test("the deadline never passes the maximum latency, however often changes come")
    func deadlineCappedByMaxLatency() {
        var clock = ManualClock()
        var batcher = makeBatcher(quiet: .seconds(2), maxLatency: .seconds(5))
        let first = clock.now
        for _ in 0..<9 {
            batcher.changed(pendingPaths: 1, at: clock.now)
            clock.advance(.seconds(1))
        }
        #expect(batcher.deadline == first.advanced(by: .seconds(5)))
    }

    @Test("the size cap makes a batch due at once")
    func sizeCap() {
        let clock = ManualClock()
        var batcher = makeBatcher(maxPaths: 100)
        batcher.changed(pendingPaths: 99, at: clock.now)
        #expect(batcher.due(at: clock.now) == nil)
        batcher.changed(pendingPaths: 100, at: clock.now)
        #expect(batcher.due(at: clock.now) == .size)
        #expect(batcher.deadline == clock.now)
    }

    @Test("a request is due at once, even with nothing changed")
    func request() {
        let clock = ManualClock()
        var batcher = makeBatcher()
        batcher.request(at: clock.now)
        #expect(batcher.hasPending)
        #expect(batcher.due(at: clock.now) == .requested)
    }

    @Test("a hold (deferral, failure) pushes everything back, and keeps the changes")
    func hold() {
        var clock = ManualClock()
        var batcher = makeBatcher()
        batcher.changed(pendingPaths: 3, at: clock.now)
        clock.advance(.seconds(2))
        #expect(batcher.due(at: clock.now) == .quiet)
        batcher.hold(until: clock.now.advanced(by: .seconds(1)))
        #expect(batcher.due(at: clock.now) == nil)
        #expect(batcher.deadline == clock.now.advanced(by: .seconds(1)))
        clock.advance(.seconds(1))
        #expect(batcher.due(at: clock.now) == .quiet)
        #expect(batcher.pendingPaths == 3)
    }
}

@Suite("Circuit breaker on a manual clock")
struct CircuitBreakerTests {
    @Test("opens when commits come faster than the rate, stays open for the window, then closes")
    func opensAndCloses() {
        var clock = ManualClock()
        var breaker = CircuitBreaker<ManualInstant>(maxCommits: 5, window: .seconds(60))
        for _ in 0..<5 {
            let tripped = breaker.recordCommit(at: clock.now)
            #expect(!tripped)
            clock.advance(.seconds(1))
        }
        let tripped = breaker.recordCommit(at: clock.now)
        #expect(tripped)
        #expect(breaker.trips == 1)
        var open = breaker.isOpen(at: clock.now)
        #expect(open)
        clock.advance(.seconds(59))
        open = breaker.isOpen(at: clock.now)
        #expect(open)
        clock.advance(.seconds(1))
        open = breaker.isOpen(at: clock.now)
        #expect(!open)
    }

    @Test("a steady rate below the limit never opens it")
    func steadyRateStaysClosed() {
        var clock = ManualClock()
        var breaker = CircuitBreaker<ManualInstant>(maxCommits: 5, window: .seconds(60))
        for _ in 0..<1000 {
            let tripped = breaker.recordCommit(at: clock.now)
            #expect(!tripped)
            clock.advance(.seconds(13))
        }
        #expect(breaker.trips == 0)
    }
}
