import Prometheus
import Testing
import TitaniumMetrics

/// Names written whole come out whole in the exposition, whatever their last part is.
@Suite struct MetricNamesTests {
    @Test func wholeNamesAreExportedUnchanged() {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(named: "posts_created_total", help: "Posts created.").increment()
        registry.makeCounter(named: "cache_requests_total", labels: [("result", "hit")], help: "Look-ups.").increment()
        registry.makeGauge(named: "trace_buffer_depth", help: "Records waiting.").set(Double(3))
        registry.makeGauge(named: "uptime", help: "No underscore.").set(Double(1))
        registry.makeDurationHistogram(named: "trace_flush_duration_seconds", buckets: [.seconds(1)], help: "Flushes.")
            .recordNanoseconds(1000)
        let text = registry.emitToString()
        for line in [
            "posts_created_total 1", #"cache_requests_total{result="hit"} 1"#, "trace_buffer_depth 3", "uptime 1",
            "# HELP trace_flush_duration_seconds Flushes.", "trace_flush_duration_seconds_count 1",
        ] {
            #expect(text.split(separator: "\n").contains { $0.hasPrefix(line) }, "\(line) not in:\n\(text)")
        }
    }
}
