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

/// One forwarded request: from its head to its response's end.
final class Exchange: @unchecked Sendable {
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
    /// The client's address, as `X-Forwarded-For` and the policy's trust see it.
    var peer: String { self.context.channel.remoteAddress?.ipAddress ?? "unknown" }
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
    private var upstream: UpstreamHandler? {
        // Without an upstream nothing holds the client's reads back (its body is drained).
        didSet { if self.upstream == nil { self.readClient(true) } }
    }
    private var reusedConnection = false
    /// Request parts received before the upstream connection was ready.
    private var pending: [HTTPClientRequestPart] = []
    private var pendingBytes = 0
    /// Whether any part of the request went out on the current attempt.
    private var sent = false
    private var bodyBytes = 0
    private var clientReading = true
    /// The write of the answer's end: a connection closed after the answer waits for it.
    private var lastWrite: EventLoopFuture<Void>?
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
        // Safe to send again even if it may have arrived (a reused connection closed under it).
        self.replayable = ProxyPolicy.mayRetry(method: head.method, declaresBody: declaresBody, sent: true)
        // `Connection: close`, or HTTP/1.0 without keep-alive.
        self.closeAfter = !head.isKeepAlive
        self.countsInWindow = route.countsInWindow
        self.userID = Forwarding.userID(head, traces: handler.shared.traces)
        self.shared.kit.metrics.requestStarted()
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
    /// request was sent; connecting has its own timeout), or an answer that stopped mid-way for
    /// the read timeout: then the client's connection is cut, as the answer is partly out.
    func responseTimedOut() {
        guard !self.finished else { return }
        if self.responseStarted {
            self.upstreamFailed(UpstreamStalled())
            return
        }
        if let backend = self.backend { self.balancer.release(backend, failed: true) }
        self.dropUpstream()
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
        headers.reserveCapacity(self.request.headers.count + 6)
        headers.add(name: "Host", value: authority)
        self.shared.policy.forwardedRequestFields(self.request.headers, peer: self.peer, into: &headers)
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
            if upstreamHead.status == .switchingProtocols {
                // Only relayed WebSocket upgrades switch protocols; here it is an upstream's error.
                self.upstreamFailed(UpstreamClosed())
                return
            }
            guard !(100..<200).contains(upstreamHead.status.code) else { return }
            self.responseStarted = true
            self.upstream?.responseArrived(readTimeout: self.shared.readTimeout)
            self.status = Int(upstreamHead.status.code)
            self.upstreamFailing = ProxyPolicy.upstreamFailed(status: self.status, headers: upstreamHead.headers)
            if !upstreamHead.isKeepAlive { self.upstreamKeepAlive = false }
            // The upstream's head as ours, without its hop-by-hop fields.
            var headers = HTTPHeaders()
            headers.reserveCapacity(upstreamHead.headers.count + 3)
            self.shared.policy.forwardedResponseFields(upstreamHead.headers, into: &headers)
            if self.upstreamFailing {
                headers.add(name: "Proxy-Status", value: ProxyPolicy.relayedFailure(status: self.status, service: self.upstreamName))
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
            let ended = TrafficWindow.monotonicNanos()
            self.lastWrite = self.context.writeAndFlush(self.handler.wrapOutboundOut(.end(trailers)))
            if let backend = self.backend { self.balancer.release(backend, failed: self.upstreamFailing) }
            self.record(status: self.status, endNanos: ended)
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
        self.dropUpstream()
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
            if ProxyPolicy.mayRetry(method: self.request.method, declaresBody: self.declaresBody, sent: self.sent) && self.attempts < 2 {
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
        self.dropUpstream()
        if let backend = self.backend { self.balancer.release(backend, failed: false) }
        if self.responseStarted {
            self.record(status: self.status)
            self.finished = true
            self.context.close(promise: nil)
            return
        }
        self.fail(APIError(.contentTooLarge, message: "request body exceeds the limit of \(self.shared.kit.configuration.maxBodyBytes) bytes"))
    }

    /// The answer for a failed upstream, logged with the error itself (``FailureLog``): the answer
    /// names only its kind.
    private func failure(_ error: any Error) -> APIError {
        let answer = ProxyPolicy.failure(error, service: self.upstreamName, sent: self.sent)
        self.shared.failures.warn(upstream: self.upstreamName, error: error, status: answer.status.code, requestID: self.requestID)
        return answer
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
        // The rest of an unread body would be taken for the next request: close after answering.
        let mustClose = self.closeAfter || !self.requestEnded
        let (head, body) = error.http1Answer(requestID: self.requestID, traceparent: self.traceparent, close: mustClose)
        self.status = error.status.code
        self.bytes = body.readableBytes
        self.context.write(self.handler.wrapOutboundOut(.head(head)), promise: nil)
        self.context.write(self.handler.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        self.lastWrite = self.context.writeAndFlush(self.handler.wrapOutboundOut(.end(nil)))
        self.record(status: error.status.code)
        self.handler.exchangeFinished(self, closeConnection: mustClose, after: self.lastWrite, context: self.context)
    }

    /// Lets go of the upstream connection (closed: it may still carry part of this exchange).
    private func dropUpstream() {
        guard let upstream = self.upstream else { return }
        upstream.exchange = nil
        upstream.channel?.close(promise: nil)
        self.upstream = nil
    }

    /// Hands the connection back once both the request and the response have ended.
    private func complete() {
        guard self.finished, self.requestEnded else { return }
        self.handler.exchangeFinished(self, closeConnection: self.closeAfter, after: self.lastWrite, context: self.context)
    }

    /// - Parameter endNanos: when the answer ended, taken before its last bytes were written: the
    ///   hop in front may read them and record its own end before this thread gets on (a proxy's
    ///   span must not look shorter than the span of the hop behind it).
    private func record(status: Int, endNanos: UInt64? = nil) {
        let path = Forwarding.path(of: self.request.uri)
        let traces = self.shared.traces.flatMap { $0.configuration.records(path: path) ? $0 : nil }
        self.shared.kit.accounting.finished(
            method: self.request.method.rawValue, route: self.route.label, path: path, status: status, startNanos: self.startNanos,
            countsInWindow: self.countsInWindow, bytes: self.bytes, requestID: self.requestID, span: self.span,
            remoteAddress: self.context.channel.remoteAddress, userAgent: self.request.headers.first(name: "user-agent"),
            recorder: traces, userID: self.userID, endNanos: endNanos
        )
    }
}
