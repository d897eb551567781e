import HTTPTypes
import NIOCore
import NIOHTTP1

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
