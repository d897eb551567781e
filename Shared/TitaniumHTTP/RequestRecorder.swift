import Hummingbird
import NIOCore
import ServiceLifecycle
import TitaniumTracing

/// One request as the observability middleware saw it, handed to a ``RequestRecorder`` when the
/// response has been written. Nothing here is turned into text yet: the recorder does that off
/// the request path.
public struct FinishedRequest: Sendable {
    public var spanContext: W3CSpanContext
    public var method: String
    public var route: String
    public var path: String
    public var status: Int
    public var latencyMicroseconds: UInt64
    /// Milliseconds since the epoch when the request arrived.
    public var startedAtMilliseconds: Int64
    /// The same instant in nanoseconds (an OTLP span's start: children inside their parents).
    public var startedAtNanoseconds: Int64
    public var remoteAddress: SocketAddress?
    public var userAgent: String?
    public var userID: String?

    public init(
        spanContext: W3CSpanContext, method: String, route: String, path: String, status: Int, latencyMicroseconds: UInt64,
        startedAtMilliseconds: Int64, startedAtNanoseconds: Int64? = nil, remoteAddress: SocketAddress?, userAgent: String?,
        userID: String?
    ) {
        self.spanContext = spanContext
        self.method = method
        self.route = route
        self.path = path
        self.status = status
        self.latencyMicroseconds = latencyMicroseconds
        self.startedAtMilliseconds = startedAtMilliseconds
        self.startedAtNanoseconds = startedAtNanoseconds ?? startedAtMilliseconds * 1_000_000
        self.remoteAddress = remoteAddress
        self.userAgent = userAgent
        self.userID = userID
    }
}

/// Something that keeps a record of requests (the trace store). The observability middleware
/// asks it which requests to record and who made them, then hands it each finished request;
/// ``ServiceKit/makeApplication`` registers its routes and runs its background service.
public protocol RequestRecorder: Sendable {
    /// Whether this request is recorded at all (include/exclude prefixes, a custom filter).
    func shouldRecord(_ request: Request) -> Bool
    /// The user a recorded request belongs to, asked before the handler runs, and the
    /// credentials checked to find it (kept in the request's context for the handler).
    func identify(_ request: Request) async -> (userID: String?, credentials: Credentials?)
    /// Must not block: a full buffer drops the record (and counts it).
    func record(_ request: FinishedRequest)
    /// The background work (batched writes, retention) that must run, and flush on shutdown.
    var service: any Service { get }
    /// The query routes (`/traces`, `/traces/summary`, `/traces/recent`, `/traces/{trace_id}`).
    func registerRoutes<Context: IdentifiedRequestContext>(on router: Router<Context>, adminToken: AdminToken)
}
