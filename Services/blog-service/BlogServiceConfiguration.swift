import TitaniumAuth
import TitaniumHTTP

/// blog-service settings, on top of ``ServiceConfiguration``.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `BLOG_DB_PATH` | `$DATA_DIR/blog.db` | the SQLite database |
/// | `JWKS_URL` | `http://127.0.0.1:7301/.well-known/jwks.json` | auth-service's public keys |
/// | `JWT_ISSUER` / `JWT_AUDIENCE` | `titanium-auth` / `titanium` | expected token claims |
struct BlogServiceConfiguration {
    var databasePath: String
    var jwksURL: String
    var policy: TokenPolicy

    init(common: ServiceConfiguration, settings: Settings) throws(ConfigurationError) {
        self.databasePath = settings.string("blog.db.path", default: common.dataDirectory + "/blog.db")
        self.jwksURL = settings.string("jwks.url", default: "http://127.0.0.1:7301/.well-known/jwks.json")
        guard self.jwksURL.hasPrefix("http://") || self.jwksURL.hasPrefix("https://") else {
            throw ConfigurationError(key: "jwks.url", value: self.jwksURL, expected: "an http:// or https:// URL")
        }
        self.policy = TokenPolicy(settings: settings)
    }
}
