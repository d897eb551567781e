import HTTPTypes
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle
import TitaniumHTTP

/// A service's PostgreSQL: postgres-nio's pooled client, with the guarantees the stores rely on.
///
/// - Every query and transaction has a deadline (`DATABASE_QUERY_TIMEOUT_MS`), waiting for a
///   pooled connection included: the pool queues requests while PostgreSQL is unreachable.
///   The server enforces the same limit as `statement_timeout`.
/// - A database that cannot answer is a 503 ``APIError`` (`unavailable`, `Retry-After: 1`), not a
///   500: a connection refused or closed, a timeout, a server shutting down or out of
///   connections. A unique violation comes out as ``UniqueViolation`` for the store to name the field.
/// - The pool reconnects by itself (postgres-nio backs off from 100 ms by 1.25× per failed
///   attempt), so a database that comes back is used again without a restart.
///
/// It runs as a service of the application: the pool lives until the server has drained.
public final class PostgresPool: Service, Sendable {
    public let client: PostgresClient
    public let settings: PostgresSettings
    private let logger: Logger

    /// Connects, applies `migrations` (waiting up to `settings.startupTimeout` for PostgreSQL to
    /// accept a connection), and returns the pool; ``run()`` must then run as a service.
    public static func open(settings: PostgresSettings, migrations: [PostgresMigration], logger: Logger) async throws -> PostgresPool {
        try await PostgresMigration.apply(migrations, settings: settings, logger: logger)
        return PostgresPool(settings: settings, logger: logger)
    }

    init(settings: PostgresSettings, logger: Logger) {
        var configuration = PostgresClient.Configuration(
            host: settings.host, port: settings.port, username: settings.username, password: settings.password,
            database: settings.database, tls: settings.requireTLS ? .require(.makeClientConfiguration()) : .disable
        )
        configuration.options.maximumConnections = settings.poolSize
        configuration.options.connectTimeout = settings.connectTimeout
        configuration.options.additionalStartupParameters = Self.startupParameters(settings)
        self.client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.settings = settings
        self.logger = logger
    }

    /// Sent when each connection opens: the server cancels a statement running longer than the
    /// query timeout, so a timed-out request does not leave work behind it.
    static func startupParameters(_ settings: PostgresSettings) -> [(String, String)] {
        [("statement_timeout", "\(Int(settings.queryTimeout.milliseconds.rounded(.up)))ms"), ("application_name", "titanium")]
    }

    public func run() async throws {
        await self.client.run()
    }

    /// The rows of one statement, within `timeout` (the query timeout when nil).
    public func rows(_ query: PostgresQuery, timeout: Duration? = nil) async throws -> [PostgresRow] {
        try await self.withDeadline(timeout) { try await self.client.query(query, logger: self.logger).collect() }
    }

    /// Runs `body` in one transaction (BEGIN … COMMIT, ROLLBACK when it throws), within the deadline.
    public func transaction<Result: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> Result) async throws -> Result {
        try await self.withDeadline(nil) {
            try await self.client.withConnection { connection in
                try await connection.withTransaction(logger: self.logger) { connection in try await body(connection) }
            }
        }
    }

    /// A trivial query: throws when the database cannot answer (the health checks' probe).
    public func ping() async throws {
        _ = try await self.rows("SELECT 1", timeout: .seconds(1))
    }

    /// Runs `body` until `timeout` (the query timeout when nil); errors become what a request
    /// should answer (see the type's comment).
    private func withDeadline<Result: Sendable>(_ timeout: Duration?, _ body: @escaping @Sendable () async throws -> Result) async throws -> Result {
        let timeout = timeout ?? self.settings.queryTimeout
        do {
            return try await withThrowingTaskGroup(of: Result?.self) { group in
                group.addTask { try await body() }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let result = first else {
                    throw DatabaseTimeout(timeout: timeout)
                }
                return result
            }
        } catch {
            throw Self.classify(error)
        }
    }

    /// The error a store sees: ``UniqueViolation``, a 503 ``APIError`` when the database could
    /// not answer, or the error itself (a bug: a bad statement, a type mismatch).
    static func classify(_ error: any Error) -> any Error {
        switch error {
        case let error as PSQLError where error.code == .server:
            let state = error.serverInfo?[.sqlState] ?? ""
            if state == "23505" { return UniqueViolation(constraint: error.serverInfo?[.constraintName] ?? "") }
            // 08 connection exception, 53 insufficient resources (too many connections), 57
            // operator intervention (statement timeout, shutdown, cannot connect now).
            return ["08", "53", "57"].contains(String(state.prefix(2))) ? Self.unavailable : error
        case let error as PSQLError where error.code == .tooManyParameters || error.code == .messageDecodingFailure:
            return error
        case is PSQLError, is DatabaseTimeout, is CancellationError:
            return Self.unavailable
        case is PostgresDecodingError:
            return error
        default:
            // The pool's own errors (circuit breaker open, request cancelled, shut down) and
            // NIO's connection errors: the database could not be reached.
            return error is APIError ? error : Self.unavailable
        }
    }

    static let unavailable = APIError(
        .serviceUnavailable, message: "the database is unavailable; try again shortly", headers: [.retryAfter: "1"]
    )
}

/// A statement broke a unique index; `constraint` names it (e.g. `users_email_unique`).
public struct UniqueViolation: Error, Sendable {
    public let constraint: String
}

/// No answer within the query timeout.
public struct DatabaseTimeout: Error, CustomStringConvertible {
    public let timeout: Duration
    public var description: String { "no answer from PostgreSQL within \(self.timeout)" }
}
