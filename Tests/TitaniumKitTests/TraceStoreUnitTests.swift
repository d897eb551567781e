import Foundation
import TitaniumHTTP
import TitaniumTrace
import Testing

/// The trace store's pieces without a server: the tree merge, the summary's percentiles,
/// retention, and the settings.
struct TraceStoreUnitTests {
    static func step(_ span: String, parent: String?, service: String, at: Int64, latencyMicros: Int64 = 1000, status: Int = 200, route: String = "/r") -> TraceStep {
        TraceStep(
            trace_id: "t1", span_id: span, parent_span_id: parent, service: service, instance: "i", user_id: nil, route: route,
            path: route, method: "GET", status_code: status, latency_us: latencyMicros, ip: "127.0.0.1", user_agent: "", created_at: at
        )
    }

    @Test func treePutsParentsBeforeChildrenWithOffsets() {
        // Out of order, a duplicate, and a parent nobody recorded (an outside caller).
        let steps = [
            Self.step("c", parent: "b", service: "user-service", at: 1_005, latencyMicros: 3_000),
            Self.step("a", parent: "outside", service: "load-balancer", at: 1_000, latencyMicros: 12_000),
            Self.step("d", parent: "a", service: "api-gateway", at: 1_009, latencyMicros: 1_000),
            Self.step("b", parent: "a", service: "api-gateway", at: 1_002, latencyMicros: 8_000),
            Self.step("c", parent: "b", service: "user-service", at: 1_005, latencyMicros: 3_000),
        ]
        let tree = TraceTree(traceID: "t1", steps: steps)
        #expect(tree.spans.map(\.step.span_id) == ["a", "b", "c", "d"])
        #expect(tree.spans.map(\.depth) == [0, 1, 2, 1])
        #expect(tree.spans.map(\.offset_ms) == [0, 2, 5, 9])
        #expect(tree.spans.map(\.duration_ms) == [12, 8, 3, 1])
        #expect(tree.duration_ms == 12)
        #expect(tree.started_at == 1_000)
    }

    @Test func summaryHasNearestRankP95AndErrorRatePerRoute() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("traces-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try TraceStore(path: directory.appendingPathComponent("traces.db").path)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        // 1..100 ms on /a, two of them 5xx; one old row that `since` leaves out.
        var steps = (1...100).map { Self.step("a\($0)", parent: nil, service: "s", at: now, latencyMicros: Int64($0) * 1000, status: $0 > 98 ? 503 : 200, route: "/a") }
        steps.append(Self.step("old", parent: nil, service: "s", at: now - 7_200_000, latencyMicros: 999_000, route: "/a"))
        try store.insert(steps)
        let summary = try await store.summary(since: now - 60_000)
        let route = try #require(summary.routes.first)
        #expect(summary.routes.count == 1)
        #expect(route.count == 100)
        #expect(route.p95_latency_ms == 95)
        #expect(route.mean_latency_ms == 50.5)
        #expect(route.error_rate == 0.02)
        #expect(try await store.count() == 101)
        // Retention applies to compacted rows; the summary reads both before and after.
        #expect(try store.compact() == 101)
        #expect(try await store.summary(since: now - 60_000) == summary)
        #expect(try await store.deleteOlder(than: now - 3_600_000) == 1)
        #expect(try await store.count() == 100)
    }

    @Test func settingsAreReadAndRejectedByName() throws {
        let settings = Settings.fromEnvironment([
            "TRACE_FLUSH_INTERVAL": "250ms", "TRACE_BUFFER_SIZE": "10", "TRACE_EXCLUDE_PATHS": "/health,/internal",
            "TRACE_USER_ID_SOURCES": "header,token",
        ])
        let configuration = try TraceConfiguration(settings: settings, dataDirectory: "/data")
        #expect(configuration.flushInterval == .milliseconds(250))
        #expect(configuration.bufferSize == 10)
        #expect(configuration.databasePath == "/data/traces.db")
        #expect(configuration.userIDSources == [.header, .token])
        #expect(configuration.records(path: "/api/posts"))
        #expect(!configuration.records(path: "/internal/users/authenticate"))
        #expect(throws: ConfigurationError.self) {
            try TraceConfiguration(settings: .fromEnvironment(["TRACE_FLUSH_INTERVAL": "soon"]), dataDirectory: "/data")
        }
        #expect(throws: ConfigurationError.self) {
            try TraceConfiguration(settings: .fromEnvironment(["TRACE_USER_ID_SOURCES": "token,cookie"]), dataDirectory: "/data")
        }
    }
}
