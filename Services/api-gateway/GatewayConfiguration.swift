import TitaniumHTTP

/// api-gateway settings, on top of ``ServiceConfiguration``. Each upstream may list several
/// comma-separated URLs, used in turn.
///
/// | variable | default |
/// |---|---|
/// | `AUTH_SERVICE_URL` | `http://127.0.0.1:7301` |
/// | `USER_SERVICE_URL` | `http://127.0.0.1:7302` |
/// | `BLOG_SERVICE_URL` | `http://127.0.0.1:7303` |
///
/// Upstream timeouts are the outbound client's: connect `HTTP_CLIENT_CONNECT_TIMEOUT_MS` (1000),
/// response head `HTTP_CLIENT_READ_TIMEOUT_MS` (2000), idle pooled connections
/// `HTTP_CLIENT_IDLE_TIMEOUT_SECONDS` (30).
struct GatewayConfiguration {
    var auth: UpstreamPool
    var users: UpstreamPool
    var blog: UpstreamPool

    init(settings: Settings) throws(ConfigurationError) {
        func pool(_ key: String, name: String, default url: String) throws(ConfigurationError) -> UpstreamPool {
            let urls = settings.list(key, default: [url])
            for url in urls where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
                throw ConfigurationError(key: key, value: url, expected: "comma-separated http:// or https:// URLs")
            }
            return UpstreamPool(name: name, baseURLs: urls)
        }
        self.auth = try pool("auth.service.url", name: "auth-service", default: "http://127.0.0.1:7301")
        self.users = try pool("user.service.url", name: "user-service", default: "http://127.0.0.1:7302")
        self.blog = try pool("blog.service.url", name: "blog-service", default: "http://127.0.0.1:7303")
    }
}
