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
    let policy: ProxyPolicy
    let traces: TraceRecorder?
    let connectTimeout: TimeAmount
    let responseTimeout: TimeAmount
    /// The longest gap between the parts of an answer (`HTTP_CLIENT_READ_TIMEOUT_MS`).
    let readTimeout: TimeAmount
    let upstreamIdleTimeout: TimeAmount
    let failures: FailureLog
    private let connections = NIOLockedValueBox<[ObjectIdentifier: UpstreamConnections]>([:])

    /// - Parameters:
    ///   - responseTimeout: from sending a request upstream to the head of its answer (default:
    ///     the outbound read timeout); the upstream's connect timeout comes before it.
    ///   - route: the requests to forward, decided on the head; nil leaves a request to Hummingbird.
    ///     While a fault is injected (``Faults``), the requests it affects are left to Hummingbird
    ///     too, whose router applies it (``FaultMiddleware``) and proxies them.
    public init(
        upstreams: [ForwardingUpstream], kit: ServiceKit, policy: ProxyPolicy = ProxyPolicy(), responseTimeout: Duration? = nil,
        route: @escaping @Sendable (HTTPRequestHead) -> ForwardingRoute?
    ) {
        self.upstreams = upstreams
        let faults = kit.faults
        self.route = { head in faults.isArmed && faults.affects(path: Forwarding.path(of: head.uri)) ? nil : route(head) }
        self.kit = kit
        self.policy = policy
        self.traces = kit.traces
        let client = kit.configuration.client
        self.connectTimeout = .nanoseconds(client.connectTimeout.nanoseconds)
        self.responseTimeout = .nanoseconds((responseTimeout ?? client.readTimeout).nanoseconds)
        self.readTimeout = .nanoseconds(client.readTimeout.nanoseconds)
        self.upstreamIdleTimeout = .nanoseconds(client.idleTimeout.nanoseconds)
        self.failures = FailureLog(logger: kit.logger)
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

    /// `Upgrade: websocket`: relayed by the WebSocket path, not forwarded. Other upgrades are
    /// forwarded as plain requests (`Upgrade` is hop-by-hop and dropped).
    public static func isWebSocketUpgrade(_ head: HTTPRequestHead) -> Bool {
        guard head.headers.contains(name: "upgrade") else { return false }
        return head.headers[canonicalForm: "upgrade"].contains { $0.utf8.elementsEqualIgnoringCase("websocket".utf8) }
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
}
