import HTTPTypes
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle
import Synchronization
import TitaniumHTTP

/// A service's PostgreSQL: postgres-nio's pooled client, with the guarantees the stores rely on.
///
/// - Every query and transaction has a deadline (`DATABASE_QUERY_TIMEOUT_MS`), waiting for a
///   pooled connection included: the pool queues requests while PostgreSQL is unreachable.
///   The server enforces the same limit as `statement_timeout`.
/// - A database that cannot answer is a 503 ``APIError`` (`unavailable`, `Retry-After: 1`), not a
///   500: a connection refused or closed, a timeout, a server shutting down or out of
///   connections. A unique violation comes out as ``UniqueViolation`` for the store to name the field.
/// - Down fast, back fast. postgres-nio's pool retries a lost server with a growing backoff
///   (100 ms × 1.25 per attempt, up to a minute) that its configuration does not expose, so after
///   an outage of a minute it can take another minute to notice the server is back. So this type
///   watches for itself (hand-written, about 60 lines): after a failure that looks like a lost
///   server, it tries a connection of its own every 500 ms. While those fail, requests get their
///   503 at once instead of waiting out the deadline; when one succeeds, a new pool replaces the
///   old one, and requests use it at once.
///
/// It runs as a service of the application: the pool lives until the server has drained.
public final class PostgresPool: Service, Sendable {
    public let settings: PostgresSettings
    private let logger: Logger
    private let state: Mutex<State>
    /// Each pool to run: the first, then each replacement.
    private let pools: AsyncStream<Pool>
    private let newPools: AsyncStream<Pool>.Continuation

    /// One postgres-nio client and the signal that retires it.
    struct Pool: Sendable {
        let client: PostgresClient
        let retirement: AsyncStream<Void>
        let retire: AsyncStream<Void>.Continuation
    }

    struct State {
        var pool: Pool
        /// A failure suggested the server is gone: the watcher checks.
        var suspect = false
        /// The watcher could not connect: requests fail at once until it can.
        var down = false
    }

    /// Connects, applies `migrations` (waiting up to `settings.startupTimeout` for PostgreSQL to
    /// accept a connection), and returns the pool; ``run()`` must then run as a service.
    public static func open(settings: PostgresSettings, migrations: [PostgresMigration], logger: Logger) async throws -> PostgresPool {
        try await PostgresMigration.apply(migrations, settings: settings, logger: logger)
        return PostgresPool(settings: settings, logger: logger)
    }

    init(settings: PostgresSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        let first = Self.makePool(settings, logger: logger)
        self.state = Mutex(State(pool: first))
        (self.pools, self.newPools) = AsyncStream.makeStream(of: Pool.self)
        self.newPools.yield(first)
    }

    static func makePool(_ settings: PostgresSettings, logger: Logger) -> Pool {
        var configuration = PostgresClient.Configuration(
            host: settings.host, port: settings.port, username: settings.username, password: settings.password,
            database: settings.database, tls: settings.requireTLS ? .require(.makeClientConfiguration()) : .disable
        )
        configuration.options.maximumConnections = settings.poolSize
        configuration.options.connectTimeout = settings.connectTimeout
        configuration.options.additionalStartupParameters = Self.startupParameters(settings)
        let (retirement, retire) = AsyncStream.makeStream(of: Void.self)
        return Pool(client: PostgresClient(configuration: configuration, backgroundLogger: logger), retirement: retirement, retire: retire)
    }

    /// Sent when each connection opens: the server cancels a statement running longer than the
    /// query timeout, so a timed-out request does not leave work behind it.
    static func startupParameters(_ settings: PostgresSettings) -> [(String, String)] {
        [("statement_timeout", "\(Int(settings.queryTimeout.milliseconds.rounded(.up)))ms"), ("application_name", "titanium")]
    }

    /// Runs each pool until it is retired, and the watcher, until graceful shutdown (after the
    /// server has drained: the application lists this service before the server).
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.watch() }
                for await pool in self.pools {
                    let grace = self.settings.queryTimeout
                    group.addTask {
                        await withDiscardingTaskGroup { running in
                            running.addTask { await pool.client.run() }
                            for await _ in pool.retirement {}
                            // Queries still on a retired pool may finish (closing it cuts them).
                            try? await Task.sleep(for: grace)
                            running.cancelAll()
                        }
                    }
                }
                group.cancelAll()
            }
        }
    }

    /// Every 500 ms while a failure is suspected: one connection of its own decides whether the
    /// server is down (requests fail at once) or back (a new pool replaces the one that lost it).
    private func watch() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(500))
            guard self.state.withLock({ $0.suspect }), !Task.isCancelled else { continue }
            let reachable: Bool
            do {
                let connection = try await PostgresConnection.connect(configuration: try PostgresMigration.configuration(self.settings), id: 1, logger: self.logger)
                try? await connection.close()
                reachable = true
            } catch let error as PSQLError where error.code == .server {
                // The server answered (too many connections, a password refused): it is there.
                reachable = true
            } catch {
                reachable = false
            }
            // Made before taking the lock (with TLS it reads the CA bundle); unused unless needed.
            let fresh = reachable && self.state.withLock({ $0.down }) ? Self.makePool(self.settings, logger: self.logger) : nil
            let (replaced, wentDown): (Pool?, Bool) = self.state.withLock { state in
                let wasDown = state.down
                state.down = !reachable
                state.suspect = !reachable
                guard reachable, wasDown, let fresh else { return (nil, !reachable && !wasDown) }
                let old = state.pool
                state.pool = fresh
                self.newPools.yield(fresh)
                return (old, false)
            }
            if let replaced {
                replaced.retire.finish()
                self.logger.notice("PostgreSQL is back: a new pool replaces the one that lost it")
            } else if wentDown {
                self.logger.warning("PostgreSQL is unreachable: requests that need it answer 503 until it is back")
            }
        }
    }

    /// The rows of one statement, within `timeout` (the query timeout when nil).
    public func rows(_ query: PostgresQuery, timeout: Duration? = nil) async throws -> [PostgresRow] {
        let logger = self.logger
        return try await self.withDeadline(timeout) { client, leased in
            try await client.withConnection { connection in
                leased.set()
                return try await Self.closingOnCancel(connection) { try await connection.query(query, logger: logger).collect() }
            }
        }
    }

    /// Runs `body` in one transaction (BEGIN … COMMIT, ROLLBACK when it throws), within the deadline.
    public func transaction<Result: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> Result) async throws -> Result {
        let logger = self.logger
        return try await self.withDeadline(nil) { client, leased in
            try await client.withConnection { connection in
                leased.set()
                return try await Self.closingOnCancel(connection) {
                    try await connection.withTransaction(logger: logger) { connection in try await body(connection) }
                }
            }
        }
    }

    /// A trivial query: throws when the database cannot answer (the health checks' probe).
    public func ping() async throws {
        _ = try await self.rows("SELECT 1", timeout: .seconds(1))
    }

    /// Runs `body` on the current pool until `timeout` (the query timeout when nil); errors become
    /// what a request should answer (see the type's comment). `body` sets `leased` once it holds a
    /// connection: a timeout before that, like a lost connection, makes the watcher look.
    ///
    /// At the deadline `body` is cancelled, which closes its connection (postgres-nio lets a
    /// running query wait for the server otherwise, for as long as TCP takes to give up on a
    /// silent network), and its end is awaited: a statement that committed just before answers
    /// with its result, not with a 503 that would make a client repeat it.
    private func withDeadline<Result: Sendable>(
        _ timeout: Duration?, _ body: @escaping @Sendable (PostgresClient, SharedFlag) async throws -> Result
    ) async throws -> Result {
        let timeout = timeout ?? self.settings.queryTimeout
        let (client, down) = self.state.withLock { ($0.pool.client, $0.down) }
        guard !down else { throw Self.unavailable }
        let leased = SharedFlag()
        let expired = SharedFlag()
        do {
            return try await withThrowingTaskGroup(of: Result?.self) { group in
                group.addTask { try await body(client, leased) }
                group.addTask {
                    // The deadline, cut short when the watcher finds the server gone while this
                    // query still waits for a connection.
                    let deadline = ContinuousClock.now + timeout
                    while ContinuousClock.now < deadline {
                        try await Task.sleep(for: min(.milliseconds(100), ContinuousClock.now.duration(to: deadline)))
                        if !leased.isSet, self.state.withLock({ $0.down }) { break }
                    }
                    expired.set()
                    return nil
                }
                while let next = try await group.next() {
                    if let result = next {
                        group.cancelAll()
                        return result
                    }
                    group.cancelAll()  // the deadline: body's connection is closed under it
                }
                throw DatabaseTimeout(timeout: timeout, leased: leased.isSet)
            }
        } catch {
            let (classified, lost) = Self.classify(expired.isSet ? DatabaseTimeout(timeout: timeout, leased: leased.isSet) : error)
            if lost { self.state.withLock { $0.suspect = true } }
            throw classified
        }
    }

    /// Runs `body`; a cancellation closes `connection`, which fails the query under way (and rolls
    /// back an open transaction) instead of waiting for the server.
    private static func closingOnCancel<Result: Sendable>(
        _ connection: PostgresConnection, _ body: () async throws -> Result
    ) async throws -> Result {
        try await withTaskCancellationHandler(operation: body) {
            _ = connection.close() as EventLoopFuture<Void>
        }
    }

    /// The error a store sees: ``UniqueViolation``, a 503 ``APIError`` when the database could
    /// not answer, or the error itself (a bug: a bad statement, a type mismatch); and whether it
    /// suggests the server is gone.
    static func classify(_ error: any Error) -> (error: any Error, lost: Bool) {
        switch error {
        case let error as PostgresTransactionError:
            let cause = PostgresMigration.cause(of: error)
            return cause is PostgresTransactionError ? (Self.unavailable, false) : Self.classify(cause)
        case let error as PSQLError where error.code == .server:
            let state = error.serverInfo?[.sqlState] ?? ""
            if state == "23505" { return (UniqueViolation(constraint: error.serverInfo?[.constraintName] ?? ""), false) }
            // 08 connection exception, 53 insufficient resources (too many connections), 57
            // operator intervention (statement timeout, shutdown, cannot connect now).
            let unavailable = ["08", "53", "57"].contains(String(state.prefix(2)))
            return (unavailable ? Self.unavailable : error, state.hasPrefix("08") || state.hasPrefix("57P"))
        case let error as PSQLError where error.code == .tooManyParameters || error.code == .messageDecodingFailure:
            return (error, false)
        case is PSQLError:
            // The connection failed, closed, or was shut down under the query.
            return (Self.unavailable, true)
        case let timeout as DatabaseTimeout:
            // No connection within the deadline: the pool cannot reach the server, or it is
            // saturated; the watcher's own connection tells which.
            return (Self.unavailable, !timeout.leased)
        case is CancellationError:
            return (Self.unavailable, false)
        case is PostgresDecodingError, is APIError:
            return (error, false)
        default:
            // The pool's own errors (circuit breaker open, shut down) and NIO's connection errors.
            return (Self.unavailable, true)
        }
    }

    static let unavailable = APIError(
        .serviceUnavailable, message: "the database is unavailable; try again shortly", headers: [.retryAfter: "1"]
    )
}

/// A flag the deadline's task and the query's share: whether the query got its connection,
/// whether the deadline passed.
final class SharedFlag: Sendable {
    private let value = Mutex(false)
    func set() { self.value.withLock { $0 = true } }
    var isSet: Bool { self.value.withLock { $0 } }
}

/// A statement broke a unique index; `constraint` names it (e.g. `users_email_unique`).
public struct UniqueViolation: Error, Sendable {
    public let constraint: String
}

/// `INSERT … RETURNING` returned no row: PostgreSQL broke its promise (the stores' one such error).
public struct NoRowReturned: Error, Sendable {
    public init() {}
}

/// No answer within the query timeout; `leased` tells whether a connection was had.
public struct DatabaseTimeout: Error, CustomStringConvertible {
    public let timeout: Duration
    public let leased: Bool
    public var description: String { "no answer from PostgreSQL within \(self.timeout)" + (self.leased ? "" : " (no connection)") }
}
