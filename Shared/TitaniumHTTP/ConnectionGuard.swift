import HTTPTypes
import NIOCore
import NIOHTTP1

/// The time limits of one client connection, from accept (nginx's `client_header_timeout`,
/// `client_body_timeout`, `keepalive_timeout`, `send_timeout`).
public struct ConnectionLimits: Sendable {
    /// From accept, or from the first byte of a later request, to the end of its head.
    public var headerTimeout: TimeAmount
    /// The longest a request body may stop moving, and a response wait for a client that does not read.
    public var bodyIdleTimeout: TimeAmount
    /// An idle keep-alive connection is closed after this.
    public var idleTimeout: TimeAmount
    /// From a request's head to the end of its answer; nil: no limit.
    public var writeTimeout: TimeAmount?

    public init(headerTimeout: TimeAmount, bodyIdleTimeout: TimeAmount, idleTimeout: TimeAmount, writeTimeout: TimeAmount? = nil) {
        self.headerTimeout = headerTimeout
        self.bodyIdleTimeout = bodyIdleTimeout
        self.idleTimeout = idleTimeout
        self.writeTimeout = writeTimeout
    }

    /// The timer's longest sleep: no deadline set later can come before the timer fires.
    var tick: TimeAmount {
        min(self.headerTimeout, self.bodyIdleTimeout, self.idleTimeout, self.writeTimeout ?? self.idleTimeout, ConnectionGuard.drainAfterAnswer)
    }
}

/// Why a connection was cut, the label of `http_connections_cut_total`.
public enum ConnectionCut: String, Sendable, CaseIterable {
    case headerTimeout = "header_timeout"
    case bodyTimeout = "body_timeout"
    case idleTimeout = "idle_timeout"
    case writeTimeout = "write_timeout"
    case slowReader = "slow_reader"
    case badRequest = "bad_request"
}

/// Holds every client connection to its time limits and refuses requests a second parser could
/// read differently, below HTTP parsing, so that nothing above it (Hummingbird, the proxies'
/// forwarder, the WebSocket upgrader) can be kept waiting by a client. Hummingbird has only an
/// idle timeout, and none before the first request on a WebSocket-capable server: this is why it
/// is written by hand.
///
/// Two handlers share it: ``RawSide`` first in the pipeline (sees bytes arrive, writes the
/// refusals, notices a client that stops reading) and ``PartsSide`` right after NIO's HTTP
/// decoder (sees heads, bodies and answers). One timer per connection, re-armed when it fires.
/// Confined to the connection's event loop.
final class ConnectionGuard: @unchecked Sendable {
    private enum Phase {
        case active
        /// Answered and half-closed; input is read and dropped until the client closes or `linger` ends.
        case closing
        /// Upgraded (WebSocket): none of this applies any more.
        case upgraded
    }

    static let linger: TimeAmount = .seconds(2)
    /// The rest of a body answered early is read for at most this long (nginx's `lingering_time`).
    static let drainAfterAnswer: TimeAmount = .seconds(5)
    /// Bytes that may arrive between requests (a head, and what a pipelined read brings):
    /// beyond it the decoder would only be buffering (NIO's head limit is 80 KB).
    static let maxBytesBetweenRequests = 128 * 1024

    let limits: ConnectionLimits
    let onCut: @Sendable (ConnectionCut) -> Void
    private var phase = Phase.active
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?

    private let accepted = NIODeadline.now()
    /// Whether an answer has been written in full (the connection is then kept alive between requests).
    private var keptAlive = false
    private var idleSince = NIODeadline.now()
    /// When the first byte of a head that has not ended yet arrived.
    private var headBytesSince: NIODeadline?
    /// A head has arrived and its body has not ended.
    private(set) var requestOpen = false
    private var lastProgress = NIODeadline.now()
    private var requestStart = NIODeadline.now()
    /// Requests received whose answer has not ended.
    private(set) var unanswered = 0
    /// An answer's head is out and its end is not.
    private var responseOpen = false
    private var unwritableSince: NIODeadline?
    /// When the request being read was answered already (its body is only drained).
    private var answeredWhileReading: NIODeadline?
    /// Bytes arrived since the last head while no request was open (or while an upgrade is decided).
    private var bytesBetweenRequests = 0
    /// The WebSocket upgrade of the first request is being decided: NIO hands on the bytes after
    /// its head unparsed; they pass as they are, only counted.
    var upgrading = false {
        didSet { self.bytesBetweenRequests = 0 }
    }

    init(limits: ConnectionLimits, onCut: @escaping @Sendable (ConnectionCut) -> Void) {
        self.limits = limits
        self.onCut = onCut
    }

    var isActive: Bool {
        if case .active = self.phase { return true }
        return false
    }

    var isUpgraded: Bool {
        if case .upgraded = self.phase { return true }
        return false
    }

    /// A pipelined request waits behind one not answered yet: reading more would only queue more.
    /// (Not held for the one request of an ordinary keep-alive exchange: pausing and resuming
    /// reads costs two epoll calls per request.)
    var waitsForAnswer: Bool { self.unanswered > 1 }

    // MARK: Events

    func attached(_ context: ChannelHandlerContext) {
        self.context = context
        self.arm()
    }

    func detached() {
        self.timer?.cancel()
        self.timer = nil
        self.context = nil
    }

    func bytesArrived(_ count: Int) {
        guard !self.requestOpen || self.upgrading else { return }
        if self.headBytesSince == nil, !self.requestOpen { self.headBytesSince = .now() }
        self.bytesBetweenRequests += count
        if self.bytesBetweenRequests > Self.maxBytesBetweenRequests {
            self.cut(.badRequest, answer: APIError(.badRequest, message: "more than \(Self.maxBytesBetweenRequests) bytes without a request"))
        }
    }

    func writabilityChanged(_ writable: Bool) {
        self.unwritableSince = writable ? nil : (self.unwritableSince ?? .now())
    }

    func head() {
        let now = NIODeadline.now()
        self.headBytesSince = nil
        self.bytesBetweenRequests = 0
        self.answeredWhileReading = nil
        self.requestOpen = true
        self.unanswered += 1
        self.lastProgress = now
        self.requestStart = now
    }

    func bodyProgressed() {
        self.lastProgress = .now()
    }

    func requestEnded() {
        self.requestOpen = false
        self.answeredWhileReading = nil
        if self.unanswered == 0 { self.idleSince = .now() }
    }

    func responseStarted() {
        self.responseOpen = true
    }

    func responseEnded() {
        self.responseOpen = false
        self.keptAlive = true
        self.unanswered = max(0, self.unanswered - 1)
        if self.unanswered == 0, !self.requestOpen { self.idleSince = .now() }
        if self.requestOpen { self.answeredWhileReading = .now() }
    }

    func upgraded() {
        self.phase = .upgraded
        self.timer?.cancel()
        self.timer = nil
    }

    /// Refuses the request being read: the answer when no other answer is under way, then the
    /// connection is closed.
    func refuse(_ error: APIError) {
        self.cut(.badRequest, answer: error)
    }

    // MARK: Timer

    private func arm() {
        guard let context, case .active = self.phase else { return }
        let now = NIODeadline.now()
        let next = min(self.nextDeadline() ?? now + self.limits.tick, now + self.limits.tick)
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: next) { [weak self] in
            guard let self else { return }
            self.timer = nil
            guard case .active = self.phase else { return }
            if let (cut, answer) = self.expired(at: .now()) {
                self.cut(cut, answer: answer)
            } else {
                self.arm()
            }
        }
    }

    private func nextDeadline() -> NIODeadline? {
        var deadlines: [NIODeadline] = []
        if self.requestOpen { deadlines.append(self.lastProgress + self.limits.bodyIdleTimeout) }
        if self.requestOpen, let answered = self.answeredWhileReading { deadlines.append(answered + Self.drainAfterAnswer) }
        if let write = self.limits.writeTimeout, self.unanswered > 0 { deadlines.append(self.requestStart + write) }
        if let since = self.unwritableSince { deadlines.append(since + self.limits.bodyIdleTimeout) }
        if !self.requestOpen, self.unanswered == 0 { deadlines.append(self.waitingDeadline) }
        return deadlines.min()
    }

    /// Between requests: a head that has begun must end within the header timeout; before the
    /// first request nothing may take longer than that either; afterwards the idle timeout.
    private var waitingDeadline: NIODeadline {
        if let since = self.headBytesSince { return since + self.limits.headerTimeout }
        if !self.keptAlive { return self.accepted + self.limits.headerTimeout }
        return self.idleSince + self.limits.idleTimeout
    }

    private func expired(at now: NIODeadline) -> (ConnectionCut, APIError?)? {
        if self.requestOpen, now >= self.lastProgress + self.limits.bodyIdleTimeout {
            return (.bodyTimeout, APIError(.requestTimeout, message: "the request body stopped arriving"))
        }
        // A body dripped after its answer keeps nothing open for long.
        if self.requestOpen, let answered = self.answeredWhileReading, now >= answered + Self.drainAfterAnswer {
            return (.bodyTimeout, nil)
        }
        if let write = self.limits.writeTimeout, self.unanswered > 0, now >= self.requestStart + write {
            return (.writeTimeout, nil)
        }
        // A client that does not read what it is sent, inside an answer or between pipelined ones.
        if let since = self.unwritableSince, now >= since + self.limits.bodyIdleTimeout {
            return (.slowReader, nil)
        }
        if !self.requestOpen, self.unanswered == 0, now >= self.waitingDeadline {
            if self.headBytesSince != nil {
                return (.headerTimeout, APIError(.requestTimeout, message: "the request head did not arrive in time"))
            }
            return (self.keptAlive ? .idleTimeout : .headerTimeout, nil)
        }
        return nil
    }

    /// Answers (when no other answer has begun and none is owed first) and closes the connection:
    /// output first, then, after the linger, input, so that the answer is not lost to a reset
    /// while the client is still sending.
    private func cut(_ cut: ConnectionCut, answer: APIError?) {
        guard case .active = self.phase, let context else { return }
        self.phase = .closing
        self.timer?.cancel()
        self.timer = nil
        if cut != .idleTimeout { self.onCut(cut) }
        // Only the request being read may be answered, and only when it has no answer yet.
        guard let answer, !self.responseOpen, self.unanswered == (self.requestOpen ? 1 : 0) else {
            context.close(promise: nil)
            return
        }
        context.writeAndFlush(NIOAny(Self.encode(answer)), promise: nil)
        context.close(mode: .output, promise: nil)
        context.eventLoop.assumeIsolated().scheduleTask(in: Self.linger) { context.close(promise: nil) }
    }

    /// A whole HTTP/1.1 answer with the shared JSON error body and `Connection: close`.
    static func encode(_ error: APIError) -> ByteBuffer {
        let body = error.jsonBody(requestID: nil)
        var buffer = ByteBuffer()
        buffer.writeString("HTTP/1.1 \(error.status.code) \(error.status.reasonPhrase)\r\n")
        buffer.writeString("Content-Type: application/json; charset=utf-8\r\nContent-Length: \(body.count)\r\nConnection: close\r\n")
        for field in error.headers { buffer.writeString("\(field.name.rawName): \(field.value)\r\n") }
        buffer.writeString("\r\n")
        buffer.writeBytes(body)
        return buffer
    }
}

extension ConnectionGuard {
    /// First in the pipeline: bytes in, and the refusals out.
    final class RawSide: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        let guarded: ConnectionGuard

        init(_ guarded: ConnectionGuard) { self.guarded = guarded }

        func handlerAdded(context: ChannelHandlerContext) {
            if context.channel.isActive { self.guarded.attached(context) }
        }

        func channelActive(context: ChannelHandlerContext) {
            self.guarded.attached(context)
            context.fireChannelActive()
        }

        func handlerRemoved(context: ChannelHandlerContext) { self.guarded.detached() }

        func channelInactive(context: ChannelHandlerContext) {
            self.guarded.detached()
            context.fireChannelInactive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if self.guarded.isActive {
                self.guarded.bytesArrived(self.unwrapInboundIn(data).readableBytes)
                guard self.guarded.isActive else { return }
            } else if !self.guarded.isUpgraded {
                return  // refused: what follows is dropped
            }
            context.fireChannelRead(data)
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            // The client finished sending after a refusal: nothing is left to wait for.
            if !self.guarded.isActive, !self.guarded.isUpgraded, let event = event as? ChannelEvent, event == .inputClosed {
                context.close(promise: nil)
            }
            context.fireUserInboundEventTriggered(event)
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            self.guarded.writabilityChanged(context.channel.isWritable)
            context.fireChannelWritabilityChanged()
        }
    }

    /// Right after NIO's HTTP decoder: heads (checked by ``RequestFraming``), bodies, answers,
    /// and the reads held while an answer is owed.
    final class PartsSide: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias InboundOut = HTTPServerRequestPart
        typealias OutboundIn = HTTPServerResponsePart
        typealias OutboundOut = HTTPServerResponsePart
        let guarded: ConnectionGuard
        /// A WebSocket upgrade handler follows (the proxies): the first request may upgrade.
        let upgradable: Bool
        private var readHeld = false
        private var firstRequest = true
        /// NIO's decoder parses nothing after a request that asked for an upgrade: close after its answer.
        private var closeAfterAnswer = false

        init(_ guarded: ConnectionGuard, upgradable: Bool) {
            self.guarded = guarded
            self.upgradable = upgradable
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard self.guarded.isActive else { return }
            if self.guarded.upgrading {
                context.fireChannelRead(data)
                return
            }
            switch self.unwrapInboundIn(data) {
            case .head(var head):
                if let refusal = RequestFraming.refusal(for: head) {
                    self.guarded.refuse(refusal)
                    return
                }
                self.guarded.head()
                if head.headers.contains(name: "upgrade") {
                    self.closeAfterAnswer = true
                    if self.upgradable, self.firstRequest, Self.isWebSocketUpgrade(head) {
                        self.guarded.upgrading = true
                    } else {
                        // Answered as a plain request: an upgrade handler that finds no upgrader
                        // for it would drop it unanswered.
                        head.headers.remove(name: "upgrade")
                        self.firstRequest = false
                        context.fireChannelRead(self.wrapInboundOut(.head(head)))
                        return
                    }
                }
                self.firstRequest = false
            case .body:
                self.guarded.bodyProgressed()
            case .end:
                self.guarded.requestEnded()
            }
            context.fireChannelRead(data)
        }

        static func isWebSocketUpgrade(_ head: HTTPRequestHead) -> Bool {
            head.headers[canonicalForm: "upgrade"].contains { $0.utf8.elementsEqualIgnoringCase("websocket".utf8) }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if error is HTTPParserError, self.guarded.isActive {
                self.guarded.refuse(APIError(.badRequest, message: "malformed HTTP request"))
                return
            }
            context.fireErrorCaught(error)
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            switch self.unwrapOutboundIn(data) {
            case .head(let head) where head.status == .switchingProtocols && self.guarded.upgrading:
                self.guarded.upgraded()
                // Flushed here: a flush that follows this write would find this handler gone.
                context.writeAndFlush(data, promise: promise)
                if self.readHeld {
                    self.readHeld = false
                    context.read()
                }
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                return
            case .head(var head):
                guard head.status.code >= 200 else { break }
                self.guarded.responseStarted()
                if self.guarded.upgrading {
                    // Not upgraded: the request was answered as a plain one.
                    self.guarded.upgrading = false
                    self.guarded.requestEnded()
                }
                if self.closeAfterAnswer {
                    head.headers.replaceOrAdd(name: "connection", value: "close")
                    context.write(self.wrapOutboundOut(.head(head)), promise: promise)
                    return
                }
            case .body:
                break
            case .end:
                self.guarded.responseEnded()
                if self.closeAfterAnswer {
                    // Closed once the answer is out, not before (a close drops unsent writes).
                    let written = context.eventLoop.makePromise(of: Void.self)
                    context.writeAndFlush(data, promise: written)
                    let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                    written.futureResult.whenComplete { _ in bound.value.close(promise: nil) }
                    written.futureResult.cascade(to: promise)
                    return
                }
                context.write(data, promise: promise)
                if self.readHeld, !self.guarded.waitsForAnswer {
                    self.readHeld = false
                    context.read()
                }
                return
            }
            context.write(data, promise: promise)
        }

        /// Pipelined requests wait in the socket, not in memory, while an answer is owed.
        func read(context: ChannelHandlerContext) {
            if self.guarded.waitsForAnswer {
                self.readHeld = true
                return
            }
            context.read()
        }
    }
}
