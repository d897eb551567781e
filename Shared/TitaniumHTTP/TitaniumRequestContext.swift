import Hummingbird
import NIOCore
import TitaniumTracing

/// A request context that knows its request id (for error bodies and logs).
public protocol IdentifiedRequestContext: RequestContext {
    var requestID: String { get set }
    var spanContext: W3CSpanContext? { get set }
    var bodyLimit: Int { get set }
    /// The request's credentials once checked (``Credentials``): nil until something verified them.
    var credentials: Credentials? { get set }
    /// The socket peer.
    var remoteAddress: SocketAddress? { get }
}

/// The request context of every Titanium service.
public struct TitaniumRequestContext: IdentifiedRequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    public var requestID: String = ""
    public var spanContext: W3CSpanContext?
    public var bodyLimit: Int = 1 << 20
    public var credentials: Credentials?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }

    public var maxUploadSize: Int { self.bodyLimit }
}

extension IdentifiedRequestContext {
    /// The peer's IP address as text ("unknown" for a Unix socket or a test channel).
    public var peerIP: String {
        self.remoteAddress?.ipAddress ?? "unknown"
    }
}
