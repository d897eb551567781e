import Hummingbird
import TitaniumHTTP

/// Builds the api-gateway: `/api/auth/*` → auth-service, `/api/users/*` → user-service,
/// `/api/posts*` and `/blog/*` → blog-service, streamed through ``ReverseProxy``. Anything
/// else, `/internal/*` included, is the 404 JSON error.
func buildApplication(kit: ServiceKit, settings: Settings) async throws -> some ApplicationProtocol {
    let configuration = try GatewayConfiguration(settings: settings)
    let client = kit.makeHTTPClient()
    let proxy = ReverseProxy(client: client)
    let router = kit.makeRouter()
    let routes: [(paths: [RouterPath], upstream: UpstreamPool)] = [
        (["/api/auth", "/api/auth/**"], configuration.auth),
        (["/api/users", "/api/users/**"], configuration.users),
        (["/api/posts", "/api/posts/**", "/blog", "/blog/**"], configuration.blog),
    ]
    let methods: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options]
    for (paths, upstream) in routes {
        for path in paths {
            for method in methods {
                router.on(path, method: method) { request, context in
                    try await proxy.forward(request, context: context, to: upstream)
                }
            }
        }
    }
    return kit.makeApplication(router: router, services: [client])
}
