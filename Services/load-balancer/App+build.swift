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

/// Builds the load balancer: the dashboard at `/` (``Dashboard``), `/api/*`
/// forwarded to the gateway pool `GATEWAY_URLS` by the ``Forwarder`` (WebSocket upgrades relayed
/// by ``WebSocketRelay``, except the ``Heartbeat``), and `/stats` aggregated from `STATS_TARGETS`
/// (``StatsAggregator``). Its traffic window counts only real `/api` traffic: not HEAD, not
/// `X-Heartbeat: true`.
func buildApplication(kit: ServiceKit, settings: Settings) async throws -> some ApplicationProtocol {
    let configuration = try LoadBalancerConfiguration(common: kit.configuration, settings: settings)
    // Only API requests are traced here: the dashboard's files and polling are not requests
    // anyone follows through the system.
    let kit = try kit.recordingTraces(configuration: configuration.traces, options: .init(filter: { $0.uri.path.hasPrefix("/api") }))
    let urls = configuration.gatewayURLs
    let client = kit.makeHTTPClient()
    let pool = BackendPool(urls: urls, client: client.client, logger: kit.logger, settings: configuration.backends)
    let heartbeat = Heartbeat(silence: configuration.heartbeatSilence)
    let router = buildRouter(kit: kit, configuration: configuration, client: client, backends: pool, heartbeat: heartbeat)
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
    let server = forwarding.serverChannel(webSockets: webSockets)
    // Its own traffic is forwarded below the router, where no fault can be injected; it injects
    // faults into the services behind it instead (`/admin/faults/{service}`, ``FaultFanOut``).
    return kit.makeApplication(router: router, server: server, injectsFaults: false, services: [pool, client])
}

/// The load balancer's own routes, from what a test can swap: `/stats`, the merged
/// `/traces/*` and `/admin/faults/{service}` over `STATS_TARGETS` (any stand-ins), the gateway pool and heartbeat `/stats`
/// reports on, and the dashboard.
func buildRouter(
    kit: ServiceKit, configuration: LoadBalancerConfiguration, client: OutboundHTTPClient, backends: BackendPool, heartbeat: Heartbeat
) -> Router<TitaniumRequestContext> {
    let fanOut = InstanceFanOut(targets: configuration.statsTargets, client: client)
    let router = kit.makeRouter(countsInWindow: isRealTraffic)
    StatsAggregator(
        fanOut: fanOut, window: kit.window, instance: kit.configuration.instance, backends: backends,
        heartbeat: heartbeat, startTimeSeconds: kit.process.startTimeSeconds
    ).register(on: router)
    // The merged trace and recent list over every service; the trace store's other routes are
    // this store's own (registered by the kit).
    TraceFanOut(fanOut: fanOut, local: kit.traces, adminToken: kit.configuration.adminToken).register(on: router)
    FaultFanOut(fanOut: fanOut, adminToken: kit.configuration.adminToken).register(on: router)
    Dashboard(configuration: configuration, client: client, logger: kit.logger).register(on: router)
    return router
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
