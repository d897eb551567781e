import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOConcurrencyHelpers
import NIOCore
import TestSupport
import Testing
import TitaniumHTTP
import TitaniumMetrics

@testable import LoadBalancer

/// The load balancer's `/stats`: every target's `/stats` gathered through ``InstanceFanOut``
/// (stand-in services in this process), each dependency's state across them, the system status.
@Suite struct StatsAggregatorTests {
    /// A service's `/stats` answer with `dependencies` (name → ONLINE or OFFLINE).
    static func statsJSON(_ service: String, _ dependencies: [String: String]) -> String {
        let states = dependencies.map { #""\#($0.key)":{"status":"\#($0.value)"}"# }.joined(separator: ",")
        return #"""
            {"service":"\#(service)","instance":"\#(service)-1","version":"test","started_at":"2026-01-01T00:00:00Z","uptime_s":1,
            "requests_total":0,"window_s":10,"requests_per_second":0,"avg_response_time_ms":0,"p95_ms":0,"p99_ms":0,"error_rate":0,
            "rate_limited_per_second":0,"dependencies":{\#(states)}}
            """#
    }

    /// A stand-in service answering `/stats`, counting the calls in `calls`.
    static func service(_ name: String, _ dependencies: [String: String], calls: NIOLockedValueBox<Int> = .init(0)) -> Router<BasicRequestContext> {
        let router = Router()
        let body = Self.statsJSON(name, dependencies)
        router.get("/stats") { _, _ -> Response in
            calls.withLockedValue { $0 += 1 }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        return router
    }

    static func entry(_ name: String, _ dependencies: [String: String]?) throws -> StatsAggregator.Entry {
        let stats = try dependencies.map { try JSONDecoder().decode(ServiceStats.self, from: Data(Self.statsJSON(name, $0).utf8)) }
        return StatsAggregator.Entry(name: name, url: "http://\(name)", status: stats == nil ? "OFFLINE" : "ONLINE", latency_ms: 1, stats: stats)
    }

    @Test func aDependencyIsOfflineWhenAnyServiceReportsItOffline() throws {
        #expect(StatsAggregator.dependency("database", in: []) == "UNKNOWN")
        // A service that did not answer reports nothing.
        #expect(StatsAggregator.dependency("database", in: [try Self.entry("auth-service", nil)]) == "UNKNOWN")
        let online = [try Self.entry("user-service", ["database": "ONLINE", "cache": "ONLINE"]), try Self.entry("blog-service", ["database": "ONLINE"])]
        #expect(StatsAggregator.dependency("database", in: online) == "ONLINE")
        #expect(StatsAggregator.dependency("cache", in: online) == "ONLINE")
        #expect(StatsAggregator.dependency("queue", in: online) == "UNKNOWN")
        let oneDown = online + [try Self.entry("blog-service", ["database": "OFFLINE"])]
        #expect(StatsAggregator.dependency("database", in: oneDown) == "OFFLINE")
        #expect(StatsAggregator.dependency("cache", in: oneDown) == "ONLINE")
    }

    static func aggregator(_ targets: [String: Int], client: OutboundHTTPClient, timeout: Duration = .milliseconds(1900)) -> StatsAggregator {
        let fanOut = InstanceFanOut(
            targets: targets.sorted { $0.key < $1.key }.map { StatsTarget(name: $0.key, url: "http://127.0.0.1:\($0.value)") },
            client: client, perTargetTimeout: timeout
        )
        return StatsAggregator(fanOut: fanOut, window: TrafficWindow(windowSeconds: 10), instance: "lb-test")
    }

    /// An outbound client for `body`, shut down after it.
    static func withClient(_ body: (OutboundHTTPClient) async throws -> Void) async throws {
        let client = try makeTestKit(service: "load-balancer").makeHTTPClient()
        try await withTearDown { try await body(client) } tearDown: { try await client.client.shutdown() }
    }

    @Test func theSystemIsHealthyDegradedOrDown() async throws {
        let refused = try Ports.refused()
        try await withServer(Self.service("user-service", ["database": "ONLINE", "cache": "ONLINE"])) { users in
            try await withServer(Self.service("blog-service", ["database": "ONLINE"])) { blog in
                try await Self.withClient { client in
                    let all = await Self.aggregator(["user-service": users, "blog-service": blog], client: client).collect()
                    #expect(all.system.status == "healthy")
                    #expect(all.database.status == "ONLINE" && all.cache.status == "ONLINE")
                    // The load balancer counts itself: it answers.
                    #expect(all.active_services == 3 && all.total_services == 3)
                    #expect(all.services.map(\.name) == ["blog-service", "user-service"])
                    #expect(all.services.allSatisfy { $0.status == "ONLINE" && $0.stats != nil })

                    let partial = await Self.aggregator(["user-service": users, "blog-service": blog, "auth-service": refused], client: client).collect()
                    #expect(partial.system.status == "degraded")
                    #expect(partial.active_services == 3 && partial.total_services == 4)
                    let auth = try #require(partial.services.first { $0.name == "auth-service" })
                    #expect(auth.status == "OFFLINE" && auth.stats == nil && auth.error?.isEmpty == false)

                    let none = await Self.aggregator(["auth-service": refused], client: client).collect()
                    #expect(none.system.status == "down")
                    #expect(none.active_services == 1 && none.total_services == 2)
                    #expect(none.database.status == "UNKNOWN")
                    #expect(none.requests_total == 0 && none.error_rate == 0 && none.success_rate == 1 && !none.has_real_traffic)
                }
            }
        }
    }

    /// A target that accepts and never answers is OFFLINE after the per-target timeout: it does
    /// not hold the answer up.
    @Test func aHangingTargetIsCutOffAtItsTimeout() async throws {
        let silent = try SilentServer()
        try await Self.withClient { client in
            let start = ContinuousClock.now
            let stats = await Self.aggregator(["user-service": silent.port], client: client, timeout: .milliseconds(300)).collect()
            let elapsed = start.duration(to: .now)
            // Bounded well above 300 ms: on a loaded 2-core machine the fan-out itself took 1.6 s once.
            #expect(elapsed >= .milliseconds(300) && elapsed < .seconds(3), "\(elapsed)")
            #expect(stats.services.first?.status == "OFFLINE")
            // The client's deadline or the fan-out's own timer, whichever fires first.
            #expect(stats.services.first?.error?.isEmpty == false, "\(stats.services)")
            #expect((stats.services.first?.latency_ms ?? 0) >= 300)
        }
        _ = silent
    }
}
