import TitaniumAuth
import TitaniumHTTP
import TitaniumPostgres
import TitaniumRedis

/// user-service settings, on top of ``ServiceConfiguration``.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `DATABASE_URL` | (unset: SQLite) | a SQLite path or `postgres://…` (see ``DatabaseLocation``, which also lists the pool settings) |
/// | `USER_DB_PATH` | `$DATA_DIR/users.db` | the SQLite database when `DATABASE_URL` is unset |
/// | `REDIS_URL` | `redis://127.0.0.1:6379` | the cache |
/// | `USER_CACHE_TTL` | 300 | seconds a cached user lives |
/// | `BCRYPT_COST` | 10 | bcrypt work factor (10–15; lower only for tests) |
/// | `JWKS_URL` | `http://127.0.0.1:7301/.well-known/jwks.json` | auth-service's public keys (for `/api/users/me` and the owner's email on `/api/users/{id}`) |
/// | `JWT_ISSUER` / `JWT_AUDIENCE` | `titanium-auth` / `titanium` | expected token claims |
struct UserServiceConfiguration {
    var jwksURL: String
    var policy: TokenPolicy
    var database: DatabaseLocation
    var redis: RedisConfiguration
    var cacheTTLSeconds: Int
    var bcryptCost: Int

    init(common: ServiceConfiguration, settings: Settings) throws(ConfigurationError) {
        self.database = try DatabaseLocation(
            settings: settings, defaultSQLitePath: settings.string("user.db.path", default: common.dataDirectory + "/users.db")
        )
        self.redis = try settings.choice(
            "redis.url", default: RedisConfiguration(), expected: RedisConfiguration.urlForm, parse: RedisConfiguration.init(url:)
        )
        self.cacheTTLSeconds = try settings.int("user.cache.ttl", default: 300, range: 1...86_400)
        self.bcryptCost = try settings.int("bcrypt.cost", default: 10, range: 4...15)
        self.jwksURL = try settings.httpURL("jwks.url", default: "http://127.0.0.1:7301/.well-known/jwks.json")
        self.policy = TokenPolicy(settings: settings)
    }
}
