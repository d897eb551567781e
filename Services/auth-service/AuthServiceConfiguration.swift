import TitaniumAuth
import TitaniumHTTP

/// auth-service settings, on top of ``ServiceConfiguration``.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `JWT_PRIVATE_KEY_FILE` | `$DATA_DIR/jwt-es256.pem` | ES256 signing key (PEM); created on first start when missing |
/// | `JWT_ISSUER` | `titanium-auth` | `iss` of issued tokens |
/// | `JWT_AUDIENCE` | `titanium` | `aud` of issued tokens |
/// | `JWT_TTL_SECONDS` | 900 | token lifetime |
/// | `USER_SERVICE_URL` | `http://127.0.0.1:7302` | where credentials are checked, and whether a token was retired by a password change |
struct AuthServiceConfiguration {
    var privateKeyPath: String
    var policy: TokenPolicy
    var tokenLifetime: Duration
    var userServiceURL: String

    init(common: ServiceConfiguration, settings: Settings) throws(ConfigurationError) {
        self.privateKeyPath = settings.string("jwt.private.key.file", default: common.dataDirectory + "/jwt-es256.pem")
        self.policy = TokenPolicy(settings: settings)
        self.tokenLifetime = .seconds(try settings.int("jwt.ttl.seconds", default: 900, range: 1...86_400))
        self.userServiceURL = try settings.httpURL("user.service.url", default: "http://127.0.0.1:7302")
    }
}
