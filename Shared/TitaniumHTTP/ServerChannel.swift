import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import Prometheus
import TitaniumMetrics

/// How a service's connections are served: a Hummingbird child channel (plain HTTP/1, or HTTP/1
/// with WebSocket upgrades), each connection held to its limits by a ``ConnectionGuard``.
public struct ServerChannel: Sendable {
    let make: @Sendable (@escaping HTTPChannelHandler.Responder) throws -> any ServerChildChannel
    /// Whether the channel upgrades WebSocket requests (the guard then lets the first request's
    /// upgrade through).
    let upgradesWebSockets: Bool

    public init(
        upgradesWebSockets: Bool = false,
        _ make: @escaping @Sendable (@escaping HTTPChannelHandler.Responder) throws -> any ServerChildChannel
    ) {
        self.upgradesWebSockets = upgradesWebSockets
        self.make = make
    }

    /// Plain HTTP/1.1, with `additionalChannelHandlers` after Hummingbird's codec.
    public static func http1(additionalChannelHandlers: @escaping @Sendable () -> [any RemovableChannelHandler] = { [] }) -> ServerChannel {
        ServerChannel { responder in
            // Idle connections are the guard's: Hummingbird's own idle timer stays off.
            HTTP1Channel(responder: responder, configuration: .init(additionalChannelHandlers: additionalChannelHandlers(), idleTimeout: nil))
        }
    }

    /// Hummingbird's server builder whose every connection gets a guard with `limits`.
    func builder(limits: ConnectionLimits, cuts: ConnectionCuts) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            Self.guarded(try self.make(responder), limits: limits, cuts: cuts, upgradable: self.upgradesWebSockets)
        }
    }

    /// The guarded child channel for `responder`, for a listener of its own (``SharedPortApplication``).
    func guardedChildChannel(
        limits: ConnectionLimits, cuts: ConnectionCuts, responder: @escaping HTTPChannelHandler.Responder
    ) throws -> any ServerChildChannel {
        Self.guarded(try self.make(responder), limits: limits, cuts: cuts, upgradable: self.upgradesWebSockets)
    }

    private static func guarded(_ base: some ServerChildChannel, limits: ConnectionLimits, cuts: ConnectionCuts, upgradable: Bool) -> any ServerChildChannel {
        GuardedChildChannel(base: base, limits: limits, cuts: cuts, upgradable: upgradable)
    }
}

/// A child channel with the two sides of a ``ConnectionGuard`` around NIO's HTTP decoder.
struct GuardedChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let limits: ConnectionLimits
    let cuts: ConnectionCuts
    let upgradable: Bool

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let guarded = ConnectionGuard(limits: self.limits, onCut: self.cuts.count)
        do {
            try channel.pipeline.syncOperations.addHandler(ConnectionGuard.RawSide(guarded), position: .first)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return self.base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let operations = channel.pipeline.syncOperations
            let decoder = try operations.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try operations.addHandler(ConnectionGuard.PartsSide(guarded, upgradable: self.upgradable), position: .after(decoder.handler))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await self.base.handle(value: value, logger: logger)
    }
}

/// `http_connections_cut_total{reason}`: connections closed for a limit or a refused request.
public struct ConnectionCuts: Sendable {
    private let counters: [ConnectionCut: Counter]

    init(registry: PrometheusCollectorRegistry) {
        var counters: [ConnectionCut: Counter] = [:]
        for cut in ConnectionCut.allCases {
            counters[cut] = registry.makeCounter(
                named: "http_connections_cut_total", labels: [("reason", cut.rawValue)],
                help: "Client connections closed by the server for a time limit or a refused request, by reason."
            )
        }
        self.counters = counters
    }

    func count(_ cut: ConnectionCut) {
        self.counters[cut]?.increment()
    }
}

/// At most `HTTP_MAX_CONNECTIONS` open client connections (further ones wait in the listen
/// backlog), counted in `http_connections_open` against `http_connections_max`.
struct ConnectionLimit: AvailableConnectionsDelegate {
    let maximum: Int
    let open: Gauge
    var count = 0

    init(maximum: Int, registry: PrometheusCollectorRegistry) {
        self.maximum = maximum
        self.open = registry.makeGauge(named: "http_connections_open", help: "Client connections open now.")
        registry.makeGauge(named: "http_connections_max", help: "Client connections the server holds at most (HTTP_MAX_CONNECTIONS).").set(Double(maximum))
    }

    mutating func connectionOpened() {
        self.count += 1
        self.open.set(Double(self.count))
    }

    mutating func connectionClosed() {
        self.count -= 1
        self.open.set(Double(self.count))
    }

    func isAcceptingNewConnections() -> Bool {
        self.count < self.maximum
    }
}
