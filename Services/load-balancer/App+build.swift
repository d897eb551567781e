import Foundation
import HTTPTypes
import Hummingbird
import NIOHTTP1
import HummingbirdWebSocket
import Logging
import TitaniumHTTP
import TitaniumMetrics
import TitaniumProxy
import TitaniumTrace

/// Builds the load balancer: the dashboard at `/` (`UI_URLS` or `DASHBOARD_DIR`), `/api/*`
/// forwarded to the gateway pool `GATEWAY_URLS` by the ``Forwarder`` (WebSocket upgrades relayed
/// by ``WebSocketRelay``, except the ``Heartbeat``), and `/stats` aggregated from `STATS_TARGETS`
/// (``StatsAggregator``). Its traffic window counts only real `/api` traffic: not HEAD, not
/// `X-Heartbeat: true`.
func buildApplication(kit: ServiceKit, settings: Settings) async throws -> some ApplicationProtocol {
    // Only API requests are traced here: the dashboard's files and polling are not requests
    // anyone follows through the system.
    let kit = try kit.recordingTraces(settings: settings, options: .init(filter: { $0.uri.path.hasPrefix("/api") }))
    let urls = try settings.httpURLs("gateway.urls", default: ["http://127.0.0.1:7200"])
    let targets = try StatsTarget.parse(settings.list("stats.targets", default: [
        "api-gateway=http://127.0.0.1:7200", "auth-service=http://127.0.0.1:7301",
        "user-service=http://127.0.0.1:7302", "blog-service=http://127.0.0.1:7303",
    ]))
    let client = kit.makeHTTPClient()
    let pool = BackendPool(urls: urls, client: client.client, logger: kit.logger)
    let heartbeat = Heartbeat(silence: .seconds(try settings.int("heartbeat.silence.seconds", default: 60, range: 1...3600)))
    let aggregator = StatsAggregator(
        targets: targets, client: client.client, window: kit.window, instance: kit.configuration.instance, backends: pool,
        heartbeat: heartbeat, startTimeSeconds: kit.process.startTimeSeconds
    )
    let router = kit.makeRouter(countsInWindow: isRealTraffic)
    // `/` and everything no route claims: the dashboard, from a UI pool (`UI_URLS`) when one is
    // set, else the static files of `DASHBOARD_DIR` when present.
    let uiURLs = try settings.httpURLs("ui.urls", default: [])
    let dashboard = settings.string("dashboard.dir", default: "./dashboard-ui")
    if !uiURLs.isEmpty {
        let ui = UpstreamPool(name: "dashboard-ui", baseURLs: uiURLs)
        let proxy = ReverseProxy(client: client)
        for path: RouterPath in ["/", "/**"] {
            for method: HTTPRequest.Method in [.get, .head] {
                router.on(path, method: method) { request, context in try await proxy.forward(request, context: context, to: ui) }
            }
        }
    } else if FileManager.default.fileExists(atPath: dashboard) {
        router.add(middleware: FileMiddleware(dashboard, searchForIndexHtml: true, logger: kit.logger))
    } else {
        kit.logger.notice("no dashboard to serve", metadata: ["dashboard.dir": .string(dashboard)])
    }
    // Traces: this store's own query routes, and the merged trace and recent list over every service.
    let adminToken = try TraceConfiguration(
        settings: settings, dataDirectory: kit.configuration.dataDirectory, listenHost: kit.configuration.host
    ).adminToken
    if let traces = kit.traces {
        TraceRoutes(recorder: traces).register(on: router, except: ["/traces/recent", "/traces/{trace_id}"])
    }
    TraceFanOut(aggregator: aggregator, local: kit.traces, adminToken: adminToken).register(on: router)
    // `/api/*` is forwarded below Hummingbird (``Forwarder``), WebSocket upgrades excepted. It
    // waits for the gateway longer than the gateway waits for its services, so that the
    // gateway's own 504 is what the client sees.
    let gateways = try ForwardingUpstream(name: "api-gateway", urls: urls, balancer: pool, key: "gateway.urls")
    let timeouts = kit.configuration.client
    let forwarding = Forwarding(upstreams: [gateways], kit: kit, responseTimeout: timeouts.connectTimeout + timeouts.readTimeout) { head in
        guard Forwarding.path(head.uri, isUnder: "/api"), !Forwarding.isWebSocketUpgrade(head) else { return nil }
        return ForwardingRoute(
            upstream: 0, label: "/api/**",
            countsInWindow: isRealTraffic(method: head.method.rawValue, heartbeat: head.headers.first(name: "x-heartbeat"))
        )
    }
    let webSockets = heartbeat.makeRouter()
    WebSocketRelay(upstream: gateways, logger: kit.logger).register(on: webSockets, path: "/api/**")
    let webSocketResponder = webSockets.buildResponder()
    let server = ServerChannel(upgradesWebSockets: true) { responder in
        HTTP1WebSocketUpgradeChannel(
            responder: responder, webSocketResponder: webSocketResponder,
            configuration: .init(http1: .init(additionalChannelHandlers: forwarding.channelHandlers(), idleTimeout: nil))
        )
    }
    return kit.makeApplication(
        router: router,
        stats: { try await aggregator.response() },
        server: server,
        services: [pool, client],
        registerTraceRoutes: false
    )
}

/// Real API traffic: `/api/*`, not HEAD, not marked `X-Heartbeat: true`.
@Sendable func isRealTraffic(_ request: Request) -> Bool {
    request.uri.path.hasPrefix("/api/")
        && isRealTraffic(method: request.method.rawValue, heartbeat: request.headers[.xHeartbeat])
}

/// The same rule on what both paths (Hummingbird's router, the forwarder) see of an `/api` request.
func isRealTraffic(method: String, heartbeat: String?) -> Bool {
    method != "HEAD" && heartbeat?.lowercased() != "true"
}

extension HTTPField.Name {
    /// `X-Heartbeat: true` marks the dashboard's own polling.
    static let xHeartbeat = HTTPField.Name("X-Heartbeat")!
}
