import Foundation
import HummingbirdCore
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1
import NIOPosix
import Synchronization
import TitaniumHTTP
import TitaniumLogging
import TitaniumMetrics
import TitaniumTrace
import TitaniumTracing
import W3CTraceContext

/// Idle keep-alive connections to each backend, used only on their event loop.
final class UpstreamConnections: @unchecked Sendable {
    let eventLoop: any EventLoop
    unowned let forwarding: Forwarding
    private var idle: [BackendKey: [(channel: any Channel, handler: UpstreamHandler, since: NIODeadline)]] = [:]

    init(eventLoop: any EventLoop, forwarding: Forwarding) {
        self.eventLoop = eventLoop
        self.forwarding = forwarding
    }

    /// An idle keep-alive connection to a backend, if one is open and not past the idle timeout.
    func takeIdle(_ index: BackendKey) -> UpstreamHandler? {
        self.eventLoop.preconditionInEventLoop()
        guard self.idle[index]?.isEmpty == false else { return nil }
        let now = NIODeadline.now()
        while let last = self.idle[index]?.popLast() {
            if last.channel.isActive, now - last.since < self.forwarding.upstreamIdleTimeout { return last.handler }
            last.channel.close(promise: nil)
        }
        return nil
    }

    /// A new connection to a backend.
    func connect(to index: BackendKey) -> EventLoopFuture<UpstreamHandler> {
        self.eventLoop.preconditionInEventLoop()
        let backend = self.forwarding.upstreams[index.upstream].backends[index.backend]
        let handler = UpstreamHandler(connections: self, backend: index)
        return ClientBootstrap(group: self.eventLoop)
            // TCP_NODELAY is ClientBootstrap's default. (`.socketOption(.tcp_nodelay)` set it at
            // SOL_SOCKET, where its number is SO_DEBUG: refused without CAP_NET_ADMIN, so every
            // connect failed in a container with its capabilities dropped.)
            .connectTimeout(self.forwarding.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // NIOHTTP1's parts straight to the exchange: the head is converted once, while
                    // its hop-by-hop fields are dropped, not by a codec and then again. No outbound
                    // header validation: every field sent was parsed by NIO's HTTP/1 decoder or
                    // made here (ids, addresses, the configured authority).
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(enableOutboundHeaderValidation: false)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: backend.host, port: backend.port)
            .map { _ in handler }
    }

    /// Back to the idle list, for the next request on this event loop.
    func release(_ handler: UpstreamHandler) {
        guard let channel = handler.channel, channel.isActive else { return }
        // A slow client may have paused its reads; the next request needs them.
        try? channel.syncOptions?.setOption(.autoRead, value: true)
        self.idle[handler.backend, default: []].append((channel, handler, .now()))
    }

    func remove(_ handler: UpstreamHandler) {
        guard var list = self.idle[handler.backend] else { return }
        list.removeAll { $0.handler === handler }
        self.idle[handler.backend] = list
    }
}

/// The client side of one upstream connection: hands response parts to the exchange using it.
/// Confined to its event loop, like the forwarder and the exchange.
final class UpstreamHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let connections: UpstreamConnections
    let backend: BackendKey
    /// The exchange using this connection; its response deadline goes when it does.
    var exchange: Exchange? {
        didSet {
            if self.exchange == nil {
                self.responseDeadline = nil
                self.readTimeout = nil
            }
        }
    }
    var context: ChannelHandlerContext?
    var channel: (any Channel)? { self.context?.channel }
    /// When the head of the answer to the request sent last is due; nil once it came.
    private var responseDeadline: NIODeadline?
    /// Set once an answer's head arrived: the longest gap between its parts.
    private var readTimeout: TimeAmount?
    private var deadlineTimer: Scheduled<Void>?

    init(connections: UpstreamConnections, backend: BackendKey) {
        self.connections = connections
        self.backend = backend
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.deadlineTimer?.cancel()
        self.deadlineTimer = nil
        self.context = nil
    }

    /// Starts the response timeout of the request just sent. One timer per connection, not one
    /// per request: requests follow each other on a keep-alive connection, and when the timer
    /// fires it either times out the exchange waiting or waits again for the current deadline.
    func awaitResponse(within timeout: TimeAmount) {
        let deadline = NIODeadline.now() + timeout
        self.responseDeadline = deadline
        if self.deadlineTimer == nil { self.armDeadlineTimer(at: deadline) }
    }

    /// The head of the answer arrived: from now on the answer may not stall for longer than
    /// `readTimeout` between parts (an upstream that stops mid-answer is cut).
    func responseArrived(readTimeout: TimeAmount) {
        self.readTimeout = readTimeout
        self.responseDeadline = .now() + readTimeout
    }

    private func armDeadlineTimer(at deadline: NIODeadline) {
        guard let context = self.context else { return }
        self.deadlineTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self else { return }
            self.deadlineTimer = nil
            guard let deadline = self.responseDeadline else { return }
            if deadline <= .now() {
                self.responseDeadline = nil
                self.exchange?.responseTimedOut()
            } else {
                self.armDeadlineTimer(at: deadline)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let readTimeout = self.readTimeout, self.responseDeadline != nil { self.responseDeadline = .now() + readTimeout }
        self.exchange?.responsePart(self.unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.exchange?.flushClient()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.exchange?.upstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let exchange = self.exchange {
            exchange.upstreamFailed(UpstreamClosed())
        } else {
            self.connections.remove(self)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let exchange = self.exchange {
            exchange.upstreamFailed(error)
        }
        context.close(promise: nil)
    }

    func send(_ part: HTTPClientRequestPart, flush: Bool) {
        guard let context = self.context else { return }
        if flush {
            context.writeAndFlush(self.wrapOutboundOut(part), promise: nil)
        } else {
            context.write(self.wrapOutboundOut(part), promise: nil)
        }
    }
}

/// One replica of one upstream.
struct BackendKey: Hashable {
    var upstream: Int
    var backend: Int
}

struct UpstreamStalled: Error, CustomStringConvertible {
    var description: String { "the upstream stopped sending its answer" }
}

struct UpstreamClosed: Error, CustomStringConvertible {
    var description: String { "the upstream closed the connection" }
}
