import HTTPTypes
import TitaniumHTTP
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
/// | `RATE_LIMIT_LOGIN` | `5/60` | `POST /api/auth/login` per client: COUNT/SECONDS |
/// | `RATE_LIMIT_REGISTER` | `3/60` | `POST /api/users` |
/// | `RATE_LIMIT_POST_WRITES` | `60/60` | POST, PATCH, DELETE on `/api/posts*` |
/// | `TRUSTED_PROXIES` | (none) | CIDRs whose `X-Forwarded-For` is believed (the load balancer's) |
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

    init(settings: Settings) throws(ConfigurationError) {
        func pool(_ key: String, name: String, default url: String) throws(ConfigurationError) -> UpstreamPool {
            UpstreamPool(name: name, baseURLs: try settings.httpURLs(key, default: [url]))
        }
        self.auth = try pool("auth.service.url", name: "auth-service", default: "http://127.0.0.1:7301")
        self.users = try pool("user.service.url", name: "user-service", default: "http://127.0.0.1:7302")
        self.blog = try pool("blog.service.url", name: "blog-service", default: "http://127.0.0.1:7303")
        let redisURL = settings.string("redis.url", default: "redis://127.0.0.1:6379")
        guard let redis = RedisConfiguration(url: redisURL) else {
            throw ConfigurationError(key: "redis.url", value: redisURL, expected: "redis://[:password@]host[:port][/db]")
        }
        self.redis = redis
        var rules: [RateLimitRule] = []
        if try settings.bool("rate.limit.enabled", default: true) {
            let (login, loginWindow) = try RateLimitRule.parse(settings.string("rate.limit.login", default: "5/60"), key: "rate.limit.login")
            let (register, registerWindow) = try RateLimitRule.parse(settings.string("rate.limit.register", default: "3/60"), key: "rate.limit.register")
            let (writes, writesWindow) = try RateLimitRule.parse(settings.string("rate.limit.post.writes", default: "60/60"), key: "rate.limit.post.writes")
            rules = [
                RateLimitRule(group: "login", limit: login, window: loginWindow) { $0 == .post && $1 == "/api/auth/login" },
                RateLimitRule(group: "register", limit: register, window: registerWindow) { $0 == .post && $1 == "/api/users" },
                RateLimitRule(group: "post-writes", limit: writes, window: writesWindow) {
                    [.post, .patch, .delete].contains($0) && ($1 == "/api/posts" || $1.hasPrefix("/api/posts/"))
                },
            ]
        }
        self.rateLimits = rules
        self.trustedProxies = try settings.list("trusted.proxies").map { entry throws(ConfigurationError) in
            guard let cidr = CIDR(entry) else {
                throw ConfigurationError(key: "trusted.proxies", value: entry, expected: "comma-separated CIDRs such as 10.0.0.0/8")
            }
            return cidr
        }
    }
}
