import Foundation
import Hummingbird
import HummingbirdBcrypt
import NIOPosix
import Prometheus
import TitaniumAuth
import TitaniumHTTP
import TitaniumTrace
import TitaniumPostgres
import TitaniumRedis
import TitaniumMetrics

/// Builds the user-service application: its store (SQLite or PostgreSQL), Redis cache, routes, checks.
func buildApplication(kit: ServiceKit, settings: Settings) async throws -> some ApplicationProtocol {
    let configuration = try UserServiceConfiguration(common: kit.configuration, settings: settings)
    let (store, pool) = try await openUserStore(configuration.database, logger: kit.logger)
    let redis = RedisClient(configuration: configuration.redis, severed: kit.faults.severance(of: "cache"))
    let cache = UserCache(redis: redis, ttlSeconds: configuration.cacheTTLSeconds, registry: kit.registry, logger: kit.logger)
    let client = kit.makeHTTPClient()
    let verifier = TokenVerifier.remote(url: configuration.jwksURL, policy: configuration.policy, client: client)
    let kit = try kit.recordingTraces(settings: settings, options: .init(verifyToken: { await verifier.credentials(for: $0) }))

    let router = try await buildRouter(kit: kit, store: store, cache: cache, verifier: verifier, bcryptCost: configuration.bcryptCost)

    let checks = [
        DependencyCheck(name: "database", probe: { try await store.ping() }),
        // A down cache leaves the service ready (degraded): reads fall back to the database.
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
        services: [redis, client] + (pool.map { [$0] } ?? [])
    )
}

/// The user routes on the kit's router, from what a test can swap: the store (any database),
/// the cache (its Redis may be down: it fails open), the verifier (a local issuer's will do).
func buildRouter(
    kit: ServiceKit, store: any UserStore, cache: UserCache, verifier: TokenVerifier, bcryptCost: Int
) async throws -> Router<TitaniumRequestContext> {
    // Verified for unknown users, so that a login costs the same whether or not the user exists.
    let cost = UInt8(bcryptCost)
    let decoyHash = try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(UUID().uuidString, cost: cost) }
    let router = kit.makeRouter()
    UserController(
        store: store, cache: cache, bcryptCost: bcryptCost,
        registrations: kit.registry.makeCounter(named: "user_registrations_total", help: "Users registered."),
        decoyHash: decoyHash, verifier: verifier
    ).register(on: router)
    return router
}
