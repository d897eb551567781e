import Foundation
import Hummingbird
import HummingbirdBcrypt
import NIOPosix
import Prometheus
import TitaniumAuth
import TitaniumHTTP
import TitaniumTrace
import TitaniumSQLite
import TitaniumRedis
import TitaniumMetrics

/// Builds the user-service application: SQLite store, Redis cache, routes, checks.
func buildApplication(kit: ServiceKit, settings: Settings) async throws -> some ApplicationProtocol {
    let configuration = try UserServiceConfiguration(common: kit.configuration, settings: settings)
    let store = try UserStore(path: configuration.databasePath)
    let redis = RedisClient(configuration: configuration.redis)
    let cache = UserCache(redis: redis, ttlSeconds: configuration.cacheTTLSeconds, registry: kit.registry, logger: kit.logger)
    let registrations = kit.registry.makeCounter(named: "user_registrations_total", help: "Users registered.")

    let cost = UInt8(configuration.bcryptCost)
    let decoyHash = try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(UUID().uuidString, cost: cost) }

    let client = kit.makeHTTPClient()
    let verifier = TokenVerifier.remote(url: configuration.jwksURL, policy: configuration.policy, client: client)
    let kit = try kit.recordingTraces(settings: settings, options: .init(tokenSubject: { try? await verifier.claims(for: $0).subject }))

    let router = kit.makeRouter()
    UserController(
        store: store, cache: cache, bcryptCost: configuration.bcryptCost, registrations: registrations, decoyHash: decoyHash,
        verifier: verifier
    ).register(on: router)

    let checks = [
        DependencyCheck(name: "database", probe: { try await store.pool.ping() }),
        // A down cache leaves the service ready (degraded): reads fall back to SQLite.
        DependencyCheck(name: "cache", critical: false) {
            await redis.ping() ? .online : DependencyStatus(.offline, error: redis.lastError ?? "unreachable")
        },
    ]
    return kit.makeApplication(
        router: router,
        checks: checks,
        details: {
            var details: [String: JSONValue] = [:]
            if let users = try? await store.count() { details["users"] = .number(Double(users)) }
            details["cache_hit_ratio"] = cache.hitRatio.map { .number(($0 * 1000).rounded() / 1000) } ?? .null
            return details
        },
        services: [redis, client]
    )
}
