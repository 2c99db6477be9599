import SyncEngine
import Testing

@Suite("RemoteSchedule on a manual clock")
struct RemoteScheduleTests {
    func make(interval: Duration = .seconds(300), pushDelay: Duration = .seconds(2)) -> (RemoteSchedule<ManualInstant>, ManualClock) {
        let clock = ManualClock()
        return (RemoteSchedule(syncInterval: interval, pushDelay: pushDelay, now: clock.now), clock)
    }

    @Test("a round at start, then nothing until the interval: no polling")
    func startThenInterval() {
        var (schedule, clock) = make()
        #expect(schedule.due(at: clock.now) == .fetch)
        schedule.roundStarted(fetch: true)
        #expect(schedule.due(at: clock.now) == nil)
        #expect(schedule.deadline(now: clock.now) == nil, "no wake-up while a round runs")
        schedule.succeeded(at: clock.now)
        clock.advance(.seconds(299))
        #expect(schedule.due(at: clock.now) == nil)
        clock.advance(.seconds(1))
        #expect(schedule.due(at: clock.now) == .fetch)
    }

    @Test("a commit is pushed pushDelay later, not at the next 5-minute round; commits meanwhile share the push")
    func pushSoonAfterCommit() {
        var (schedule, clock) = make()
        schedule.roundStarted(fetch: true)
        schedule.succeeded(at: clock.now)
        clock.advance(.seconds(10))
        schedule.committed(at: clock.now)
        #expect(schedule.deadline(now: clock.now) == clock.now.advanced(by: .seconds(2)))
        clock.advance(.seconds(1))
        schedule.committed(at: clock.now)  // coalesced: the first deadline stands
        #expect(schedule.deadline(now: clock.now) == clock.now.advanced(by: .seconds(1)))
        clock.advance(.seconds(1))
        #expect(schedule.due(at: clock.now) == .push)
        schedule.roundStarted(fetch: false)
        schedule.succeeded(at: clock.now)
        #expect(schedule.due(at: clock.now) == nil)
    }

    @Test("remote commits are integrated at once, then pushed at once")
    func integrateThenPush() {
        var (schedule, clock) = make()
        schedule.roundStarted(fetch: true)
        schedule.behind()
        #expect(schedule.due(at: clock.now) == .integrate)
        schedule.integrated(at: clock.now)
        #expect(schedule.due(at: clock.now) == .push)
    }

    @Test("a rejected push fetches again at once, a few times, then counts as a failure")
    func rejections() {
        var (schedule, clock) = make()
        for _ in 1..<RemoteSchedule<ManualInstant>.maxRejections {
            schedule.roundStarted(fetch: false)
            let again = schedule.rejected(at: clock.now)
            #expect(again)
            #expect(schedule.due(at: clock.now) == .fetch)
        }
        schedule.roundStarted(fetch: false)
        let again = schedule.rejected(at: clock.now)
        #expect(!again)
    }

    @Test("offline: backoff from 5 s doubling up to the interval; no pushes scheduled by commits meanwhile; a success resets it")
    func offlineBackoff() {
        var (schedule, clock) = make(interval: .seconds(60))
        var waits: [Duration] = []
        for _ in 0..<6 {
            schedule.roundStarted(fetch: true)
            waits.append(schedule.failed(setup: false, at: clock.now))
            schedule.committed(at: clock.now)
            #expect(schedule.deadline(now: clock.now) == clock.now.advanced(by: waits.last!), "a commit must not bring the next try forward")
            clock.advance(waits.last!)
            #expect(schedule.due(at: clock.now) == .fetch)
        }
        #expect(waits == [.seconds(5), .seconds(10), .seconds(20), .seconds(40), .seconds(60), .seconds(60)])
        schedule.roundStarted(fetch: true)
        schedule.succeeded(at: clock.now)
        #expect(!schedule.failing)
        schedule.committed(at: clock.now)
        #expect(schedule.deadline(now: clock.now) == clock.now.advanced(by: .seconds(2)))
    }

    @Test("a setup problem (host key, credentials, URL) waits the whole interval: retrying sooner cannot fix it")
    func setupWaitsInterval() {
        var (schedule, clock) = make(interval: .seconds(300))
        schedule.roundStarted(fetch: true)
        let wait = schedule.failed(setup: true, at: clock.now)
        #expect(wait == .seconds(300))
    }

    @Test("jitter from the caller is added to the backoff")
    func jitter() {
        var (schedule, clock) = make(interval: .seconds(60))
        schedule.roundStarted(fetch: true)
        schedule.failed(setup: false, at: clock.now) { backoff in backoff / 5 }
        #expect(schedule.deadline(now: clock.now) == clock.now.advanced(by: .seconds(6)))
    }

    @Test("a reload with a shorter interval takes effect now, not when the old interval runs out")
    func reloadReschedules() {
        var (schedule, clock) = make(interval: .seconds(3600))
        schedule.roundStarted(fetch: true)
        schedule.succeeded(at: clock.now)
        clock.advance(.seconds(100))
        schedule.reload(syncInterval: .seconds(20), pushDelay: .seconds(2), at: clock.now)
        #expect(schedule.deadline(now: clock.now) == clock.now.advanced(by: .seconds(20)))
        // A longer interval does not push an earlier round back.
        schedule.reload(syncInterval: .seconds(7200), pushDelay: .seconds(2), at: clock.now)
        #expect(schedule.deadline(now: clock.now) == clock.now.advanced(by: .seconds(20)))
    }

    @Test("a refused integration is retried a few times, then given up until the next round")
    func refusals() {
        var (schedule, clock) = make()
        schedule.roundStarted(fetch: true)
        schedule.behind()
        for _ in 1..<RemoteSchedule<ManualInstant>.maxRefusals {
            let retry = schedule.refused()
            #expect(retry)
            #expect(schedule.due(at: clock.now) == .integrate)
        }
        let retry = schedule.refused()
        #expect(!retry)
        #expect(schedule.due(at: clock.now) != .integrate)
    }

    @Test("an emergency stop's cancellation is not a failure: fetch again once allowed, no backoff")
    func cancellation() {
        var (schedule, clock) = make()
        schedule.roundStarted(fetch: true)
        schedule.cancelled(at: clock.now)
        #expect(!schedule.failing && schedule.backoff == .zero)
        #expect(schedule.due(at: clock.now) == .fetch)
    }

    @Test("a busy remote is not a failing one: rejections followed by new remote commits never add up to a failure")
    func busyRemote() {
        var (schedule, clock) = make()
        for _ in 0..<(RemoteSchedule<ManualInstant>.maxRejections * 3) {
            schedule.roundStarted(fetch: false)
            let normal = schedule.rejected(at: clock.now)
            #expect(normal)
            #expect(schedule.due(at: clock.now) == .fetch)
            schedule.roundStarted(fetch: true)
            schedule.behind()
            schedule.integrated(at: clock.now)
            clock.advance(.milliseconds(100))
        }
        #expect(!schedule.failing)
    }
}
