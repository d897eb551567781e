import Glibc
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// What ``ServiceKit/makeApplication(router:checks:details:server:services:onServerRunning:)``
/// returns: Hummingbird's application, served by a listener bound with `SO_REUSEPORT` as well as
/// `SO_REUSEADDR` (Hummingbird's own server sets only the latter, and offers no way to add it).
///
/// With it a new process can listen on the port of one that is still draining, so a restart of
/// a service that runs as one process never refuses a connection: start the new process, wait
/// until it is ready, then SIGTERM the old one (`scripts/stack.sh restart`). While both listen,
/// the kernel spreads new connections over the two; once the old one stops accepting, all go to
/// the new one. Everything else is Hummingbird's `Application.run()`: the responder, the
/// `Date` and `Server` fields, the attached services, graceful shutdown (the listener closed
/// first, then every connection after its current answer).
public struct SharedPortApplication<Responder: HTTPResponder>: ApplicationProtocol
where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
    public let responder: Responder
    let channel: ServerChannel
    let limits: ConnectionLimits
    let cuts: ConnectionCuts
    let host: String
    let port: Int
    let serverName: String
    let connectionLimit: ConnectionLimit
    public let services: [any Service]
    let running: @Sendable (any Channel) async -> Void
    public let logger: Logger

    /// Hummingbird's server and configuration, as before: HummingbirdTesting's `.live` wraps the
    /// application and runs Hummingbird's own `run()` with them (on port 0); `run()` below is
    /// what a service runs.
    public var server: HTTPServerBuilder { self.channel.builder(limits: self.limits, cuts: self.cuts) }
    public var configuration: ApplicationConfiguration {
        .init(address: .hostname(self.host, port: self.port), serverName: self.serverName, availableConnectionsDelegate: self.connectionLimit)
    }

    public func onServerRunning(_ channel: any Channel) async {
        await self.running(channel)
    }

    public func run() async throws {
        let dates = HTTPDates()
        let responder = self.responder
        let logger = self.logger
        let serverName = self.serverName
        let childChannel = try self.channel.guardedChildChannel(limits: self.limits, cuts: self.cuts) { (request, writer: consuming ResponseWriter, channel) in
            let context = Responder.Context(source: .init(channel: channel, logger: logger))
            var response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch let error as HTTPParserError {
                throw error
            } catch {
                logger.debug("Unrecognised Error", metadata: ["error.type": "\(error)"])
                response = Response(status: .internalServerError, body: .init())
            }
            response.headers[.date] = dates.now()
            response.headers[.server] = serverName
            do {
                try await writer.write(response: response.head, body: response.body)
            } catch is HTTPParserError {
                // Another answer must not be written: the connection is closed.
                throw ParseErrorWhileWriting()
            }
        }
        let server = self.server(childChannel)
        try await ServiceGroup(configuration: .init(services: self.services + [server], logger: logger)).run()
    }

    private func server<Channel: ServerChildChannel>(_ childChannel: Channel) -> any Service {
        SharedPortServer(
            childChannel: childChannel, host: self.host, port: self.port, connectionLimit: self.connectionLimit,
            onServerRunning: self.running, logger: self.logger
        )
    }

    struct ParseErrorWhileWriting: Error {}
}

/// One listener on `host:port` with `SO_REUSEADDR` and `SO_REUSEPORT`, serving each accepted
/// connection with `childChannel` until a graceful shutdown: then the listener closes, and each
/// connection is told to quiesce (closed after its current answer), as Hummingbird's server does.
struct SharedPortServer<ChildChannel: ServerChildChannel>: Service {
    let childChannel: ChildChannel
    let host: String
    let port: Int
    let connectionLimit: ConnectionLimit
    let onServerRunning: @Sendable (any Channel) async -> Void
    let logger: Logger

    func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let quiescing = ServerQuiescingHelper(group: group)
        let limit = self.connectionLimit
        let childChannel = self.childChannel
        let logger = self.logger
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AvailableConnectionsChannelHandler(delegate: limit))
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .bind(host: self.host, port: self.port) { channel in
                childChannel.setup(channel: channel, logger: logger)
            }
        logger.info("Server started and listening on \(self.host):\(listener.channel.localAddress?.port ?? self.port)")
        await withGracefulShutdownHandler {
            await self.onServerRunning(listener.channel)
            await withDiscardingTaskGroup { tasks in
                do {
                    try await listener.executeThenClose { inbound in
                        for try await connection in inbound {
                            tasks.addTask { await childChannel.handle(value: connection, logger: logger) }
                        }
                    }
                } catch {
                    logger.error("Waiting on child channel: \(error)")
                }
            }
        } onGracefulShutdown: {
            let done = listener.channel.eventLoop.makePromise(of: Void.self)
            quiescing.initiateShutdown(promise: done)
        }
    }
}

/// The `Date` field, formatted once a second: Hummingbird's own (`DateCache`) is internal to it.
final class HTTPDates: Sendable {
    private let cached = Mutex<(second: Int, text: String)>((-1, ""))

    func now() -> String {
        var time = time_t()
        Glibc.time(&time)
        let second = Int(time)
        return self.cached.withLock { cached in
            if cached.second == second { return cached.text }
            var parts = tm()
            gmtime_r(&time, &parts)
            var buffer = [CChar](repeating: 0, count: 64)
            let length = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
            let text = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            cached = (second, text)
            return text
        }
    }
}
