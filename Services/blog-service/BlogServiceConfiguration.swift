import TitaniumAuth
import TitaniumHTTP
import TitaniumPostgres

/// blog-service settings, on top of ``ServiceConfiguration``.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `DATABASE_URL` | (unset: SQLite) | a SQLite path or `postgres://…` (see ``DatabaseLocation``, which also lists the pool settings) |
/// | `BLOG_DB_PATH` | `$DATA_DIR/blog.db` | the SQLite database when `DATABASE_URL` is unset |
/// | `JWKS_URL` | `http://127.0.0.1:7301/.well-known/jwks.json` | auth-service's public keys |
/// | `USER_SERVICE_URL` | `http://127.0.0.1:7302` | asked on each write whether its token was retired by a password change |
/// | `JWT_ISSUER` / `JWT_AUDIENCE` | `titanium-auth` / `titanium` | expected token claims |
/// | `POST_PAGE_CACHE_BYTES` | 8388608 | encoded post-list pages kept at most, in bytes |
struct BlogServiceConfiguration {
    var database: DatabaseLocation
    var jwksURL: String
    var userServiceURL: String
    var policy: TokenPolicy
    var pageCacheBytes: Int

    init(common: ServiceConfiguration, settings: Settings) throws(ConfigurationError) {
        self.database = try DatabaseLocation(
            settings: settings, defaultSQLitePath: settings.string("blog.db.path", default: common.dataDirectory + "/blog.db")
        )
        self.jwksURL = try settings.httpURL("jwks.url", default: "http://127.0.0.1:7301/.well-known/jwks.json")
        self.userServiceURL = try settings.httpURL("user.service.url", default: "http://127.0.0.1:7302")
        self.policy = TokenPolicy(settings: settings)
        self.pageCacheBytes = try settings.int("post.page.cache.bytes", default: 8 << 20, range: 0...(1 << 30))
    }
}
