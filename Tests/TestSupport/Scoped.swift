import AsyncHTTPClient
import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Runs `body`, then `tearDown`, whether `body` returned or threw. When both fail, `body`'s
/// error is the one thrown: it says what went wrong, the tear-down's only what followed.
public func withTearDown<T>(_ body: () async throws -> T, tearDown: () async throws -> Void) async throws -> T {
    let result: T
    do {
        result = try await body()
    } catch {
        try? await tearDown()
        throw error
    }
    try await tearDown()
    return result
}

/// An HTTP client for `body`, shut down after it (AsyncHTTPClient traps on a client dropped
/// without `shutdown()`).
public func withHTTPClient<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
    let client = HTTPClient(eventLoopGroupProvider: .singleton)
    return try await withTearDown { try await body(client) } tearDown: { try await client.shutdown() }
}

/// A real `redis-server` on a free port for `body`, killed after it. `body` may stop and
/// restart it.
public func withRedisServer<T>(_ body: (RedisServer) async throws -> T) async throws -> T {
    let redis = try await RedisServer()
    return try await withTearDown { try await body(redis) } tearDown: { await redis.stop() }
}

/// `router` served in this process on a free 127.0.0.1 port (a stand-in upstream) for `body`,
/// which gets the port; the server stops after it.
public func withServer<Builder: HTTPResponderBuilder, T>(
    _ router: Builder, server: HTTPServerBuilder = .http1(), _ body: (Int) async throws -> T
) async throws -> T where Builder.Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
    let (port, stop) = try await startServer(router, server: server)
    return try await withTearDown { try await body(port) } tearDown: { await stop() }
}

/// Starts `router` in this process on a free 127.0.0.1 port: the port, and how to stop it.
/// Prefer ``withServer(_:server:_:)``, which always stops it.
public func startServer<Builder: HTTPResponderBuilder>(
    _ router: Builder, server: HTTPServerBuilder = .http1()
) async throws -> (port: Int, stop: @Sendable () async -> Void)
where Builder.Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
    let port = NIOLockedValueBox<Int?>(nil)
    let app = Application(
        router: router,
        server: server,
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in port.withLockedValue { $0 = channel.localAddress?.port } },
        logger: Logger(label: "upstream")
    )
    let group = ServiceGroup(configuration: .init(services: [app], logger: app.logger))
    let task = Task { try await group.run() }
    // 20 s, as a service process gets to report its port: a machine busy flushing a CI run's
    // writes once held every test's start for about 6 s.
    let bound = try await poll(timeout: .seconds(20)) { port.withLockedValue { $0 } }
    return (bound, { await group.triggerGracefulShutdown(); _ = await task.result })
}
