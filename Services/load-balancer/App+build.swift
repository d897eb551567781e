import Hummingbird
import TitaniumHTTP

/// Builds the load balancer. For now it forwards `/api/*` to the gateway pool `GATEWAY_URLS`
/// (comma-separated, round robin) through ``ReverseProxy``; health checking, ejection, the
/// `/stats` fan-out, the dashboard and the WebSocket heartbeat come with the edge issue.
func buildApplication(kit: ServiceKit, settings: Settings) async throws -> some ApplicationProtocol {
    let urls = settings.list("gateway.urls", default: ["http://127.0.0.1:7200"])
    for url in urls where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
        throw ConfigurationError(key: "gateway.urls", value: url, expected: "comma-separated http:// or https:// URLs")
    }
    let gateways = UpstreamPool(name: "api-gateway", baseURLs: urls)
    let client = kit.makeHTTPClient()
    let proxy = ReverseProxy(client: client)
    let router = kit.makeRouter()
    for path: RouterPath in ["/api", "/api/**"] {
        for method: HTTPRequest.Method in [.get, .head, .post, .put, .patch, .delete, .options] {
            router.on(path, method: method) { request, context in
                try await proxy.forward(request, context: context, to: gateways)
            }
        }
    }
    return kit.makeApplication(router: router, services: [client])
}
