import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import TitaniumHTTP

/// Builds the load balancer: the dashboard's static files (`DASHBOARD_DIR`) at `/`, `/api/*` forwarded to the gateway pool `GATEWAY_URLS`
/// (comma-separated, round robin) through ``ReverseProxy``, and `/stats` aggregated from
/// `STATS_TARGETS` (``StatsAggregator``). Its traffic window counts only real `/api` traffic:
/// not HEAD, not `X-Heartbeat: true`. Health checking, ejection, the dashboard and the
/// WebSocket heartbeat come with the rest of the edge issue.
func buildApplication(kit: ServiceKit, settings: Settings) async throws -> some ApplicationProtocol {
    let urls = try settings.httpURLs("gateway.urls", default: ["http://127.0.0.1:7200"])
    let targets = try StatsTarget.parse(settings.list("stats.targets", default: [
        "api-gateway=http://127.0.0.1:7200", "auth-service=http://127.0.0.1:7301",
        "user-service=http://127.0.0.1:7302", "blog-service=http://127.0.0.1:7303",
    ]))
    let client = kit.makeHTTPClient()
    let pool = BackendPool(urls: urls, client: client.client, logger: kit.logger)
    let balancer = Balancer(proxy: ReverseProxy(client: client), pool: pool)
    let heartbeat = Heartbeat(silence: .seconds(try settings.int("heartbeat.silence.seconds", default: 60, range: 1...3600)))
    let aggregator = StatsAggregator(
        targets: targets, client: client.client, window: kit.window, instance: kit.configuration.instance, backends: pool,
        heartbeat: heartbeat
    )
    let router = kit.makeRouter(countsInWindow: isRealTraffic)
    // `/` and everything no route claims: the dashboard's static files, when present.
    let dashboard = settings.string("dashboard.dir", default: "./dashboard-ui")
    if FileManager.default.fileExists(atPath: dashboard) {
        router.add(middleware: FileMiddleware(dashboard, searchForIndexHtml: true, logger: kit.logger))
    } else {
        kit.logger.notice("no dashboard to serve", metadata: ["dashboard.dir": .string(dashboard)])
    }
    router.onAnyMethod(["/api", "/api/**"]) { request, context in
        try await balancer.forward(request, context: context)
    }
    return kit.makeApplication(
        router: router,
        stats: { try await aggregator.response() },
        server: .http1WebSocketUpgrade(webSocketRouter: heartbeat.makeRouter(), configuration: .init(http1: kit.http1Configuration)),
        services: [pool, client]
    )
}

/// Real API traffic: `/api/*`, not HEAD, not marked `X-Heartbeat: true`.
@Sendable func isRealTraffic(_ request: Request) -> Bool {
    request.uri.path.hasPrefix("/api/") && request.method != .head
        && request.headers[HTTPField.Name("X-Heartbeat")!]?.lowercased() != "true"
}
