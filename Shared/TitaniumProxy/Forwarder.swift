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

/// The proxies' forwarding path (the load balancer's `/api/*`, the gateway's routes), below
/// Hummingbird: a channel handler in each client connection's pipeline (on NIOHTTP1's parts,
/// in front of Hummingbird's HTTPTypes codec) sends the requests ``Forwarding/route`` claims to an upstream over keep-alive connections
/// owned by the same event loop, and relays the answer part by part. No task, no thread hop and
/// no copy of a body per request. Everything else (the dashboard, `/stats`, `/metrics`,
/// WebSocket upgrades, rate-limited routes) passes through to Hummingbird untouched.
///
/// It does what the observability middleware does for the requests it serves (request id,
/// trace context, metrics, window, access line, trace store) and what a balancer does: the
/// upstream's ``BackendBalancer`` picks the replica, one retry on another replica for an
/// idempotent body-less request that failed before any response, 502/503/504 in the shared JSON
/// error shape. Requests on one connection are answered in order: parts that arrive while a
/// request is being answered wait.
public final class Forwarder: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    public typealias InboundIn = HTTPServerRequestPart
    public typealias InboundOut = HTTPServerRequestPart
    public typealias OutboundIn = HTTPServerResponsePart
    public typealias OutboundOut = HTTPServerResponsePart

    let shared: Forwarding

    private enum State {
        case idle
        /// A request handed to Hummingbird, until both it and its response have ended.
        case passthrough(requestEnded: Bool, responseEnded: Bool)
        case forwarding(Exchange)
    }
    private var state = State.idle
    private var waiting: CircularBuffer<HTTPServerRequestPart> = []
    /// The server is shutting down: close once the request being forwarded is answered.
    private var quiescing = false
    /// The client has sent all it will: close once what it sent is answered.
    private var inputClosed = false
    private var context: ChannelHandlerContext?
    /// This event loop's upstream connections, looked up once per client connection.
    private(set) var upstreams: UpstreamConnections?

    init(shared: Forwarding) {
        self.shared = shared
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.upstreams = self.shared.connections(on: context.eventLoop)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = self.unwrapInboundIn(data)
        if !self.waiting.isEmpty {
            self.waiting.append(part)
            return
        }
        self.process(part, context: context)
    }

    private func process(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch (self.state, part) {
        case (.idle, .head(var head)):
            // Routes, limits, upstreams and Hummingbird's router all see the one canonical path.
            head.uri = CanonicalPath.target(head.uri)
            if let route = self.shared.route(head) {
                let exchange = Exchange(handler: self, context: context, head: head, route: route)
                self.state = .forwarding(exchange)
                exchange.start()
            } else {
                self.state = .passthrough(requestEnded: false, responseEnded: false)
                context.fireChannelRead(self.wrapInboundOut(.head(head)))
            }
        case (.passthrough, .head), (.forwarding, .head):
            // The next request before this one's response ended (pipelining): it waits.
            self.waiting.append(part)
        case (.passthrough(_, let responseEnded), .body), (.passthrough(_, let responseEnded), .end):
            // Hummingbird reads the rest of a body even after it has answered.
            context.fireChannelRead(self.wrapInboundOut(part))
            if case .end = part {
                self.state = .passthrough(requestEnded: true, responseEnded: responseEnded)
                self.passthroughProgressed(context: context)
            }
        case (.forwarding(let exchange), .body(let bytes)):
            exchange.requestBody(bytes)
        case (.forwarding(let exchange), .end(let trailers)):
            exchange.requestEnd(trailers)
        case (.idle, .body), (.idle, .end):
            // Parts of a request already answered (an error before its body was read).
            break
        }
    }

    /// Hummingbird's response parts on their way out: the end of one lets waiting parts in.
    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let part = self.unwrapOutboundIn(data)
        context.write(data, promise: promise)
        if case .end = part, case .passthrough(let requestEnded, _) = self.state {
            self.state = .passthrough(requestEnded: requestEnded, responseEnded: true)
            self.passthroughProgressed(context: context)
        }
    }

    private var isIdle: Bool {
        if case .idle = self.state { return true }
        return false
    }

    private func passthroughProgressed(context: ChannelHandlerContext) {
        guard case .passthrough(true, true) = self.state else { return }
        self.state = .idle
        self.drainWaiting(context: context)
    }

    /// Hummingbird's connection handler closes a connection with no request of its own in
    /// progress at once, on shutdown and when the client half-closes after sending: one whose
    /// request is being forwarded closes after its answer instead.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .forwarding = self.state {
            if event is ChannelShouldQuiesceEvent {
                self.quiescing = true
                return
            }
            if let event = event as? ChannelEvent, event == .inputClosed {
                self.inputClosed = true
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .forwarding(let exchange) = self.state {
            exchange.clientWritabilityChanged(context.channel.isWritable)
        }
        context.fireChannelWritabilityChanged()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if case .forwarding(let exchange) = self.state {
            exchange.clientClosed()
        }
        context.fireChannelInactive()
    }

    /// Called by the exchange when its response has been written in full.
    func exchangeFinished(_ exchange: Exchange, closeConnection: Bool, after written: EventLoopFuture<Void>?, context: ChannelHandlerContext) {
        guard case .forwarding(let current) = self.state, current === exchange else { return }
        self.state = .idle
        if closeConnection || self.quiescing || (self.inputClosed && self.waiting.isEmpty) {
            // Once the answer is out: a close drops the writes not yet sent.
            if let written {
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                written.whenComplete { _ in bound.value.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
            return
        }
        self.drainWaiting(context: context)
    }

    private func drainWaiting(context: ChannelHandlerContext) {
        var drained = false
        while let part = self.waiting.first {
            // The next request waits until this one is answered; its own parts go on.
            if case .head = part, !self.isIdle { break }
            self.waiting.removeFirst()
            self.process(part, context: context)
            drained = true
        }
        // Parts handed to Hummingbird outside a socket read reach it only with a read-complete
        // (its async channel delivers what it has buffered then).
        if drained, case .passthrough = self.state { context.fireChannelReadComplete() }
    }
}

/// Puts its forwarder in front of Hummingbird's `HTTP1ToHTTPServerCodec` (additional channel
/// handlers are added after it), then leaves the pipeline.
final class ForwarderInstaller: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny
    let forwarder: Forwarder

    init(forwarder: Forwarder) {
        self.forwarder = forwarder
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let operations = context.pipeline.syncOperations
        do {
            let codec = try operations.context(handlerType: HTTP1ToHTTPServerCodec.self)
            try operations.addHandler(self.forwarder, position: .before(codec.handler))
        } catch {
            context.fireErrorCaught(error)
        }
        operations.removeHandler(context: context, promise: nil)
    }
}
