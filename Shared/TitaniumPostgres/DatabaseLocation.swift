import Foundation
import TitaniumHTTP

/// Where a service keeps its data, from `DATABASE_URL`:
///
/// | `DATABASE_URL` | storage |
/// |---|---|
/// | unset or empty | SQLite at the service's default path (`USER_DB_PATH`, `BLOG_DB_PATH`) |
/// | `sqlite:///path/to/file.db`, `sqlite:relative.db` or a plain path | SQLite at that path |
/// | `postgres://user:password@host:port/database?sslmode=disable` (or `postgresql://`) | PostgreSQL |
/// | `…?sslmode=require&sslrootcert=/path/ca.pem` | PostgreSQL over TLS, trusting only that CA file's certificates |
///
/// With PostgreSQL, these tune the pool (per process):
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `DATABASE_POOL_SIZE` | 10 | connections at most |
/// | `DATABASE_CONNECT_TIMEOUT_MS` | 3000 | to open one connection |
/// | `DATABASE_QUERY_TIMEOUT_MS` | 5000 | one query or transaction, waiting for a connection included; also the server's `statement_timeout` |
/// | `DATABASE_STARTUP_TIMEOUT_S` | 60 | how long a starting service waits for PostgreSQL (to migrate) before it exits 1 |
public enum DatabaseLocation: Sendable, Equatable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(PostgresSettings)

    public init(settings: Settings, defaultSQLitePath: String) throws(ConfigurationError) {
        guard let raw = settings.optionalString("database.url") else {
            self = .sqlite(path: defaultSQLitePath)
            return
        }
        if raw.hasPrefix("postgres://") || raw.hasPrefix("postgresql://") {
            guard var postgres = PostgresSettings(url: raw) else {
                throw ConfigurationError(key: "database.url", value: PostgresSettings.redacted(raw), expected: PostgresSettings.urlForm)
            }
            if let path = postgres.rootCertificatePath, !FileManager.default.isReadableFile(atPath: path) {
                throw ConfigurationError(
                    key: "database.url", value: PostgresSettings.redacted(raw), expected: "an sslrootcert that names a readable PEM file"
                )
            }
            postgres.poolSize = try settings.int("database.pool.size", default: 10, range: 1...100)
            postgres.connectTimeout = .milliseconds(try settings.int("database.connect.timeout.ms", default: 3000, range: 100...60_000))
            postgres.queryTimeout = .milliseconds(try settings.int("database.query.timeout.ms", default: 5000, range: 100...600_000))
            postgres.startupTimeout = .seconds(try settings.int("database.startup.timeout.s", default: 60, range: 0...3600))
            self = .postgres(postgres)
        } else if raw.hasPrefix("sqlite:") {
            let path = raw.dropFirst("sqlite:".count)
            // sqlite:///abs/path → /abs/path; sqlite:rel/path → rel/path
            self = .sqlite(path: path.hasPrefix("//") ? String(path.dropFirst(2)) : String(path))
        } else if raw.contains("://") {
            throw ConfigurationError(
                key: "database.url", value: PostgresSettings.redacted(raw), expected: "a SQLite path or \(PostgresSettings.urlForm)"
            )
        } else {
            self = .sqlite(path: raw)
        }
    }

    /// How a log line names it: the SQLite path, or PostgreSQL's host, port and database (no credentials).
    public var description: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        case .postgres(let postgres): "postgres://\(postgres.host):\(postgres.port)/\(postgres.database)"
        }
    }
}

/// A PostgreSQL server and how to use it, from a `postgres://` URL and the pool settings.
public struct PostgresSettings: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    /// `sslmode=require`, `verify-ca` or `verify-full`: TLS, refusing a server without it, and
    /// always verifying its certificate against the system's roots and the host name (stricter
    /// than libpq's `require`, which does not verify). `disable` (the default), `allow` and
    /// `prefer` connect in clear text, as on a private network or loopback.
    public var requireTLS: Bool
    /// `sslrootcert=/path/ca.pem` (with TLS only): the PEM file of the certificates trusted
    /// instead of the system's, as for a private CA or a cloud provider's bundle; nil (absent
    /// or `sslrootcert=system`): the system's roots.
    public var rootCertificatePath: String?
    public var poolSize = 10
    public var connectTimeout: Duration = .seconds(3)
    public var queryTimeout: Duration = .seconds(5)
    public var startupTimeout: Duration = .seconds(60)

    public static let urlForm = "postgres://user:password@host:port/database?sslmode=disable|require[&sslrootcert=/path/ca.pem]"

    /// Host, port, database and user; never the password.
    public var description: String { "postgres://\(self.username)@\(self.host):\(self.port)/\(self.database)" }

    public init(
        host: String, port: Int = 5432, username: String, password: String? = nil, database: String, requireTLS: Bool = false,
        rootCertificatePath: String? = nil
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.requireTLS = requireTLS
        self.rootCertificatePath = rootCertificatePath
    }

    /// Parses `postgres://user[:password]@host[:port]/database[?sslmode=…&sslrootcert=…]`; nil
    /// when a part is missing, the `sslmode` is unknown, or an `sslrootcert` comes without TLS
    /// (it would be ignored). User and password may be percent-encoded.
    public init?(url: String) {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme),
            let host = components.host, !host.isEmpty,
            let username = components.percentEncodedUser.flatMap({ $0.removingPercentEncoding }), !username.isEmpty
        else { return nil }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else { return nil }
        var password: String?
        if let encoded = components.percentEncodedPassword {
            guard let decoded = encoded.removingPercentEncoding else { return nil }  // a stray %
            password = decoded
        }
        var requireTLS = false
        var rootCertificatePath: String?
        var rootCertificateGiven = false
        for item in components.queryItems ?? [] {
            if item.name == "sslrootcert" { rootCertificateGiven = true }
            switch (item.name, item.value) {
            case ("sslmode", "disable"), ("sslmode", "allow"), ("sslmode", "prefer"): requireTLS = false
            case ("sslmode", "require"), ("sslmode", "verify-ca"), ("sslmode", "verify-full"): requireTLS = true
            case ("sslmode", _): return nil
            case ("sslrootcert", "system"): rootCertificatePath = nil
            case ("sslrootcert", let path?) where !path.isEmpty: rootCertificatePath = path
            case ("sslrootcert", _): return nil
            default: continue
            }
        }
        if rootCertificateGiven && !requireTLS { return nil }
        self.init(
            host: host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host,
            port: components.port ?? 5432,
            username: username,
            password: password,
            database: database,
            requireTLS: requireTLS,
            rootCertificatePath: rootCertificatePath
        )
    }

    /// The URL with its password replaced by `***`, for error messages and logs. A URL that does
    /// not parse loses everything between `//` and the last `@` instead.
    public static func redacted(_ url: String) -> String {
        if var components = URLComponents(string: url) {
            guard components.password != nil else { return url }
            components.password = "***"
            if let redacted = components.string { return redacted }
        }
        guard let scheme = url.range(of: "//"), let at = url.range(of: "@", options: .backwards), scheme.upperBound <= at.lowerBound else {
            return url
        }
        return url.replacingCharacters(in: scheme.upperBound..<at.lowerBound, with: "***")
    }
}
