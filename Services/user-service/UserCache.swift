import Foundation
import Logging
import Prometheus
import Synchronization
import TitaniumRedis
import TitaniumMetrics

/// Cache-aside for users by id in Redis, fail-open: when Redis is down, reads and writes go to
/// SQLite and the failure is counted (`cache_requests_total{result="error"}`), never returned.
/// The cached record holds the email: it is the same for every caller, so the controller decides
/// per request what of it to show (``PublicUser``).
final class UserCache: Sendable {
    let redis: RedisClient
    let ttlSeconds: Int
    let logger: Logger
    private let hits: Counter
    private let misses: Counter
    private let errors: Counter
    private let counts = Mutex<(hits: Int, misses: Int)>((0, 0))

    init(redis: RedisClient, ttlSeconds: Int, registry: PrometheusCollectorRegistry, logger: Logger) {
        self.redis = redis
        self.ttlSeconds = ttlSeconds
        self.logger = logger
        let help = "User cache look-ups by result: hit, miss, or error (Redis unavailable; served from SQLite)."
        self.hits = registry.makeCounter(named: "cache_requests_total", labels: [("result", "hit")], help: help)
        self.misses = registry.makeCounter(named: "cache_requests_total", labels: [("result", "miss")], help: help)
        self.errors = registry.makeCounter(named: "cache_requests_total", labels: [("result", "error")], help: help)
    }

    static func key(_ id: Int64) -> String { "user:\(id)" }

    /// The user from the cache, or from `load` (then cached). Redis errors fall through to `load`.
    func user(id: Int64, load: () async throws -> UserRecord?) async throws -> (user: UserRecord?, cache: String) {
        do {
            if let cached = try await self.redis.get(Self.key(id)),
                let user = try? JSONDecoder().decode(UserRecord.self, from: Data(cached.utf8))
            {
                self.hits.increment()
                self.counts.withLock { $0.hits += 1 }
                return (user, "hit")
            }
            self.misses.increment()
            self.counts.withLock { $0.misses += 1 }
        } catch {
            self.errors.increment()
            self.logger.debug("cache read failed", metadata: ["error": "\(error)"])
            return (try await load(), "error")
        }
        let user = try await load()
        if let user { await self.store(user) }
        return (user, "miss")
    }

    func store(_ user: UserRecord) async {
        guard let data = try? JSONEncoder().encode(user) else { return }
        do {
            try await self.redis.set(Self.key(user.id), String(decoding: data, as: UTF8.self), ttlSeconds: self.ttlSeconds)
        } catch {
            self.logger.debug("cache write failed", metadata: ["error": "\(error)"])
        }
    }

    /// Drops a user from the cache after a change.
    func invalidate(id: Int64) async {
        do {
            try await self.redis.delete(Self.key(id))
        } catch {
            self.logger.debug("cache invalidation failed", metadata: ["error": "\(error)"])
        }
    }

    /// Hits divided by hits and misses since start (nil before the first look-up).
    var hitRatio: Double? {
        let (hits, misses) = self.counts.withLock { ($0.hits, $0.misses) }
        return hits + misses == 0 ? nil : Double(hits) / Double(hits + misses)
    }
}
