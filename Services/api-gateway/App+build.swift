import Hummingbird
import Prometheus
import TitaniumHTTP
import TitaniumTrace
import TitaniumRedis

/// Builds the api-gateway: `/api/auth/*` → auth-service, `/api/users/*` → user-service,
/// `/api/posts*` and `/blog/*` → blog-service, streamed through ``ReverseProxy``. Anything
/// else, `/internal/*` included, is the 404 JSON error. Sensitive routes are rate limited first.
func buildApplication(kit: ServiceKit, settings: Settings) async throws -> some ApplicationProtocol {
    let configuration = try GatewayConfiguration(settings: settings)
    let kit = try kit.recordingTraces(settings: settings)
    let client = kit.makeHTTPClient()
    let proxy = ReverseProxy(client: client)
    let redis = RedisClient(configuration: configuration.redis)
    let router = kit.makeRouter()
    let registry = kit.registry
    let rejections: @Sendable (String) -> Counter = { group in
        registry.makeCounter(name: "rate_limit_rejections_total", labels: [("route", group)], help: "Requests answered 429, by route group.")
    }
    // Every group's series exists from the start, at 0, so that rate() sees the first rejection.
    for rule in configuration.rateLimits { _ = rejections(rule.group) }
    router.add(middleware: RateLimitMiddleware(
        redis: redis,
        rules: configuration.rateLimits,
        clientIP: ClientIPResolver(trusted: configuration.trustedProxies),
        rejections: rejections,
        errors: registry.makeCounter(name: "rate_limit_errors_total", help: "Rate-limit checks that failed (Redis unavailable); the request passed."),
        logger: kit.logger
    ))
    let routes: [(paths: [RouterPath], upstream: UpstreamPool)] = [
        (["/api/auth", "/api/auth/**"], configuration.auth),
        (["/api/users", "/api/users/**"], configuration.users),
        (["/api/posts", "/api/posts/**", "/blog", "/blog/**"], configuration.blog),
    ]
    for (paths, upstream) in routes {
        router.onAnyMethod(paths) { request, context in
            try await proxy.forward(request, context: context, to: upstream)
        }
    }
    return kit.makeApplication(router: router, services: [redis, client])
}
