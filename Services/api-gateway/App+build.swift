import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import NIOHTTP1
import Prometheus
import TitaniumAuth
import TitaniumHTTP
import TitaniumProxy
import TitaniumTrace
import TitaniumRedis
import TitaniumMetrics

/// Builds the api-gateway: `/api/auth/*` → auth-service, `/api/users/*` → user-service,
/// `/api/posts*` and `/blog/*` → blog-service, streamed through ``ReverseProxy``. Anything
/// else, `/internal/*` included, is the 404 JSON error. Sensitive routes are rate limited first.
func buildApplication(kit: ServiceKit, settings: Settings) async throws -> some ApplicationProtocol {
    let configuration = try GatewayConfiguration(settings: settings)
    let kit = try kit.recordingTraces(settings: settings)
    let client = kit.makeHTTPClient()
    // The load balancer's X-Forwarded-Proto/Host are believed; anyone else's are replaced.
    let policy = ProxyPolicy(trustedProxies: configuration.trustedProxies)
    let redis = RedisClient(configuration: configuration.redis, severed: kit.faults.severance(of: "cache"))
    let router = buildRouter(kit: kit, configuration: configuration, redis: redis, client: client)
    // One route table for both paths: requests a rate limit applies to go through the router
    // (the limiter waits for Redis, then ``ReverseProxy``); every other request is forwarded
    // below Hummingbird by ``Forwarder`` (no task and no AsyncHTTPClient round per request).
    let services = configuration.services
    let routes = GatewayConfiguration.routes
    // A service with an https:// URL stays with the router: the forwarder speaks plain HTTP only.
    var upstreams: [ForwardingUpstream] = []
    var forwarded: [Int: Int] = [:]  // service → its index in `upstreams`
    for (index, pool) in services.enumerated() {
        guard let upstream = ForwardingUpstream(plainHTTP: pool) else { continue }
        forwarded[index] = upstreams.count
        upstreams.append(upstream)
    }
    let forwardedServices = forwarded
    let rules = configuration.rateLimits
    let forwarding = Forwarding(upstreams: upstreams, kit: kit, policy: policy) { head in
        guard !Forwarding.isWebSocketUpgrade(head), let method = HTTPRequest.Method(head.method.rawValue) else { return nil }
        let path = Forwarding.path(of: head.uri)
        // `head.uri` is canonical already (``Forwarder``): the rules see what the upstream will.
        guard let route = routes.first(where: { Forwarding.path(path, isUnder: $0.prefix) }),
            let upstream = forwardedServices[route.service], !rules.contains(where: { $0.matches(method, path) })
        else { return nil }
        return ForwardingRoute(upstream: upstream, label: path == route.prefix ? route.prefix : route.below)
    }
    // WebSocket upgrades are relayed to the route's service under the same policy.
    let webSockets = Router(context: WebSocketRelayContext.self)
    for route in routes {
        guard let upstream = forwardedServices[route.service] else { continue }
        let relay = WebSocketRelay(upstream: upstreams[upstream], policy: policy, logger: kit.logger)
        relay.register(on: webSockets, path: RouterPath(route.prefix))
        relay.register(on: webSockets, path: RouterPath(route.below))
    }
    let server = forwarding.serverChannel(webSockets: webSockets)
    // The rate limiter's Redis: down, the limiter lets requests pass (ready, degraded).
    let cache = DependencyCheck(name: "cache", critical: false, probe: { _ = try await redis.send(["PING"]) })
    return kit.makeApplication(router: router, checks: [cache], server: server, services: [redis, client])
}

/// The gateway's router, from what a test can swap: the rate limiter (its Redis may be down: it
/// fails open; a writer's token is checked against `JWKS_URL`) in front of every route, each
/// proxied to its service by ``ReverseProxy``.
func buildRouter(
    kit: ServiceKit, configuration: GatewayConfiguration, redis: RedisClient, client: OutboundHTTPClient
) -> Router<TitaniumRequestContext> {
    let proxy = ReverseProxy(client: client, policy: ProxyPolicy(trustedProxies: configuration.trustedProxies))
    let router = kit.makeRouter()
    let registry = kit.registry
    let rejections: @Sendable (String) -> Counter = { group in
        registry.makeCounter(named: "rate_limit_rejections_total", labels: [("route", group)], help: "Requests answered 429, by route group.")
    }
    // Every group's series exists from the start, at 0, so that rate() sees the first rejection.
    for rule in configuration.rateLimits { _ = rejections(rule.group) }
    router.add(middleware: RateLimitMiddleware(
        redis: redis,
        rules: configuration.rateLimits,
        clientIP: ClientIPResolver(trusted: configuration.trustedProxies),
        verifier: TokenVerifier.remote(url: configuration.jwksURL, policy: configuration.tokenPolicy, client: client),
        rejections: rejections,
        errors: registry.makeCounter(named: "rate_limit_errors_total", help: "Rate-limit checks that failed (Redis unavailable); the request passed."),
        logger: kit.logger
    ))
    let services = configuration.services
    for route in GatewayConfiguration.routes {
        let upstream = services[route.service]
        router.onAnyMethod([RouterPath(route.prefix), RouterPath(route.below)]) { request, context in
            try await proxy.forward(request, context: context, to: upstream)
        }
    }
    OpenAPIDocument.register(on: router)
    return router
}

extension GatewayConfiguration {
    /// The route table: each path prefix, the service it goes to (an index into ``services``) and
    /// the pattern of the paths below it. A new prefix needs a row here.
    static let routes: [(prefix: String, service: Int, below: String)] = [("/api/auth", 0), ("/api/users", 1), ("/api/posts", 2), ("/blog", 2)]
        .map { ($0.0, $0.1, $0.0 + "/**") }

    var services: [UpstreamPool] { [self.auth, self.users, self.blog] }
}
