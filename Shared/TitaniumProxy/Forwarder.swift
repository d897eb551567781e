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
    /// progress at once: one whose request is being forwarded closes after its answer instead.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent, case .forwarding = self.state {
            self.quiescing = true
            return
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
    fileprivate func exchangeFinished(_ exchange: Exchange, closeConnection: Bool, context: ChannelHandlerContext) {
        guard case .forwarding(let current) = self.state, current === exchange else { return }
        self.state = .idle
        if closeConnection || self.quiescing {
            context.close(promise: nil)
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

/// Where a forwarded request goes: which upstream, under which route label (metrics, access
/// line, trace store), and whether it counts in the traffic window.
public struct ForwardingRoute: Sendable {
    public var upstream: Int
    public var label: String
    public var countsInWindow: Bool

    public init(upstream: Int, label: String, countsInWindow: Bool = true) {
        self.upstream = upstream
        self.label = label
        self.countsInWindow = countsInWindow
    }
}

/// Picks the replica of an upstream for each attempt and hears how it went.
public protocol BackendBalancer: Sendable {
    /// A replica's index, never `excluding`; nil when none is available.
    func acquire(excluding: Int?) -> Int?
    /// The attempt on `index` is over; `failed` when it could not connect or answered 5xx.
    func release(_ index: Int, failed: Bool)
}

/// A service's URLs taken in turn, the same rotation its ``ReverseProxy`` route uses, with no
/// health of their own (a retry still skips the one that failed).
extension UpstreamPool: BackendBalancer {
    public func acquire(excluding: Int?) -> Int? {
        let index = self.pickIndex()
        guard index == excluding else { return index }
        return self.baseURLs.count > 1 ? (index + 1) % self.baseURLs.count : nil
    }

    public func release(_ index: Int, failed: Bool) {}
}

/// One service behind the proxy: its name (in error messages), its replicas and how they are picked.
public struct ForwardingUpstream: Sendable {
    public struct Backend: Sendable {
        var host: String
        var port: Int
        var authority: String
    }

    public var name: String
    var backends: [Backend]
    var balancer: any BackendBalancer

    /// - Parameter key: the setting the URLs came from, named when one is not `http://host[:port]`.
    public init(name: String, urls: [String], balancer: any BackendBalancer, key: String) throws(ConfigurationError) {
        self.name = name
        self.backends = try urls.map { url throws(ConfigurationError) in
            guard let components = URLComponents(string: url), components.scheme == "http", let host = components.host else {
                throw ConfigurationError(key: key, value: url, expected: "http://host:port URLs (https is not forwarded here)")
            }
            let port = components.port ?? 80
            return Backend(host: host, port: port, authority: port == 80 ? host : "\(host):\(port)")
        }
        self.balancer = balancer
    }

    /// A service with no health checks of its own, its URLs in turn; nil when one of them is not
    /// plain `http://` (those stay with ``ReverseProxy``, which speaks TLS).
    public init?(plainHTTP pool: UpstreamPool) {
        guard pool.baseURLs.allSatisfy({ $0.lowercased().hasPrefix("http://") }),
            let upstream = try? ForwardingUpstream(name: pool.name, urls: pool.baseURLs, balancer: pool, key: pool.name)
        else { return nil }
        self = upstream
    }
}

/// What every connection's forwarder shares: the upstreams, the route decision, the upstream
/// connections per event loop, and the kit's observability.
public final class Forwarding: Sendable {
    let upstreams: [ForwardingUpstream]
    let route: @Sendable (HTTPRequestHead) -> ForwardingRoute?
    let kit: ServiceKit
    let traces: TraceRecorder?
    let connectTimeout: TimeAmount
    let responseTimeout: TimeAmount
    let upstreamIdleTimeout: TimeAmount
    private let connections = NIOLockedValueBox<[ObjectIdentifier: UpstreamConnections]>([:])

    /// - Parameters:
    ///   - responseTimeout: from sending a request upstream to the head of its answer (default:
    ///     the outbound read timeout); the upstream's connect timeout comes before it.
    ///   - route: the requests to forward, decided on the head; nil leaves a request to Hummingbird.
    public init(
        upstreams: [ForwardingUpstream], kit: ServiceKit, responseTimeout: Duration? = nil,
        route: @escaping @Sendable (HTTPRequestHead) -> ForwardingRoute?
    ) {
        self.upstreams = upstreams
        self.route = route
        self.kit = kit
        self.traces = kit.traces
        let client = kit.configuration.client
        self.connectTimeout = .nanoseconds(client.connectTimeout.nanoseconds)
        self.responseTimeout = .nanoseconds((responseTimeout ?? client.readTimeout).nanoseconds)
        self.upstreamIdleTimeout = .nanoseconds(client.idleTimeout.nanoseconds)
    }

    /// The upstream connections of one event loop.
    func connections(on eventLoop: any EventLoop) -> UpstreamConnections {
        let key = ObjectIdentifier(eventLoop)
        return self.connections.withLockedValue { all in
            if let existing = all[key] { return existing }
            let created = UpstreamConnections(eventLoop: eventLoop, forwarding: self)
            all[key] = created
            return created
        }
    }

    /// A handler for one client connection.
    public func makeHandler() -> Forwarder {
        Forwarder(shared: self)
    }

    /// The handlers to add to each connection (Hummingbird's `additionalChannelHandlers`): the
    /// forwarder goes before Hummingbird's HTTPTypes codec, on NIOHTTP1's parts, so a forwarded
    /// request is never converted to HTTPTypes and back.
    public var channelHandlers: @Sendable () -> [any RemovableChannelHandler] {
        { [ForwarderInstaller(forwarder: self.makeHandler())] }
    }

    /// Hummingbird's HTTP/1 server with a forwarder in each connection.
    public var serverChannel: ServerChannel {
        .http1(additionalChannelHandlers: self.channelHandlers)
    }

    /// `Upgrade: websocket`: relayed by the WebSocket path, not forwarded. Other upgrades are
    /// forwarded as plain requests (`Upgrade` is hop-by-hop and dropped).
    public static func isWebSocketUpgrade(_ head: HTTPRequestHead) -> Bool {
        head.headers[canonicalForm: "upgrade"].contains { $0.utf8.elementsEqualIgnoringCase("websocket".utf8) }
    }

    /// A request target's path: everything before the query.
    public static func path(of target: String) -> String {
        target.firstIndex(of: "?").map { String(target[..<$0]) } ?? target
    }

    /// `/api` and `/api/*`: the path is exactly `prefix` or goes on with `/` or `?`.
    public static func path(_ path: String, isUnder prefix: String) -> Bool {
        guard path.hasPrefix(prefix) else { return false }
        let rest = path.utf8.dropFirst(prefix.utf8.count)
        return rest.isEmpty || rest.first == UInt8(ascii: "/") || rest.first == UInt8(ascii: "?")
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
            .connectTimeout(self.forwarding.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
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
    fileprivate var exchange: Exchange? {
        didSet { if self.exchange == nil { self.responseDeadline = nil } }
    }
    var context: ChannelHandlerContext?
    var channel: (any Channel)? { self.context?.channel }
    /// When the head of the answer to the request sent last is due; nil once it came.
    private var responseDeadline: NIODeadline?
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

    /// The head of the answer arrived: no more timeout for this request.
    func responseArrived() {
        self.responseDeadline = nil
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

/// The header fields a forwarded message does not carry over (hop-by-hop ones, and those the
/// forwarder sets itself), looked up per field without lowercasing it into a new string.
enum FieldNames {
    static let replacedInRequests = FieldNameSet(
        ReverseProxy.hopByHop.union([
            "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id", "traceparent", "tracestate", "content-length",
        ])
    )
    static let replacedInResponses = FieldNameSet(ReverseProxy.hopByHop.union(["x-request-id", "traceparent"]))
}

/// Lowercase field names, grouped by length and compared ASCII case-insensitively.
struct FieldNameSet: Sendable {
    private let byLength: [[String]]

    init(_ names: some Sequence<String>) {
        var byLength: [[String]] = []
        for name in names {
            let length = name.utf8.count
            if byLength.count <= length { byLength += Array(repeating: [], count: length + 1 - byLength.count) }
            byLength[length].append(name)
        }
        self.byLength = byLength
    }

    func contains(_ name: String) -> Bool {
        let length = name.utf8.count
        guard length < self.byLength.count else { return false }
        return self.byLength[length].contains { $0.utf8.elementsEqualIgnoringCase(name.utf8) }
    }
}

struct UpstreamClosed: Error, CustomStringConvertible {
    var description: String { "the upstream closed the connection" }
}

/// One forwarded request: from its head to its response's end.
private final class Exchange: @unchecked Sendable {
    unowned let handler: Forwarder
    let context: ChannelHandlerContext
    let shared: Forwarding
    let request: HTTPRequestHead
    let route: ForwardingRoute
    let upstreamName: String
    let balancer: any BackendBalancer
    let startNanos = TrafficWindow.monotonicNanos()
    let requestID: String
    let span: W3CSpanContext
    let replayable: Bool
    /// Whether the client sends a body (a length above zero, or chunked).
    let declaresBody: Bool
    let declaredLength: Int?
    let closeAfter: Bool
    let countsInWindow: Bool
    let userID: String?

    private var backend: Int?
    private var excluded: Int?
    private var lastError: (any Error)?
    private var attempts = 0
    private var upstream: UpstreamHandler?
    private var reusedConnection = false
    /// Request parts received before the upstream connection was ready.
    private var pending: [HTTPClientRequestPart] = []
    private var pendingBytes = 0
    /// Whether any part of the request went out on the current attempt.
    private var sent = false
    private var bodyBytes = 0
    private var clientReading = true
    private var requestEnded = false
    private var responseStarted = false
    private var status = 0
    private var bytes = 0
    private var finished = false
    private var upstreamKeepAlive = true
    private var upstreamFailing = false

    init(handler: Forwarder, context: ChannelHandlerContext, head: HTTPRequestHead, route: ForwardingRoute) {
        self.handler = handler
        self.context = context
        self.shared = handler.shared
        self.request = head
        self.route = route
        self.upstreamName = handler.shared.upstreams[route.upstream].name
        self.balancer = handler.shared.upstreams[route.upstream].balancer
        self.requestID = head.headers.first(name: "x-request-id").flatMap(RequestID.accept) ?? RequestID.make()
        // The same span rule as the tracer of every Hummingbird route: continue the caller's
        // trace, or start one with the tracer's trace id.
        self.span = handler.shared.kit.tracer.spanContext(
            childOf: W3CTracer.remoteSpanContext(traceparent: head.headers.first(name: "traceparent"), tracestate: head.headers.first(name: "tracestate"))
        )
        let declaredLength = head.headers.first(name: "content-length").flatMap(Int.init)
        let declaresBody = declaredLength.map { $0 > 0 } ?? head.headers.contains(name: "transfer-encoding")
        self.declaredLength = declaredLength
        self.declaresBody = declaresBody
        self.replayable = [.GET, .HEAD, .OPTIONS].contains(head.method) && !declaresBody
        // `Connection: close`, or HTTP/1.0 without keep-alive.
        self.closeAfter = !head.isKeepAlive
        self.countsInWindow = route.countsInWindow
        self.userID = Self.userID(head, traces: handler.shared.traces)
        self.shared.kit.metrics.requestStarted()
    }

    /// The user id as the trace store's sources give it (no token is verified on this path).
    static func userID(_ head: HTTPRequestHead, traces: TraceRecorder?) -> String? {
        guard let traces else { return nil }
        let query = Self.queryValue(named: "user_id", in: head.uri)
        return traces.userID(tokenSubject: nil, header: head.headers.first(name: "x-user-id"), query: query)
    }

    /// A query parameter's value, percent-decoded (as `URLComponents.queryItems` gives it), without
    /// parsing the whole URL on every request.
    static func queryValue(named name: String, in target: String?) -> String? {
        guard let target, let mark = target.firstIndex(of: "?") else { return nil }
        let query = target[target.index(after: mark)...]
        let prefix = name + "="
        guard query.contains(prefix) else { return nil }
        for pair in query.split(separator: "&") where pair.hasPrefix(prefix) {
            return String(pair.dropFirst(prefix.count)).removingPercentEncoding
        }
        return nil
    }

    /// This span's `traceparent`, sent upstream and back to the client: rendered once.
    private lazy var traceparent = self.span.traceparent

    func start() {
        if let length = self.declaredLength, length > self.shared.kit.configuration.maxBodyBytes {
            self.fail(APIError(.contentTooLarge, message: "request body of \(length) bytes exceeds the limit of \(self.shared.kit.configuration.maxBodyBytes) bytes"))
            return
        }
        self.attempt()
    }

    /// No head of an answer within the response timeout (its connection's timer, armed when the
    /// request was sent; connecting has its own timeout).
    func responseTimedOut() {
        guard !self.responseStarted, !self.finished else { return }
        if let backend = self.backend { self.balancer.release(backend, failed: true) }
        self.upstream?.exchange = nil
        self.upstream?.channel?.close(promise: nil)
        self.upstream = nil
        self.fail(.nextHop(.gatewayTimeout, service: self.upstreamName, error: "http_response_timeout"))
    }

    private func attempt() {
        guard let index = self.balancer.acquire(excluding: self.excluded) else {
            // No other replica for the retry: the answer is the first attempt's failure.
            if let error = self.lastError { self.fail(self.failure(error)) } else {
                self.fail(.nextHop(.serviceUnavailable, service: self.upstreamName, error: "destination_unavailable"))
            }
            return
        }
        self.backend = index
        self.attempts += 1
        self.sent = false
        guard let connections = self.handler.upstreams else {
            self.fail(.nextHop(.badGateway, service: self.upstreamName, error: "proxy_internal_error"))
            return
        }
        let key = BackendKey(upstream: self.route.upstream, backend: index)
        if let idle = connections.takeIdle(key) {
            self.use(idle, reused: true)
            return
        }
        connections.connect(to: key).assumeIsolated().whenComplete { [self] result in
            guard !self.finished else {
                if case .success(let upstream) = result { upstream.channel?.close(promise: nil) }
                return
            }
            switch result {
            case .success(let upstream): self.use(upstream, reused: false)
            case .failure(let error): self.upstreamFailed(error)
            }
        }
    }

    private func use(_ upstream: UpstreamHandler, reused: Bool) {
        // A connection already out of its pipeline could neither send nor time out the request.
        guard upstream.context != nil else {
            self.upstreamFailed(UpstreamClosed())
            return
        }
        self.upstream = upstream
        self.reusedConnection = reused
        upstream.exchange = self
        self.sendHead(to: upstream, backend: upstream.backend.backend)
    }

    private func sendHead(to upstream: UpstreamHandler, backend: Int) {
        self.sent = true
        upstream.awaitResponse(within: self.shared.responseTimeout)
        let authority = self.shared.upstreams[self.route.upstream].backends[backend].authority
        var headers = HTTPHeaders()
        let incoming = self.request.headers
        headers.reserveCapacity(incoming.count + 6)
        headers.add(name: "Host", value: authority)
        let listed = incoming.contains(name: "connection") ? incoming[canonicalForm: "connection"] : []
        for (name, value) in incoming {
            if FieldNames.replacedInRequests.contains(name) || listed.contains(where: { $0.utf8.elementsEqualIgnoringCase(name.utf8) }) {
                continue
            }
            headers.add(name: name, value: value)
        }
        let peer = self.context.channel.remoteAddress?.ipAddress ?? "unknown"
        headers.add(name: "X-Forwarded-For", value: incoming.first(name: "x-forwarded-for").map { $0 + ", " + peer } ?? peer)
        headers.add(name: "X-Forwarded-Proto", value: incoming.first(name: "x-forwarded-proto") ?? "http")
        if let host = incoming.first(name: "x-forwarded-host") ?? incoming.first(name: "host") { headers.add(name: "X-Forwarded-Host", value: host) }
        headers.add(name: "X-Request-ID", value: self.requestID)
        headers.add(name: "traceparent", value: self.traceparent)
        if let state = self.span.traceContext.traceStateHeaderValue, !state.isEmpty { headers.add(name: "tracestate", value: state) }
        // Framing is ours, never the client's: ``RequestFraming`` let through at most one
        // Content-Length or exactly `Transfer-Encoding: chunked`, and this sends the same.
        if let length = self.declaredLength {
            headers.add(name: "Content-Length", value: String(length))
        } else if self.declaresBody {
            headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        let head = HTTPRequestHead(version: .http1_1, method: self.request.method, uri: self.request.uri, headers: headers)
        upstream.send(.head(head), flush: false)
        if !self.declaresBody {
            upstream.send(.end(nil), flush: true)
            return
        }
        for part in self.pending { upstream.send(part, flush: false) }
        self.pending.removeAll()
        self.pendingBytes = 0
        upstream.channel?.flush()
        self.readClient(upstream.channel?.isWritable ?? true)
    }

    func requestBody(_ bytes: ByteBuffer) {
        guard !self.finished else { return }
        self.bodyBytes += bytes.readableBytes
        if self.bodyBytes > self.shared.kit.configuration.maxBodyBytes {
            // A chunked body has no declared length to refuse up front.
            self.bodyTooLarge()
            return
        }
        if let upstream = self.upstream {
            upstream.send(.body(.byteBuffer(bytes)), flush: true)
        } else {
            self.pending.append(.body(.byteBuffer(bytes)))
            self.pendingBytes += bytes.readableBytes
            // Until an upstream connection takes them, parts wait here: stop reading past a bound.
            if self.pendingBytes > Self.pendingLimit { self.readClient(false) }
        }
    }

    static let pendingLimit = 64 * 1024

    /// Client reads follow the upstream's appetite (backpressure both ways).
    private func readClient(_ on: Bool) {
        guard self.clientReading != on else { return }
        self.clientReading = on
        self.context.channel.setOption(.autoRead, value: on).whenFailure { _ in }
        if on { self.context.read() }
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        self.readClient(writable)
    }

    func requestEnd(_ trailers: HTTPHeaders?) {
        self.requestEnded = true
        guard !self.finished else {
            self.complete()
            return
        }
        if !self.declaresBody { return }  // already ended upstream
        if let upstream = self.upstream {
            upstream.send(.end(trailers), flush: true)
        } else {
            self.pending.append(.end(trailers))
        }
    }

    func responsePart(_ part: HTTPClientResponsePart) {
        guard !self.finished else { return }
        switch part {
        case .head(let upstreamHead):
            guard !(100..<200).contains(upstreamHead.status.code) else { return }
            self.responseStarted = true
            self.upstream?.responseArrived()
            self.status = Int(upstreamHead.status.code)
            // A 5xx the upstream made about its own next hop is not the upstream's failure.
            self.upstreamFailing = self.status >= 500 && !upstreamHead.headers.contains(name: "proxy-status")
            if !upstreamHead.isKeepAlive { self.upstreamKeepAlive = false }
            // The upstream's head as ours, without its hop-by-hop fields.
            let connection = upstreamHead.headers.contains(name: "connection") ? upstreamHead.headers[canonicalForm: "connection"] : []
            var headers = HTTPHeaders()
            headers.reserveCapacity(upstreamHead.headers.count + 3)
            for (name, value) in upstreamHead.headers {
                if FieldNames.replacedInResponses.contains(name) || connection.contains(where: { $0.utf8.elementsEqualIgnoringCase(name.utf8) }) {
                    continue
                }
                headers.add(name: name, value: value)
            }
            headers.add(name: "X-Request-ID", value: self.requestID)
            headers.add(name: "traceparent", value: self.traceparent)
            if self.closeAfter { headers.add(name: "Connection", value: "close") }
            let head = HTTPResponseHead(version: .http1_1, status: upstreamHead.status, headers: headers)
            self.context.write(self.handler.wrapOutboundOut(.head(head)), promise: nil)
        case .body(let buffer):
            self.bytes += buffer.readableBytes
            self.context.write(self.handler.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        case .end(let trailers):
            self.context.writeAndFlush(self.handler.wrapOutboundOut(.end(trailers)), promise: nil)
            if let backend = self.backend { self.balancer.release(backend, failed: self.upstreamFailing) }
            self.record(status: self.status)
            if let upstream = self.upstream {
                upstream.exchange = nil
                if self.upstreamKeepAlive && (self.requestEnded || !self.declaresBody) {
                    upstream.connections.release(upstream)
                } else {
                    upstream.channel?.close(promise: nil)
                }
                self.upstream = nil
            }
            self.finished = true
            self.complete()
        }
    }

    func flushClient() {
        self.context.flush()
    }

    func clientWritabilityChanged(_ writable: Bool) {
        self.upstream?.channel?.setOption(.autoRead, value: writable).whenFailure { _ in }
    }

    func upstreamFailed(_ error: any Error) {
        guard !self.finished else { return }
        if let upstream = self.upstream {
            upstream.exchange = nil
            upstream.channel?.close(promise: nil)
            self.upstream = nil
        }
        if self.responseStarted {
            // Part of the answer is out: all that is left is to cut the client off.
            if let backend = self.backend { self.balancer.release(backend, failed: true) }
            self.record(status: self.status)
            self.finished = true
            self.context.close(promise: nil)
            return
        }
        if let backend = self.backend {
            // A reused keep-alive connection the upstream had already closed is not the upstream's fault.
            if self.reusedConnection && error is UpstreamClosed && self.replayable {
                self.reusedConnection = false
                self.balancer.release(backend, failed: false)
                self.attempt()
                return
            }
            self.balancer.release(backend, failed: true)
            // A request that never left (no connection) may go to another replica whatever its
            // method; one that may have reached the upstream only if it is safe to repeat.
            if (!self.sent || self.replayable) && self.attempts < 2 {
                self.excluded = backend
                self.lastError = error
                self.attempt()
                return
            }
        }
        self.fail(self.failure(error))
    }

    /// The client's fault, not the upstream's: 413, or the connection cut if the answer has begun.
    private func bodyTooLarge() {
        if let upstream = self.upstream {
            upstream.exchange = nil
            upstream.channel?.close(promise: nil)
            self.upstream = nil
        }
        if let backend = self.backend { self.balancer.release(backend, failed: false) }
        if self.responseStarted {
            self.record(status: self.status)
            self.finished = true
            self.context.close(promise: nil)
            return
        }
        self.fail(APIError(.contentTooLarge, message: "request body exceeds the limit of \(self.shared.kit.configuration.maxBodyBytes) bytes"))
    }

    /// 504 for a connect timeout, 502 for anything else (refused, reset, closed).
    private func failure(_ error: any Error) -> APIError {
        if let channelError = error as? ChannelError, case .connectTimeout = channelError {
            return .nextHop(.gatewayTimeout, service: self.upstreamName, error: "connection_timeout")
        }
        if let ioError = error as? IOError, ioError.errnoCode == ECONNREFUSED {
            return .nextHop(.badGateway, service: self.upstreamName, error: "connection_refused")
        }
        return .nextHop(.badGateway, service: self.upstreamName, error: self.sent ? "connection_terminated" : "destination_unavailable")
    }

    func clientClosed() {
        guard !self.finished else { return }
        self.finished = true
        if let upstream = self.upstream {
            upstream.exchange = nil
            upstream.channel?.close(promise: nil)
        }
        if let backend = self.backend { self.balancer.release(backend, failed: false) }
        self.record(status: 499)
    }

    /// Answers with the shared JSON error shape.
    private func fail(_ error: APIError) {
        guard !self.finished else { return }
        self.finished = true
        let body = ByteBuffer(bytes: error.jsonBody(requestID: self.requestID))
        var headers = HTTPHeaders(error.headers.map { ($0.name.rawName, $0.value) })
        headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "X-Request-ID", value: self.requestID)
        headers.add(name: "traceparent", value: self.traceparent)
        // The rest of an unread body would be taken for the next request: close after answering.
        let mustClose = self.closeAfter || !self.requestEnded
        if mustClose { headers.add(name: "Connection", value: "close") }
        let status = HTTPResponseStatus(statusCode: error.status.code, reasonPhrase: error.status.reasonPhrase)
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        self.status = error.status.code
        self.bytes = body.readableBytes
        self.context.write(self.handler.wrapOutboundOut(.head(head)), promise: nil)
        self.context.write(self.handler.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        self.context.writeAndFlush(self.handler.wrapOutboundOut(.end(nil)), promise: nil)
        self.record(status: error.status.code)
        self.handler.exchangeFinished(self, closeConnection: mustClose, context: self.context)
    }

    /// Hands the connection back once both the request and the response have ended.
    private func complete() {
        guard self.finished, self.requestEnded else { return }
        self.handler.exchangeFinished(self, closeConnection: self.closeAfter, context: self.context)
    }

    private func record(status: Int) {
        let path = Forwarding.path(of: self.request.uri)
        let traces = self.shared.traces.flatMap { $0.configuration.records(path: path) ? $0 : nil }
        self.shared.kit.accounting.finished(
            method: self.request.method.rawValue, route: self.route.label, path: path, status: status, startNanos: self.startNanos,
            countsInWindow: self.countsInWindow, bytes: self.bytes, requestID: self.requestID, span: self.span,
            remoteAddress: self.context.channel.remoteAddress, userAgent: self.request.headers.first(name: "user-agent"),
            recorder: traces, userID: self.userID
        )
    }
}
