import HTTPTypes
import Hummingbird
import NIOHTTP1
import Prometheus
import TitaniumHTTP
import TitaniumProxy
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
    // The same routes without a rate limit are forwarded below Hummingbird (``Forwarder``): no
    // task and no AsyncHTTPClient round per request. Rate-limited requests (they wait for
    // Redis first) and everything unrouted take the router above.
    let upstreams = try [
        ("auth.service.url", configuration.auth), ("user.service.url", configuration.users), ("blog.service.url", configuration.blog),
    ].map { key, pool throws(ConfigurationError) in try ForwardingUpstream(name: pool.name, urls: pool.baseURLs, key: key) }
    let prefixes: [(prefix: String, upstream: Int)] = [("/api/auth", 0), ("/api/users", 1), ("/api/posts", 2), ("/blog", 2)]
    let rules = configuration.rateLimits
    let forwarding = Forwarding(upstreams: upstreams, kit: kit) { head in
        guard !head.headers.contains(name: "upgrade") else { return nil }
        let path = head.uri.firstIndex(of: "?").map { String(head.uri[..<$0]) } ?? head.uri
        let method = HTTPRequest.Method(head.method.rawValue)
        guard let (prefix, upstream) = prefixes.first(where: { Forwarding.path(path, isUnder: $0.prefix) }),
            let method, !rules.contains(where: { $0.matches(method, path) })
        else { return nil }
        return ForwardingRoute(upstream: upstream, label: path == prefix ? prefix : prefix + "/**")
    }
    return kit.makeApplication(router: router, server: .http1(configuration: forwarding.http1Configuration), services: [redis, client])
}
