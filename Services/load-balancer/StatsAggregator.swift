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

/// One `/stats` endpoint to ask: a service name and its base URL.
struct StatsTarget: Sendable, Equatable {
    var name: String
    var url: String

    /// `name=url` pairs, comma-separated.
    static func parse(_ entries: [String]) throws(ConfigurationError) -> [StatsTarget] {
        try entries.map { entry throws(ConfigurationError) in
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, parts[1].hasPrefix("http://") || parts[1].hasPrefix("https://") else {
                throw ConfigurationError(key: "stats.targets", value: entry, expected: "name=http://host:port pairs, comma-separated")
            }
            return StatsTarget(name: parts[0], url: parts[1].hasSuffix("/") ? String(parts[1].dropLast()) : parts[1])
        }
    }
}

/// The load balancer's `/stats`: every target's `/stats` fetched in parallel (1.9 s each), its own
/// 10 s window of real `/api` traffic, and the system status. A host name that resolves to
/// several addresses (a headless Kubernetes service) is asked at each address, so every pod
/// appears. Answers are reused for 1 s so that many dashboards do not multiply backend load.
final class StatsAggregator: Sendable {
    let targets: [StatsTarget]
    let client: HTTPClient
    let window: TrafficWindow
    let instance: String
    /// When this process started (seconds since the epoch), for `started_at` and `uptime_s`.
    let startTimeSeconds: Double
    let perTargetTimeout: Duration
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
        targets: [StatsTarget], client: HTTPClient, window: TrafficWindow, instance: String,
        // 1.9 s rather than 2: what follows the fan-out (the window, encoding, writing) and a busy
        // machine's late timer wake-ups must still fit in the 2.1 s the answer is promised in.
        perTargetTimeout: Duration = .milliseconds(1900), backends: BackendPool? = nil, heartbeat: Heartbeat? = nil,
        startTimeSeconds: Double = Date().timeIntervalSince1970
    ) {
        self.startTimeSeconds = startTimeSeconds
        self.backends = backends
        self.heartbeat = heartbeat
        self.targets = targets
        self.client = client
        self.window = window
        self.instance = instance
        self.perTargetTimeout = perTargetTimeout
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
        var stats: JSONValue?
    }

    struct Aggregate: Encodable, Sendable {
        struct Status: Encodable, Sendable { var status: String }
        var service = "load-balancer"
        var system: Status
        var active_services: Int
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
        /// Real `/api` requests answered 429 per second (rate limited: shown apart, not failures).
        var rate_limited_per_second: Double
        var has_real_traffic: Bool
        var services: [Entry]
        /// The gateway replicas this load balancer sends `/api` traffic to.
        var backends: [BackendPool.Report]
        var generated_at: String
    }

    func collect() async -> Aggregate {
        let instances = await self.expand()
        let entries = await withTaskGroup(of: (Int, Entry).self) { group in
            for (index, target) in instances.enumerated() {
                group.addTask { (index, await self.fetch(target)) }
            }
            var results: [(Int, Entry)] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }.map(\.1)
        }
        let online = entries.filter { $0.status == "ONLINE" }
        let onlineNames = Set(online.map(\.name))
        let names = Set(self.targets.map(\.name))
        let database = Self.dependency("database", in: online)
        let cache = Self.dependency("cache", in: online)
        let system: String =
            onlineNames.isEmpty && !names.isEmpty ? "down"
            : (online.count < entries.count || database == "OFFLINE" || cache == "OFFLINE") ? "degraded" : "healthy"
        let snapshot = self.window.snapshot()
        return Aggregate(
            system: .init(status: system),
            active_services: onlineNames.count,
            total_services: names.count,
            database: .init(status: database),
            cache: .init(status: cache),
            instance: self.instance,
            started_at: RFC3339.format(epochSeconds: self.startTimeSeconds),
            uptime_s: ((Date().timeIntervalSince1970 - self.startTimeSeconds) * 1000).rounded() / 1000,
            window_s: snapshot.windowSeconds,
            requests_total: snapshot.totalRequests,
            requests_per_second: snapshot.requestsPerSecond,
            avg_response_time_ms: (snapshot.averageMilliseconds * 1000).rounded() / 1000,
            p95_ms: snapshot.p95Milliseconds,
            p99_ms: snapshot.p99Milliseconds,
            success_rate: snapshot.requests == 0 ? 1 : 1 - snapshot.errorRate,
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
        let states = entries.compactMap { $0.stats?["dependencies"]?[name]?["status"]?.stringValue }
        if states.isEmpty { return "UNKNOWN" }
        return states.contains("OFFLINE") ? "OFFLINE" : "ONLINE"
    }

    private func fetch(_ target: StatsTarget) async -> Entry {
        let start = ContinuousClock.now
        let outcome: Result<JSONValue, any Error> = await self.fetchJSON(target.url + "/stats")
        let elapsed = start.duration(to: .now)
        let milliseconds = (Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15).rounded()
        switch outcome {
        case .success(let stats):
            return Entry(name: target.name, url: target.url, status: "ONLINE", latency_ms: milliseconds, stats: stats)
        case .failure(let error):
            return Entry(name: target.name, url: target.url, status: "OFFLINE", error: "\(error)", latency_ms: milliseconds)
        }
    }

    /// `url`'s JSON body, decoded, or why not: an error status, or no answer within the
    /// per-target timeout (the answer is abandoned, so a hanging target never holds the caller).
    func fetchJSON<Body: Decodable & Sendable>(_ url: String, headers: [(String, String)] = []) async -> Result<Body, any Error> {
        let timeout = self.perTargetTimeout
        return await withTaskGroup(of: Result<Body, any Error>?.self) { group in
            group.addTask {
                do {
                    var request = HTTPClientRequest(url: url)
                    for (name, value) in headers { request.headers.add(name: name, value: value) }
                    let response = try await self.client.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
                    guard response.status == .ok else { throw StatsError("answered \(response.status.code)") }
                    let body = try await response.body.collect(upTo: 8 << 20)
                    return .success(try JSONDecoder().decode(Body.self, from: Data(body.readableBytesView)))
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .failure(StatsError("no answer within \(timeout)"))
        }
    }

    /// One target per address when a host name resolves to several IPv4 addresses.
    func expand() async -> [StatsTarget] {
        var expanded: [StatsTarget] = []
        for target in self.targets {
            guard let components = URLComponents(string: target.url), let host = components.host,
                !host.isEmpty, host.first?.isNumber == false, host != "localhost"
            else {
                expanded.append(target)
                continue
            }
            let addresses = (try? await NIOThreadPool.singleton.runIfActive { Self.resolveIPv4(host) }) ?? []
            if addresses.count > 1 {
                for address in addresses {
                    var copy = components
                    copy.host = address
                    expanded.append(StatsTarget(name: target.name, url: copy.string ?? target.url))
                }
            } else {
                expanded.append(target)
            }
        }
        return expanded
    }

    static func resolveIPv4(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            if let address = info.pointee.ai_addr {
                var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { inet in
                    var addr = inet.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &addr, &text, socklen_t(INET_ADDRSTRLEN))
                }
                let string = String(decoding: text.prefix { $0 != 0 }.map(UInt8.init(bitPattern:)), as: UTF8.self)
                if !addresses.contains(string) { addresses.append(string) }
            }
            cursor = info.pointee.ai_next
        }
        return addresses
    }
}

struct StatsError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

