import NIOConcurrencyHelpers
import Prometheus

/// The RED metrics every service exports, registered with help text in one registry:
/// `http_requests_total{method,route,status}`, `http_request_duration_seconds{method,route}`
/// and `http_requests_in_flight`.
public final class HTTPMetrics: Sendable {
    /// 1 ms to 10 s.
    public static let durationBuckets: [Duration] = [
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]

    public let registry: PrometheusCollectorRegistry
    private let inFlight: Gauge

    private struct SeriesKey: Hashable {
        var method: String
        var route: String
        var status: Int
    }
    private struct Series {
        var counter: Counter
        var histogram: DurationHistogram
    }
    // Label arrays and registry look-ups are built once per (method, route, status), not per request.
    private let series = NIOLockedValueBox<[SeriesKey: Series]>([:])

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        self.inFlight = registry.makeGauge(
            named: "http_requests_in_flight",
            help: "HTTP requests being served right now."
        )
    }

    public func requestStarted() {
        self.inFlight.increment()
    }

    public func requestFinished(method: String, route: String, status: Int, duration: Duration) {
        self.inFlight.decrement()
        let key = SeriesKey(method: method, route: route, status: status)
        let series = self.series.withLockedValue { cache in
            if let existing = cache[key] { return existing }
            let created = Series(
                counter: self.registry.makeCounter(
                    named: "http_requests_total",
                    labels: [("method", method), ("route", route), ("status", String(status))],
                    help: "HTTP requests served, by method, route template and status code."
                ),
                histogram: self.registry.makeDurationHistogram(
                    named: "http_request_duration_seconds",
                    labels: [("method", method), ("route", route)],
                    buckets: Self.durationBuckets,
                    help: "Time from receiving an HTTP request to finishing its response, by route template."
                )
            )
            cache[key] = created
            return created
        }
        series.counter.increment()
        series.histogram.record(duration)
    }
}
