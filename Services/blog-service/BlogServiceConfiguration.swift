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
        self.jwksURL = try settings.httpURL("jwks.url", default: "http://127.0.0.1:7301/.well-known/jwks.json")
        self.policy = TokenPolicy(settings: settings)
    }
}
