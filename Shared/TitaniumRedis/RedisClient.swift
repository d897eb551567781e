import NIOPosix
import ServiceLifecycle
import Synchronization

/// A small pool of hiredis connections. Every call runs on the client's own thread pool, never
/// on an event loop or the cooperative pool, and is bounded by the connect and command
/// timeouts. A failed connection is dropped; for `reconnectInterval` after a failure calls fail
/// fast with ``RedisError/unavailable(_:)``, then the next call connects again, so the client
/// comes back by itself when Redis does. Run it as a `Service` to close it on shutdown.
public final class RedisClient: Service, Sendable {
    public let configuration: RedisConfiguration
    private let threadPool: NIOThreadPool
    /// While true, every call fails at once as if Redis were unreachable (an injected fault).
    private let severed: @Sendable () -> Bool

    private struct State {
        var idle: [RedisConnection] = []
        var lastFailure: ContinuousClock.Instant?
        var lastError: String?
        var isOnline = false
        var closed = false
    }
    private let state = Mutex(State())

    /// - Parameter severed: while it answers true, the client behaves as if Redis were down
    ///   (a dependency fault injected through `/admin/faults`).
    public init(configuration: RedisConfiguration, severed: @escaping @Sendable () -> Bool = { false }) {
        self.configuration = configuration
        self.severed = severed
        self.threadPool = NIOThreadPool(numberOfThreads: max(configuration.poolSize, 1))
        self.threadPool.start()
    }

    /// Whether the last command (or connection attempt) succeeded.
    public var isOnline: Bool { self.state.withLock { $0.isOnline } }
    public var lastError: String? { self.state.withLock { $0.lastError } }

    /// Sends one command.
    public func send(_ arguments: [String]) async throws -> RedisReply {
        if self.severed() {
            self.recordFailure("injected fault: cache is down")
            throw RedisError.unavailable("injected fault: cache is down")
        }
        return try await self.threadPool.runIfActive { try self.sendBlocking(arguments) }
    }

    public func get(_ key: String) async throws -> String? {
        try await self.send(["GET", key]).string
    }

    public func set(_ key: String, _ value: String, ttlSeconds: Int? = nil) async throws {
        var arguments = ["SET", key, value]
        if let ttlSeconds { arguments += ["EX", String(ttlSeconds)] }
        _ = try await self.send(arguments)
    }

    @discardableResult
    public func delete(_ keys: String...) async throws -> Int {
        try await self.send(["DEL"] + keys).integer ?? 0
    }

    /// Runs a Lua script (`EVAL`).
    public func eval(_ script: String, keys: [String], arguments: [String]) async throws -> RedisReply {
        try await self.send(["EVAL", script, String(keys.count)] + keys + arguments)
    }

    /// PING; used by health checks, so it also reconnects once the back-off has passed.
    public func ping() async -> Bool {
        (try? await self.send(["PING"]))?.string == "PONG"
    }

    public func run() async throws {
        try? await gracefulShutdown()
        self.state.withLock { state in
            state.closed = true
            state.idle.removeAll()
        }
        try await self.threadPool.shutdownGracefully()
    }

    private func sendBlocking(_ arguments: [String]) throws -> RedisReply {
        let connection = try self.checkout()
        do {
            let reply = try connection.send(arguments)
            self.checkin(connection)
            return reply
        } catch .reply(let message) {
            // An error reply leaves the connection usable.
            self.checkin(connection)
            throw RedisError.reply(message)
        } catch {
            self.recordFailure("\(error)")
            throw error
        }
    }

    private func checkout() throws(RedisError) -> RedisConnection {
        enum Next { case use(RedisConnection), connect, backOff(String) }
        let next: Next = self.state.withLock { state in
            if let connection = state.idle.popLast() { return .use(connection) }
            if let failure = state.lastFailure, failure.duration(to: .now) < self.configuration.reconnectInterval {
                return .backOff(state.lastError ?? "recent failure")
            }
            return .connect
        }
        switch next {
        case .use(let connection):
            return connection
        case .backOff(let message):
            throw .unavailable(message)
        case .connect:
            do {
                return try RedisConnection(configuration: self.configuration)
            } catch {
                self.recordFailure(error.description)
                throw error
            }
        }
    }

    private func checkin(_ connection: RedisConnection) {
        self.state.withLock { state in
            state.isOnline = true
            state.lastFailure = nil
            state.lastError = nil
            if !state.closed && state.idle.count < self.configuration.poolSize {
                state.idle.append(connection)
            }
        }
    }

    private func recordFailure(_ message: String) {
        self.state.withLock { state in
            state.isOnline = false
            state.lastFailure = .now
            state.lastError = message
            // Connections opened before the failure are probably broken too.
            state.idle.removeAll()
        }
    }
}
