import Testing
import TitaniumMetrics

@Suite struct TrafficWindowTests {
    let second: UInt64 = 1_000_000_000

    @Test func figuresOverTheLastTenSeconds() {
        let window = TrafficWindow(windowSeconds: 10)
        let base: UInt64 = 1_000 * second
        // 10 requests of 10 ms in each of 10 seconds, one of them an error per second.
        for s in 0..<10 {
            for i in 0..<10 {
                window.record(latencyNanos: 10_000_000, isError: i == 0, nowNanos: base + UInt64(s) * second + UInt64(i))
            }
        }
        let snapshot = window.snapshot(nowNanos: base + 9 * second + 500_000_000)
        #expect(snapshot.requests == 100)
        #expect(snapshot.requestsPerSecond == 10)
        #expect(abs(snapshot.averageMilliseconds - 10) < 0.001)
        #expect(abs(snapshot.p95Milliseconds - 10) < 0.1)
        #expect(abs(snapshot.errorRate - 0.1) < 1e-9)
        #expect(snapshot.totalRequests == 100)
    }

    @Test func oldSecondsLeaveTheWindow() {
        let window = TrafficWindow(windowSeconds: 10)
        let base: UInt64 = 5_000 * second
        window.record(latencyNanos: 1_000_000, isError: false, nowNanos: base)
        window.record(latencyNanos: 1_000_000, isError: false, nowNanos: base + 5 * second)
        #expect(window.snapshot(nowNanos: base + 9 * second).requests == 2)
        #expect(window.snapshot(nowNanos: base + 10 * second).requests == 1)
        let empty = window.snapshot(nowNanos: base + 15 * second)
        #expect(empty.requests == 0)
        #expect(empty.requestsPerSecond == 0)
        #expect(empty.p95Milliseconds == 0)
        #expect(empty.totalRequests == 2)
        #expect(empty.secondsSinceLast == 10)
    }

    @Test func aReusedBucketForgetsItsOldSecond() {
        let window = TrafficWindow(windowSeconds: 10)
        let base: UInt64 = 7_000 * second
        for _ in 0..<50 { window.record(latencyNanos: 900_000_000, isError: true, nowNanos: base) }
        // Ten seconds later the same ring slot is reused for one fast request.
        window.record(latencyNanos: 2_000_000, isError: false, nowNanos: base + 10 * second)
        let snapshot = window.snapshot(nowNanos: base + 10 * second)
        #expect(snapshot.requests == 1)
        #expect(snapshot.errors == 0)
        #expect(snapshot.p99Milliseconds < 3)
    }

    @Test func percentilesSeparateTheTail() {
        let window = TrafficWindow(windowSeconds: 10)
        let now: UInt64 = 9_000 * second
        for i in 0..<100 {
            window.record(latencyNanos: i < 90 ? 1_000_000 : 100_000_000, isError: false, nowNanos: now)
        }
        let snapshot = window.snapshot(nowNanos: now)
        #expect(snapshot.p95Milliseconds > 90 && snapshot.p95Milliseconds < 110)
        #expect(abs(snapshot.averageMilliseconds - 10.9) < 0.01)
    }
}
