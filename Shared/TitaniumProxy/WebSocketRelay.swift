import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWSClient
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket
import TitaniumHTTP

/// The request context of the proxies' WebSocket routes: it knows the client's address, for
/// `X-Forwarded-For` and the policy's trust.
public struct WebSocketRelayContext: WebSocketRequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.webSocket = .init()
        self.remoteAddress = source.channel.remoteAddress
    }
}

/// WebSocket upgrades relayed to a replica of an upstream: the client's socket is accepted, a
/// socket to the same target on the replica is opened with the fields ``ProxyPolicy`` forwards
/// (the handshake itself is made anew), and messages are copied both ways until either side
/// closes, which closes the other. No replica: 1013 (try again later); one that cannot be
/// reached: 1014 (bad gateway), and the balancer hears of it.
public struct WebSocketRelay: Sendable {
    public let upstream: ForwardingUpstream
    public let policy: ProxyPolicy
    public let logger: Logger
    public var maxMessageBytes = 1 << 20

    /// The handshake fields the client's side made: the relay makes its own.
    static let notCopied = FieldNameSet(
        ProxyPolicy.hopByHop.union(ProxyPolicy.setOnRequests).union([
            "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-accept",
        ])
    )

    public init(upstream: ForwardingUpstream, policy: ProxyPolicy = ProxyPolicy(), logger: Logger) {
        self.upstream = upstream
        self.policy = policy
        self.logger = logger
    }

    /// Relays WebSocket upgrades to `path` (e.g. `/api/**`).
    public func register(on router: Router<WebSocketRelayContext>, path: RouterPath) {
        router.ws(path) { inbound, outbound, context in
            try await self.relay(inbound: inbound, outbound: outbound, request: context.request, peer: context.requestContext.remoteAddress?.ipAddress ?? "unknown")
        }
    }

    func relay(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, request: Request, peer: String) async throws {
        let balancer = self.upstream.balancer
        guard let index = balancer.acquire(excluding: nil), self.upstream.backends.indices.contains(index) else {
            try await outbound.close(.unknown(1013), reason: "no healthy \(self.upstream.name)")
            return
        }
        let url = "ws://" + self.upstream.backends[index].authority + CanonicalPath.target(request.uri.string)
        var configuration = WebSocketClientConfiguration(maxFrameSize: self.maxMessageBytes)
        var forwarded = HTTPHeaders()
        self.policy.forwardedRequestFields(
            HTTPHeaders(request.headers.map { ($0.name.rawName, $0.value) }), peer: peer, into: &forwarded, except: Self.notCopied
        )
        // The client's request id when it is a valid one, as on every other path.
        forwarded.add(name: "X-Request-ID", value: request.headers[.xRequestID].flatMap(RequestID.accept) ?? RequestID.make())
        for (name, value) in forwarded {
            if let fieldName = HTTPField.Name(name) { configuration.additionalHeaders.append(HTTPField(name: fieldName, value: value)) }
        }
        var failed = false
        do {
            try await WebSocketClient.connect(url: url, configuration: configuration, logger: self.logger) { upstreamIn, upstreamOut, _ in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await message in upstreamIn.messages(maxSize: self.maxMessageBytes) {
                            try await outbound.write(message.frame)
                        }
                        try? await outbound.close(.normalClosure, reason: "upstream closed")
                    }
                    group.addTask {
                        for try await message in inbound.messages(maxSize: self.maxMessageBytes) {
                            try await upstreamOut.write(message.frame)
                        }
                        try? await upstreamOut.close(.normalClosure, reason: "client closed")
                    }
                    try await group.waitForAll()
                }
            }
        } catch {
            failed = true
            self.logger.warning("websocket relay failed", metadata: ["upstream.url": .string(url), "error": .string("\(error)")])
            try? await outbound.close(.unknown(1014), reason: "\(self.upstream.name) unreachable")
        }
        balancer.release(index, failed: failed)
    }
}

extension WebSocketMessage {
    /// The same message, to write to the other side.
    var frame: WebSocketOutboundWriter.OutboundFrame {
        switch self {
        case .text(let text): .text(text)
        case .binary(let bytes): .binary(bytes)
        }
    }
}

extension Forwarding {
    /// Hummingbird's HTTP/1 server with a forwarder in each connection, whose WebSocket upgrades
    /// go to `webSockets` (relays, the load balancer's heartbeat) instead.
    public func serverChannel(webSockets: Router<WebSocketRelayContext>) -> ServerChannel {
        let webSocketResponder = webSockets.buildResponder()
        return ServerChannel(upgradesWebSockets: true) { responder in
            HTTP1WebSocketUpgradeChannel(
                responder: responder, webSocketResponder: webSocketResponder,
                configuration: .init(http1: .init(additionalChannelHandlers: self.channelHandlers(), idleTimeout: nil))
            )
        }
    }
}
