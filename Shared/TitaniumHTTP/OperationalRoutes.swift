import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TitaniumLogging
import TitaniumMetrics

/// ONLINE or OFFLINE, as `/stats` and `/health/ready` report a dependency.
public struct DependencyStatus: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        case online = "ONLINE"
        case offline = "OFFLINE"
    }
    public var status: State
    public var error: String?
    public var latency_ms: Double?

    public init(_ status: State, error: String? = nil, latencyMilliseconds: Double? = nil) {
        self.status = status
        self.error = error
        self.latency_ms = latencyMilliseconds
    }

    public static let online = DependencyStatus(.online)
}

/// One dependency a service checks for `/health/ready` and reports in `/stats`.
/// A critical dependency that is OFFLINE makes the service unready (503); a non-critical one
/// (a cache) only makes it "degraded".
public struct DependencyCheck: Sendable {
    public var name: String
    public var critical: Bool
    public var timeout: Duration
    public var check: @Sendable () async -> DependencyStatus

    public init(name: String, critical: Bool = true, timeout: Duration = .seconds(1), check: @escaping @Sendable () async -> DependencyStatus) {
        self.name = name
        self.critical = critical
        self.timeout = timeout
        self.check = check
    }

    /// Runs the check, reporting OFFLINE if it does not answer within `timeout`.
    public func run() async -> DependencyStatus {
        let start = ContinuousClock.now
        let result = await withTaskGroup(of: DependencyStatus?.self) { group in
            group.addTask { await self.check() }
            group.addTask {
                try? await Task.sleep(for: self.timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        let elapsed = start.duration(to: .now)
        var status = result ?? DependencyStatus(.offline, error: "no answer within \(self.timeout)")
        status.latency_ms = status.latency_ms ?? (Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
        return status
    }

    /// A directory the service must be able to write to.
    public static func writableDirectory(name: String = "data_dir", path: String) -> DependencyCheck {
        DependencyCheck(name: name) {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
                return DependencyStatus(.offline, error: "\(path) does not exist")
            }
            guard FileManager.default.isWritableFile(atPath: path) else {
                return DependencyStatus(.offline, error: "\(path) is not writable")
            }
            return .online
        }
    }
}

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
            details: await self.details()
        )
    }

    func stats() async throws -> Response {
        try JSONResponse(await self.makeStats()).response(status: .ok)
    }
}

/// A JSON body with the right content type.
public struct JSONResponse<Body: Encodable & Sendable>: ResponseGenerator {
    public let body: Body
    public init(_ body: Body) { self.body = body }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        try self.response(status: .ok)
    }

    public func response(status: HTTPResponse.Status) throws -> Response {
        .json(ByteBuffer(bytes: try JSONResponseEncoding.encoder.encode(self.body)), status: status)
    }
}

extension Response {
    /// A JSON body encoded already (a cached answer), with the content type every JSON answer has.
    public static func json(_ body: ByteBuffer, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: body))
    }
}

/// The JSON encoding of every response body: sorted keys, unescaped slashes.
public enum JSONResponseEncoding {
    public static func encode(_ value: some Encodable) throws -> Data {
        try self.encoder.encode(value)
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}

extension Double {
    func rounded(toPlaces places: Int) -> Double {
        let factor = pow(10, Double(places))
        return (self * factor).rounded() / factor
    }
}
