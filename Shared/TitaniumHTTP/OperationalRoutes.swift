import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TitaniumLogging
import TitaniumMetrics

/// The body of `GET /health/ready`.
public struct Readiness: Codable, Sendable {
    /// ready, degraded (a non-critical dependency is down), not_ready, or draining (SIGTERM received).
    public var status: String
    public var checks: [String: DependencyStatus]
}

/// The body of `GET /stats`.
public struct ServiceStats: Codable, Sendable {
    public var service: String
    public var instance: String
    public var version: String
    public var started_at: String
    public var uptime_s: Double
    public var requests_total: Int
    public var window_s: Int
    public var requests_per_second: Double
    public var avg_response_time_ms: Double
    public var p95_ms: Double
    public var p99_ms: Double
    public var error_rate: Double
    /// 429 answers per second over the window (not counted as errors).
    public var rate_limited_per_second: Double
    public var dependencies: [String: DependencyStatus]
    public var details: [String: JSONValue]?
    /// The fault being injected (``Faults``), so that no screen shows it as an organic failure.
    public var faults: Faults.Active?
}

/// `/health/live`, `/health/ready`, `/stats` and `/metrics`, the same on every service.
public struct OperationalRoutes<Context: IdentifiedRequestContext>: Sendable {
    let kit: ServiceKit
    let checks: [DependencyCheck]
    let details: @Sendable () async -> [String: JSONValue]?

    public init(kit: ServiceKit, checks: [DependencyCheck], details: @escaping @Sendable () async -> [String: JSONValue]? = { nil }) {
        self.kit = kit
        self.checks = checks
        self.details = details
    }

    public func register(on router: Router<Context>) {
        router.get("/health/live") { _, _ in
            JSONResponse(["status": "alive"])
        }
        router.get("/health/ready") { _, _ in
            try await self.readiness()
        }
        // A service with its own `/stats` (the load balancer's aggregate) keeps it.
        if !router.hasRoute(.get, "/stats") {
            router.get("/stats") { _, _ in try await self.stats() }
        }
        router.get("/metrics") { _, _ in
            let bytes = self.kit.exposition.render()
            return Response(
                status: .ok,
                headers: [.contentType: MetricsExposition.contentType],
                body: .init(byteBuffer: ByteBuffer(bytes: bytes))
            )
        }
    }

    func runChecks() async -> [String: DependencyStatus] {
        await withTaskGroup(of: (String, DependencyStatus).self) { group in
            for check in self.checks {
                group.addTask { (check.name, await check.run()) }
            }
            var results: [String: DependencyStatus] = [:]
            for await (name, status) in group { results[name] = status }
            return results
        }
    }

    func readiness() async throws -> Response {
        if self.kit.drain.isDraining {
            return try JSONResponse(Readiness(status: "draining", checks: [:])).response(status: .serviceUnavailable)
        }
        let results = await self.runChecks()
        let criticalDown = self.checks.contains { $0.critical && results[$0.name]?.status != .online }
        let anyDown = results.values.contains { $0.status != .online }
        let body = Readiness(status: criticalDown ? "not_ready" : (anyDown ? "degraded" : "ready"), checks: results)
        return try JSONResponse(body).response(status: criticalDown ? .serviceUnavailable : .ok)
    }

    public func makeStats() async -> ServiceStats {
        let snapshot = self.kit.window.snapshot()
        return ServiceStats(
            service: self.kit.configuration.service,
            instance: self.kit.configuration.instance,
            version: ServiceConfiguration.version,
            started_at: RFC3339.format(epochSeconds: self.kit.process.startTimeSeconds),
            uptime_s: (Date().timeIntervalSince1970 - self.kit.process.startTimeSeconds).rounded(toPlaces: 3),
            requests_total: snapshot.totalRequests,
            window_s: snapshot.windowSeconds,
            requests_per_second: snapshot.requestsPerSecond.rounded(toPlaces: 3),
            avg_response_time_ms: snapshot.averageMilliseconds.rounded(toPlaces: 3),
            p95_ms: snapshot.p95Milliseconds.rounded(toPlaces: 3),
            p99_ms: snapshot.p99Milliseconds.rounded(toPlaces: 3),
            error_rate: snapshot.errorRate.rounded(toPlaces: 4),
            rate_limited_per_second: TrafficWindow.perSecond(snapshot.rateLimited, windowSeconds: snapshot.windowSeconds),
            dependencies: await self.runChecks(),
            details: await self.details(),
            faults: self.kit.faults.current
        )
    }

    func stats() async throws -> Response {
        try JSONResponse(await self.makeStats()).response(status: .ok)
    }
}

extension Double {
    /// Rounded to `places` decimals, as every `/stats` figure is.
    public func rounded(toPlaces places: Int) -> Double {
        let factor = pow(10, Double(places))
        return (self * factor).rounded() / factor
    }
}
