import Foundation
import Logging
import NIOCore
import PostgresNIO
import TitaniumHTTP

/// One named schema change: its statements run in one transaction, once per database. The names
/// applied are kept in `titanium_migrations`; services sharing a database (user-service and
/// blog-service) each apply their own.
public struct PostgresMigration: Sendable {
    public var name: String
    public var statements: [String]

    public init(_ name: String, _ statements: [String]) {
        self.name = name
        self.statements = statements
    }

    /// Any number, the same in every service: replicas starting together take turns.
    static let advisoryLock: Int64 = 0x7469_7461_6E69_756D  // "titanium"

    /// Applies the migrations not yet applied, each in its own transaction, on one connection of
    /// its own, under a transaction-scoped advisory lock so that replicas starting together do not
    /// race. Until `settings.startupTimeout`, a refused or failing connection is retried every
    /// second (PostgreSQL may start after the service); then it throws, with the last error.
    static func apply(_ migrations: [PostgresMigration], settings: PostgresSettings, logger: Logger) async throws {
        let deadline = ContinuousClock.now + settings.startupTimeout
        var attempt = 0
        while true {
            attempt += 1
            do {
                let connection = try await PostgresConnection.connect(configuration: try Self.configuration(settings), id: 0, logger: logger)
                do {
                    try await self.apply(migrations, on: connection, logger: logger)
                    try? await connection.close()
                    return
                } catch {
                    try? await connection.close()
                    throw error
                }
            } catch {
                let cause = Self.cause(of: error)
                let database = "PostgreSQL at \(settings.host):\(settings.port)/\(settings.database)"
                // A statement PostgreSQL refused (a permission, a syntax error): retrying will not help.
                if let refused = cause as? PSQLError, refused.code == .server, !Self.retryable(refused) {
                    throw MigrationFailure(description: "\(database) refused a migration: \(String(reflecting: refused))")
                }
                guard ContinuousClock.now < deadline else {
                    throw MigrationFailure(
                        description: "\(database) could not be migrated within DATABASE_STARTUP_TIMEOUT_S "
                            + "(\(settings.startupTimeout)); the last error: \(String(reflecting: cause))"
                    )
                }
                logger.warning(
                    "waiting for PostgreSQL",
                    metadata: ["attempt": "\(attempt)", "error": "\(String(reflecting: cause))", "database": "\(settings.host):\(settings.port)/\(settings.database)"]
                )
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    private static func apply(_ migrations: [PostgresMigration], on connection: PostgresConnection, logger: Logger) async throws {
        for migration in migrations {
            try await connection.withTransaction(logger: logger) { connection in
                // No statement timeout here: waiting for another replica's migration, or building an
                // index on a large table, may take longer than a request's query may.
                try await connection.query("SET LOCAL statement_timeout = 0", logger: logger)
                try await connection.query("SELECT pg_advisory_xact_lock(\(Self.advisoryLock))", logger: logger)
                try await connection.query(
                    "CREATE TABLE IF NOT EXISTS titanium_migrations (name text PRIMARY KEY, applied_at bigint NOT NULL)", logger: logger
                )
                let applied = try await connection.query("SELECT 1 FROM titanium_migrations WHERE name = \(migration.name)", logger: logger).collect()
                guard applied.isEmpty else { return }
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                try await connection.query("INSERT INTO titanium_migrations (name, applied_at) VALUES (\(migration.name), \(now))", logger: logger)
                logger.info("migration applied", metadata: ["migration": "\(migration.name)"])
            }
        }
    }

    /// The error inside a transaction's wrapper: the first of BEGIN, the body, COMMIT, ROLLBACK that failed.
    static func cause(of error: any Error) -> any Error {
        guard let wrapped = error as? PostgresTransactionError else { return error }
        return wrapped.beginError ?? wrapped.closureError ?? wrapped.commitError ?? wrapped.rollbackError ?? error
    }

    /// Errors worth waiting out at start: PostgreSQL starting up or shutting down (57P03, 57P01),
    /// too many connections (53300). Authentication and bad statements are not.
    static func retryable(_ error: PSQLError) -> Bool {
        let state = error.serverInfo?[.sqlState] ?? ""
        return state.hasPrefix("57") || state.hasPrefix("53") || state.hasPrefix("08")
    }

    static func configuration(_ settings: PostgresSettings) throws -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: settings.host, port: settings.port, username: settings.username, password: settings.password,
            database: settings.database,
            tls: try settings.clientTLS.map { .require(try NIOSSLContext(configuration: $0)) } ?? .disable
        )
        configuration.options.connectTimeout = .milliseconds(Int64(settings.connectTimeout.milliseconds))
        configuration.options.additionalStartupParameters = PostgresPool.startupParameters(settings)
        return configuration
    }
}

/// Why a service could not migrate its database at start, with PostgreSQL's own words (a
/// `PSQLError` describes itself only as "Generic description…" to keep queries out of logs;
/// migrations hold no secrets).
struct MigrationFailure: Error, CustomStringConvertible {
    let description: String
}
