import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import TitaniumHTTP
import TitaniumLogging
import TitaniumMetrics

/// The load balancer's `/stats`: every target's `/stats` fetched in parallel (1.9 s each), its own
/// 10 s window of real `/api` traffic, and the system status. A host name that resolves to
/// several addresses (a headless Kubernetes service) is asked at each address, so every pod
/// appears. Answers are reused for 1 s so that many dashboards do not multiply backend load.
final class StatsAggregator: Sendable {
    let fanOut: InstanceFanOut
    let window: TrafficWindow
    let instance: String
    /// When this process started (seconds since the epoch), for `started_at` and `uptime_s`.
    let startTimeSeconds: Double
    let backends: BackendPool?
    let heartbeat: Heartbeat?
    /// The last answer, reused for 1 s, or the fan-out under way, which every caller joins: many
    /// dashboards polling cost the backends one fan-out per second at most.
    private enum Answer {
        case ready(at: ContinuousClock.Instant, body: ByteBuffer)
        case pending(Task<ByteBuffer, any Error>)
    }
    private let answer = Mutex<Answer?>(nil)

    init(
        fanOut: InstanceFanOut, window: TrafficWindow, instance: String, backends: BackendPool? = nil, heartbeat: Heartbeat? = nil,
        startTimeSeconds: Double = Date().timeIntervalSince1970
    ) {
        self.fanOut = fanOut
        self.window = window
        self.instance = instance
        self.backends = backends
        self.heartbeat = heartbeat
        self.startTimeSeconds = startTimeSeconds
    }

    func register(on router: Router<TitaniumRequestContext>) {
        router.get("/stats") { _, _ in try await self.response() }
    }

    func response() async throws -> Response {
        let pending: Task<ByteBuffer, any Error> = self.answer.withLock { answer in
            switch answer {
            case .ready(let at, let body) where at.duration(to: .now) < .seconds(1):
                return Task { body }
            case .pending(let task):
                return task
            default:
                let task = Task {
                    do {
                        let body = ByteBuffer(bytes: try JSONResponseEncoding.encode(await self.collect()))
                        self.answer.withLock { $0 = .ready(at: .now, body: body) }
                        return body
                    } catch {
                        self.answer.withLock { $0 = nil }
                        throw error
                    }
                }
                answer = .pending(task)
                return task
            }
        }
        return Self.json(try await pending.value)
    }

    static func json(_ body: ByteBuffer) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"], body: .init(byteBuffer: body))
    }

    struct Entry: Encodable, Sendable {
        var name: String
        var url: String
        var status: String
        var error: String?
        var latency_ms: Double
        var stats: ServiceStats?
    }

    struct Aggregate: Encodable, Sendable {
        struct Status: Encodable, Sendable { var status: String }
        var service = "load-balancer"
        var system: Status
        /// Services with at least one instance ONLINE, this load balancer included (it answers).
        var active_services: Int
        /// Services in the table: this load balancer and every `STATS_TARGETS` name.
        var total_services: Int
        var database: Status
        var cache: Status
        var instance: String
        var started_at: String
        var uptime_s: Double
        var window_s: Int
        /// Real `/api` requests since start.
        var requests_total: Int
        var requests_per_second: Double
        var avg_response_time_ms: Double
        var p95_ms: Double
        var p99_ms: Double
        var success_rate: Double
        /// 1 − `success_rate`: the share of real `/api` requests answered 5xx, as every service reports it.
        var error_rate: Double
        /// Real `/api` requests answered 429 per second (rate limited: shown apart, not failures).
        var rate_limited_per_second: Double
        var has_real_traffic: Bool
        var services: [Entry]
        /// The gateway replicas this load balancer sends `/api` traffic to.
        var backends: [BackendPool.Report]
        var generated_at: String
    }

    func collect() async -> Aggregate {
        let entries = await self.fanOut.gather("/stats", as: ServiceStats.self).map { answer in
            switch answer.result {
            case .success(let stats):
                Entry(name: answer.target.name, url: answer.target.url, status: "ONLINE", latency_ms: answer.latency.milliseconds.rounded(), stats: stats)
            case .failure(let error):
                Entry(name: answer.target.name, url: answer.target.url, status: "OFFLINE", error: "\(error)", latency_ms: answer.latency.milliseconds.rounded())
            }
        }
        let online = entries.filter { $0.status == "ONLINE" }
        let onlineNames = Set(online.map(\.name))
        let names = Set(self.fanOut.targets.map(\.name))
        let database = Self.dependency("database", in: online)
        let cache = Self.dependency("cache", in: online)
        let system: String =
            onlineNames.isEmpty && !names.isEmpty ? "down"
            : (online.count < entries.count || database == "OFFLINE" || cache == "OFFLINE") ? "degraded" : "healthy"
        let snapshot = self.window.snapshot()
        return Aggregate(
            system: .init(status: system),
            active_services: onlineNames.subtracting(["load-balancer"]).count + 1,
            total_services: names.subtracting(["load-balancer"]).count + 1,
            database: .init(status: database),
            cache: .init(status: cache),
            instance: self.instance,
            started_at: RFC3339.format(epochSeconds: self.startTimeSeconds),
            uptime_s: (Date().timeIntervalSince1970 - self.startTimeSeconds).rounded(toPlaces: 3),
            window_s: snapshot.windowSeconds,
            requests_total: snapshot.totalRequests,
            requests_per_second: snapshot.requestsPerSecond,
            avg_response_time_ms: snapshot.averageMilliseconds.rounded(toPlaces: 3),
            p95_ms: snapshot.p95Milliseconds,
            p99_ms: snapshot.p99Milliseconds,
            success_rate: snapshot.requests == 0 ? 1 : 1 - snapshot.errorRate,
            error_rate: snapshot.errorRate.rounded(toPlaces: 4),
            rate_limited_per_second: TrafficWindow.perSecond(snapshot.rateLimited, windowSeconds: snapshot.windowSeconds),
            // Real /api requests or a WebSocket heartbeat within the window.
            has_real_traffic: (snapshot.secondsSinceLast.map { $0 < Double(snapshot.windowSeconds) } ?? false)
                || (self.heartbeat?.isActive(within: .seconds(snapshot.windowSeconds)) ?? false),
            services: entries,
            backends: self.backends?.report ?? [],
            generated_at: RFC3339.now()
        )
    }

    /// ONLINE when every answering service that reports the dependency has it ONLINE, OFFLINE
    /// when one has it OFFLINE, UNKNOWN when none reports it.
    static func dependency(_ name: String, in entries: [Entry]) -> String {
        let states = entries.compactMap { $0.stats?.dependencies[name]?.status }
        if states.isEmpty { return "UNKNOWN" }
        return states.contains(.offline) ? "OFFLINE" : "ONLINE"
    }
}
