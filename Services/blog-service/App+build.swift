import Hummingbird
import Prometheus
import TitaniumAuth
import TitaniumHTTP
import TitaniumTrace
import TitaniumPostgres
import TitaniumMetrics

/// Builds the blog-service application: its store (SQLite or PostgreSQL), token verifier (key set from
/// auth-service, cached), routes, the sample page and checks.
func buildApplication(kit: ServiceKit, settings: Settings) async throws -> some ApplicationProtocol {
    let configuration = try BlogServiceConfiguration(common: kit.configuration, settings: settings)
    let (store, pool) = try await openPostStore(configuration.database, logger: kit.logger)
    let client = kit.makeHTTPClient()
    let verifier = TokenVerifier.remote(url: configuration.jwksURL, policy: configuration.policy, client: client)
    let kit = try kit.recordingTraces(settings: settings, options: .init(verifyToken: { await verifier.credentials(for: $0) }))

    let pages = PageCache(byteBudget: configuration.pageCacheBytes)
    let router = buildRouter(
        kit: kit, store: store, pages: pages, verifier: verifier,
        passwords: PasswordVersions(client: client, userServiceURL: configuration.userServiceURL)
    )

    return kit.makeApplication(
        router: router,
        checks: [DependencyCheck(name: "database", probe: { try await store.ping() })],
        details: {
            var details: [String: JSONValue] = ["page_cache_bytes": .number(Double(pages.bytes))]
            if let posts = try? await store.count() { details["posts"] = .number(Double(posts)) }
            return details
        },
        services: [client] + (pool.map { [$0] } ?? [])
    )
}

/// The post routes and the sample page on the kit's router, from what a test can swap: the
/// store (any database) and its page cache, the verifier (a local issuer's will do) and
/// where password versions are asked (a stand-in user-service).
func buildRouter(
    kit: ServiceKit, store: any PostStore, pages: PageCache, verifier: TokenVerifier, passwords: PasswordVersions
) -> Router<TitaniumRequestContext> {
    let router = kit.makeRouter()
    PostController(
        store: store,
        pages: pages,
        verifier: verifier,
        passwords: passwords,
        created: kit.registry.makeCounter(named: "posts_created_total", help: "Posts created."),
        updated: kit.registry.makeCounter(named: "posts_updated_total", help: "Posts updated."),
        deleted: kit.registry.makeCounter(named: "posts_deleted_total", help: "Posts deleted.")
    ).register(on: router)
    SamplePage.register(on: router)
    return router
}
