import HTTPTypes
import TitaniumAuth
import TitaniumHTTP
import TitaniumProxy
import TitaniumRedis

/// api-gateway settings, on top of ``ServiceConfiguration``. Each upstream may list several
/// comma-separated URLs, used in turn.
///
/// | variable | default |
/// |---|---|
/// | `AUTH_SERVICE_URL` | `http://127.0.0.1:7301` |
/// | `USER_SERVICE_URL` | `http://127.0.0.1:7302` |
/// | `BLOG_SERVICE_URL` | `http://127.0.0.1:7303` |
/// | `REDIS_URL` | `redis://127.0.0.1:6379` | rate-limit counters |
/// | `RATE_LIMIT_ENABLED` | `true` | |
/// | `RATE_LIMIT_LOGIN` | `5/60` | `POST /api/auth/login` per username: COUNT/SECONDS |
/// | `RATE_LIMIT_LOGIN_IP` | `20/60` | `POST /api/auth/login` per client address |
/// | `RATE_LIMIT_REGISTER` | `3/60` | `POST /api/users` per client address |
/// | `RATE_LIMIT_POST_WRITES` | `1200/60` | POST, PATCH, DELETE on `/api/posts*` per signed-in user (the documented mixed load writes 15/s) |
/// | `TRUSTED_PROXIES` | (none) | CIDRs whose `X-Forwarded-For` is believed (the load balancer's) |
/// | `JWKS_URL` | `AUTH_SERVICE_URL` + `/.well-known/jwks.json` | keys to verify a writer's token, for its limit |
/// | `JWT_ISSUER` / `JWT_AUDIENCE` | `titanium-auth` / `titanium` | expected token claims |
///
/// Upstream timeouts are the outbound client's: connect `HTTP_CLIENT_CONNECT_TIMEOUT_MS` (1000),
/// response head `HTTP_CLIENT_READ_TIMEOUT_MS` (2000), idle pooled connections
/// `HTTP_CLIENT_IDLE_TIMEOUT_SECONDS` (30).
struct GatewayConfiguration {
    var auth: UpstreamPool
    var users: UpstreamPool
    var blog: UpstreamPool
    var redis: RedisConfiguration
    var rateLimits: [RateLimitRule]
    var trustedProxies: [CIDR]
    var jwksURL: String
    var tokenPolicy: TokenPolicy

    init(settings: Settings) throws(ConfigurationError) {
        func pool(_ key: String, name: String, default url: String) throws(ConfigurationError) -> UpstreamPool {
            UpstreamPool(name: name, baseURLs: try settings.httpURLs(key, default: [url]))
        }
        self.auth = try pool("auth.service.url", name: "auth-service", default: "http://127.0.0.1:7301")
        self.users = try pool("user.service.url", name: "user-service", default: "http://127.0.0.1:7302")
        self.blog = try pool("blog.service.url", name: "blog-service", default: "http://127.0.0.1:7303")
        self.redis = try settings.choice(
            "redis.url", default: RedisConfiguration(), expected: RedisConfiguration.urlForm, parse: RedisConfiguration.init(url:)
        )
        var rules: [RateLimitRule] = []
        if try settings.bool("rate.limit.enabled", default: true) {
            func rule(
                _ setting: String, group: String, default value: String, key: RateLimitRule.Key,
                matches: @escaping @Sendable (HTTPRequest.Method, String) -> Bool
            ) throws(ConfigurationError) -> RateLimitRule {
                let (limit, window) = try RateLimitRule.parse(settings.string(setting, default: value), key: setting)
                return RateLimitRule(group: group, limit: limit, window: window, key: key, matches: matches)
            }
            let login: @Sendable (HTTPRequest.Method, String) -> Bool = { $0 == .post && $1 == "/api/auth/login" }
            rules = [
                try rule("rate.limit.login.ip", group: "login-ip", default: "20/60", key: .clientIP, matches: login),
                try rule("rate.limit.login", group: "login", default: "5/60", key: .username, matches: login),
                try rule("rate.limit.register", group: "register", default: "3/60", key: .clientIP) { $0 == .post && $1 == "/api/users" },
                try rule("rate.limit.post.writes", group: "post-writes", default: "1200/60", key: .tokenSubject) {
                    [.post, .patch, .delete].contains($0) && ($1 == "/api/posts" || $1.hasPrefix("/api/posts/"))
                },
            ]
        }
        self.rateLimits = rules
        self.jwksURL = try settings.httpURL("jwks.url", default: (self.auth.baseURLs.first ?? "http://127.0.0.1:7301") + "/.well-known/jwks.json")
        self.tokenPolicy = TokenPolicy(settings: settings)
        self.trustedProxies = try settings.list("trusted.proxies").map { entry throws(ConfigurationError) in
            guard let cidr = CIDR(entry) else {
                throw ConfigurationError(key: "trusted.proxies", value: entry, expected: "comma-separated CIDRs such as 10.0.0.0/8")
            }
            return cidr
        }
    }
}
