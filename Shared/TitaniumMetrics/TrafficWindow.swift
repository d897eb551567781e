#if canImport(Glibc)
import Glibc
#endif
import Histogram
import NIOConcurrencyHelpers

/// Request figures over a sliding window of whole seconds (10 by default): one bucket per
/// second, each with a count, an error count, a latency sum and an HDR histogram for the
/// percentiles. Buckets older than the window are reused, so memory stays constant.
public final class TrafficWindow: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var windowSeconds: Int
        /// Requests recorded since the window was created.
        public var totalRequests: Int
        public var requests: Int
        public var errors: Int
        /// Answered 429: refused by a rate limit, neither a success nor a failure of the system.
        public var rateLimited: Int = 0
        public var requestsPerSecond: Double
        public var averageMilliseconds: Double
        public var p95Milliseconds: Double
        public var p99Milliseconds: Double
        /// Errors divided by requests; 0 without requests.
        public var errorRate: Double
        /// Seconds since the last recorded request (nil if none was ever recorded).
        public var secondsSinceLast: Double?
    }

    private struct Bucket {
        var second: Int64 = -1
        var count = 0
        var errors = 0
        var rateLimited = 0
        var totalMicros: UInt64 = 0
        var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .two)

        mutating func reset(second: Int64) {
            self.second = second
            self.count = 0
            self.errors = 0
            self.totalMicros = 0
            self.histogram.reset()
        }
    }

    private struct State {
        var buckets: [Bucket]
        var total = 0
        var lastNanos: UInt64?
    }

    public let windowSeconds: Int
    private let state: NIOLockedValueBox<State>

    public init(windowSeconds: Int = 10) {
        precondition(windowSeconds > 0)
        self.windowSeconds = windowSeconds
        self.state = NIOLockedValueBox(State(buckets: Array(repeating: Bucket(), count: windowSeconds)))
    }

    /// Records one request that finished at `nowNanos` (monotonic nanoseconds) after `latencyNanos`.
    public func record(latencyNanos: UInt64, isError: Bool, isRateLimited: Bool = false, nowNanos: UInt64 = TrafficWindow.monotonicNanos()) {
        let second = Int64(nowNanos / 1_000_000_000)
        let micros = max(latencyNanos / 1_000, 1)
        self.state.withLockedValue { state in
            let index = Int(second % Int64(self.windowSeconds))
            if state.buckets[index].second != second {
                state.buckets[index].reset(second: second)
            }
            state.buckets[index].count += 1
            state.total += 1
            if isError { state.buckets[index].errors += 1 }
            if isRateLimited { state.buckets[index].rateLimited += 1 }
            state.buckets[index].totalMicros &+= micros
            _ = state.buckets[index].histogram.record(min(micros, 60_000_000))
            state.lastNanos = max(state.lastNanos ?? 0, nowNanos)
        }
    }

    /// Marks activity that is not a request (a heartbeat) for ``Snapshot/secondsSinceLast``.
    public func touch(nowNanos: UInt64 = TrafficWindow.monotonicNanos()) {
        self.state.withLockedValue { $0.lastNanos = max($0.lastNanos ?? 0, nowNanos) }
    }

    /// 429 answers per second over the window.
    public static func perSecond(_ count: Int, windowSeconds: Int) -> Double {
        (Double(count) / Double(windowSeconds) * 1000).rounded() / 1000
    }

    /// Figures over the last `windowSeconds` whole seconds, the current second included.
    public func snapshot(nowNanos: UInt64 = TrafficWindow.monotonicNanos()) -> Snapshot {
        let currentSecond = Int64(nowNanos / 1_000_000_000)
        let oldest = currentSecond - Int64(self.windowSeconds) + 1
        return self.state.withLockedValue { state in
            var merged = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .two)
            var count = 0
            var errors = 0
            var rateLimited = 0
            var totalMicros: UInt64 = 0
            for bucket in state.buckets where bucket.second >= oldest && bucket.second <= currentSecond && bucket.count > 0 {
                count += bucket.count
                errors += bucket.errors
                rateLimited += bucket.rateLimited
                totalMicros &+= bucket.totalMicros
                merged.add(bucket.histogram)
            }
            let since = state.lastNanos.map { Double(nowNanos &- min($0, nowNanos)) / 1e9 }
            guard count > 0 else {
                return Snapshot(
                    windowSeconds: self.windowSeconds, totalRequests: state.total, requests: 0, errors: 0, requestsPerSecond: 0,
                    averageMilliseconds: 0, p95Milliseconds: 0, p99Milliseconds: 0, errorRate: 0,
                    secondsSinceLast: since
                )
            }
            return Snapshot(
                windowSeconds: self.windowSeconds,
                totalRequests: state.total,
                requests: count,
                errors: errors,
                rateLimited: rateLimited,
                requestsPerSecond: Double(count) / Double(self.windowSeconds),
                averageMilliseconds: Double(totalMicros) / Double(count) / 1000,
                p95Milliseconds: Double(merged.valueAtPercentile(95)) / 1000,
                p99Milliseconds: Double(merged.valueAtPercentile(99)) / 1000,
                errorRate: Double(errors) / Double(count),
                secondsSinceLast: since
            )
        }
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    public static func monotonicNanos() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }
}
