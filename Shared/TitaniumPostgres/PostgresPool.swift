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
            database: settings.database, tls: settings.clientTLS.map { .require($0) } ?? .disable
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
        return try await self.withDeadline(timeout) { client, deadline in
            try await client.withConnection { connection in
                try deadline.acquired()
                return try await Self.closingOnCancel(connection) { try await connection.query(query, logger: logger).collect() }
            }
        }
    }

    /// Runs `body` in one transaction (BEGIN … COMMIT, ROLLBACK when it throws), within the deadline.
    public func transaction<Result: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> Result) async throws -> Result {
        let logger = self.logger
        return try await self.withDeadline(nil) { client, deadline in
            try await client.withConnection { connection in
                try deadline.acquired()
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

    /// How long a query cancelled at its deadline may take to end (its connection closing).
    static let cancelGrace: Duration = .seconds(1)

    /// Runs `body` on the current pool until `timeout` (the query timeout when nil); errors become
    /// what a request should answer (see the type's comment). `body` calls `acquired()` on its
    /// ``QueryDeadline`` once it holds a connection: a timeout before that, like a lost
    /// connection, makes the watcher look.
    ///
    /// At the deadline, a query that has its connection is cancelled, which closes the connection
    /// (postgres-nio lets a running query wait for the server otherwise, for as long as TCP takes
    /// to give up on a silent network), and its end is awaited for up to ``cancelGrace``: a result
    /// that had already arrived is answered rather than a 503. (A statement whose result had not
    /// arrived may still have committed: the client is told 503 then.) A query still waiting for
    /// a connection is answered at once, and never runs. `body` runs in a task of its own that
    /// the request does not wait for beyond that: postgres-nio's pool does not always resume a
    /// lease request cancelled while its connections are being made, and a query written to a
    /// connection being closed never ends (both seen behind a silent network,
    /// tests/edge/test_postgres_partition.py).
    private func withDeadline<Result: Sendable>(
        _ timeout: Duration?, _ body: @escaping @Sendable (PostgresClient, QueryDeadline) async throws -> Result
    ) async throws -> Result {
        let timeout = timeout ?? self.settings.queryTimeout
        let (client, down) = self.state.withLock { ($0.pool.client, $0.down) }
        guard !down else { throw Self.unavailable }
        let deadline = QueryDeadline()
        let answer = FirstAnswer<Result>()
        let work = Task {
            do { answer.give(.success(try await body(client, deadline))) } catch { answer.give(.failure(error)) }
        }
        let timer = Task {
            // Cut short when the watcher finds the server gone while this query still waits for
            // a connection.
            let end = ContinuousClock.now + timeout
            while ContinuousClock.now < end {
                guard (try? await Task.sleep(for: min(.milliseconds(100), ContinuousClock.now.duration(to: end)))) != nil else { return }
                if !deadline.isLeased, self.state.withLock({ $0.down }) { break }
            }
            if deadline.expire() {
                answer.give(.failure(DatabaseTimeout(timeout: timeout, leased: false)))
                work.cancel()
                return
            }
            work.cancel()
            // Its end answers, a late success included; but a query written to a connection that
            // another query's deadline is closing is dropped by postgres-nio and never ends.
            guard (try? await Task.sleep(for: Self.cancelGrace)) != nil else { return }
            answer.give(.failure(DatabaseTimeout(timeout: timeout, leased: true)))
        }
        do {
            let result = try await withTaskCancellationHandler {
                try await answer.value
            } onCancel: {
                work.cancel()
                answer.give(.failure(CancellationError()))
            }
            timer.cancel()
            return result
        } catch {
            timer.cancel()
            work.cancel()
            // After the deadline, what the cancellation caused (a closed connection, a cancelled
            // lease) is the timeout; PostgreSQL's own answer (a unique violation) stays itself.
            let serverAnswered = (error as? PSQLError)?.code == .server
            let timedOut = deadline.hasExpired && !serverAnswered
            let (classified, lost) = Self.classify(timedOut ? DatabaseTimeout(timeout: timeout, leased: deadline.isLeased) : error)
            if lost { self.state.withLock { $0.suspect = true } }
            throw classified
        }
    }

    /// Runs `body`; a cancellation closes `connection`, which fails the query under way (and rolls
    /// back an open transaction) instead of waiting for the server.
    private static func closingOnCancel<Result: Sendable>(
        _ connection: PostgresConnection, _ body: () async throws -> Result
    ) async throws -> Result {
        // The pool may lease a connection another query's deadline has just closed; a query
        // written to it would never end.
        guard !connection.isClosed else { throw ConnectionClosed() }
        // Cancelled already (its request answered): a query written now to the connection the
        // handler below closes would never end.
        try Task.checkCancellation()
        return try await withTaskCancellationHandler(operation: body) {
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

/// One query's race with its deadline, decided once under a lock: whether it got its connection
/// before the deadline passed.
final class QueryDeadline: Sendable {
    private enum State { case waiting, leased, expiredWaiting, expiredLeased }
    private let state = Mutex(State.waiting)

    /// The query holds its connection; throws when the deadline passed first (it must not run:
    /// its request has been answered 503).
    func acquired() throws {
        let ran = self.state.withLock { state in
            guard state == .waiting else { return false }
            state = .leased
            return true
        }
        if !ran { throw CancellationError() }
    }

    /// The deadline passed; true when the query had no connection (its request answers at once).
    func expire() -> Bool {
        self.state.withLock { state in
            switch state {
            case .waiting:
                state = .expiredWaiting
                return true
            case .leased:
                state = .expiredLeased
                return false
            case .expiredWaiting, .expiredLeased:
                return false
            }
        }
    }

    var isLeased: Bool { self.state.withLock { $0 == .leased || $0 == .expiredLeased } }
    var hasExpired: Bool { self.state.withLock { $0 == .expiredWaiting || $0 == .expiredLeased } }
}

/// The first of two answers to one request, the query's own or its deadline's; the later one is
/// dropped. (A task group would wait for the query's task, which may never end; see
/// ``PostgresPool`` `withDeadline`.)
final class FirstAnswer<Value: Sendable>: Sendable {
    private struct State {
        var answer: Result<Value, any Error>?
        var waiter: CheckedContinuation<Value, any Error>?
    }
    private let state = Mutex(State())

    func give(_ answer: Result<Value, any Error>) {
        let waiter = self.state.withLock { state -> CheckedContinuation<Value, any Error>? in
            guard state.answer == nil else { return nil }
            state.answer = answer
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: answer)
    }

    var value: Value {
        get async throws {
            try await withCheckedThrowingContinuation { continuation in
                let answer = self.state.withLock { state -> Result<Value, any Error>? in
                    if let answer = state.answer { return answer }
                    state.waiter = continuation
                    return nil
                }
                if let answer { continuation.resume(with: answer) }
            }
        }
    }
}

/// The pool leased a connection that was already closed (a 503, and the watcher looks).
struct ConnectionClosed: Error {}

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

extension PostgresSettings {
    /// TLS for connections to the server (nil: clear text), always verifying the certificate and
    /// the host name: against the system's roots, or only `sslrootcert`'s certificates.
    var clientTLS: TLSConfiguration? {
        guard self.requireTLS else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let path = self.rootCertificatePath { configuration.trustRoots = .file(path) }
        return configuration
    }
}
