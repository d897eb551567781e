import AsyncHTTPClient
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOPosix
import TitaniumHTTP

/// The one policy of every forwarding path (the ``Forwarder``, ``ReverseProxy`` and the
/// ``WebSocketRelay``): which header fields cross a hop, the `X-Forwarded-*` fields, which failed
/// attempts may go to another replica, and what a failed next hop answers. Framing is not here:
/// each path sets it from what it read (``RequestFraming`` refused anything ambiguous before).
public struct ProxyPolicy: Sendable {
    /// Peers whose `X-Forwarded-Proto` and `X-Forwarded-Host` are believed (another proxy of
    /// ours in front, `TRUSTED_PROXIES`); anyone else's are replaced, never passed on.
    public var trustedProxies: [CIDR]

    public init(trustedProxies: [CIDR] = []) {
        self.trustedProxies = trustedProxies
    }

    /// Fields a proxy never forwards (RFC 9110 §7.6.1), plus those `Connection` lists; `host` is
    /// set anew for the next hop.
    public static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
        "te", "trailer", "transfer-encoding", "upgrade", "host",
    ]

    /// Fields this policy sets itself on a forwarded request, or the path frames itself.
    static let setOnRequests: Set<String> = [
        "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id", "traceparent", "tracestate", "content-length",
    ]

    static let requestFieldsNotCopied = FieldNameSet(hopByHop.union(setOnRequests))
    static let responseFieldsNotCopied = FieldNameSet(hopByHop.union(["x-request-id", "traceparent"]))

    public func trusts(_ peer: String) -> Bool {
        self.trustedProxies.contains { $0.contains(peer) }
    }

    /// The end-to-end fields of `incoming` (not hop-by-hop, not listed in its `Connection`, not
    /// in `except`), then `X-Forwarded-For` (a trusted peer's with the peer appended, else the
    /// peer alone), `X-Forwarded-Proto` and `X-Forwarded-Host` (the trusted peer's, else `http`
    /// and the request's `Host`).
    func forwardedRequestFields(
        _ incoming: HTTPHeaders, peer: String, into headers: inout HTTPHeaders, except: FieldNameSet = ProxyPolicy.requestFieldsNotCopied
    ) {
        let listed = incoming.contains(name: "connection") ? incoming[canonicalForm: "connection"] : []
        for (name, value) in incoming {
            if except.contains(name) || listed.contains(where: { $0.utf8.elementsEqualIgnoringCase(name.utf8) }) { continue }
            headers.add(name: name, value: value)
        }
        let trusted = self.trusts(peer)
        // An untrusted client's own X-Forwarded-For is dropped: the chain starts at its address.
        headers.add(name: "X-Forwarded-For", value: (trusted ? incoming.first(name: "x-forwarded-for") : nil).map { $0 + ", " + peer } ?? peer)
        headers.add(name: "X-Forwarded-Proto", value: trusted ? incoming.first(name: "x-forwarded-proto") ?? "http" : "http")
        if let host = (trusted ? incoming.first(name: "x-forwarded-host") : nil) ?? incoming.first(name: "host") {
            headers.add(name: "X-Forwarded-Host", value: host)
        }
    }

    /// The end-to-end fields of an upstream's answer.
    func forwardedResponseFields(_ incoming: HTTPHeaders, into headers: inout HTTPHeaders) {
        let listed = incoming.contains(name: "connection") ? incoming[canonicalForm: "connection"] : []
        for (name, value) in incoming {
            if Self.responseFieldsNotCopied.contains(name) || listed.contains(where: { $0.utf8.elementsEqualIgnoringCase(name.utf8) }) {
                continue
            }
            headers.add(name: name, value: value)
        }
    }

    /// Whether a failed attempt may go to another replica: one that never left (no connection
    /// was made) whatever its method; one that may have reached the upstream only when it is
    /// safe to repeat (GET, HEAD, OPTIONS without a body). A POST, PATCH or DELETE that may
    /// have arrived is never sent twice.
    static func mayRetry(method: HTTPMethod, declaresBody: Bool, sent: Bool) -> Bool {
        !sent || ([.GET, .HEAD, .OPTIONS].contains(method) && !declaresBody)
    }

    /// A 5xx the upstream made about its own next hop (it carries `Proxy-Status`) is not a
    /// failure of the upstream: passive ejection blames the hop that failed.
    static func upstreamFailed(status: Int, headers: HTTPHeaders) -> Bool {
        status >= 500 && !headers.contains(name: "proxy-status")
    }

    /// What a proxy adds to a 5xx it relays from `service` that does not say where it came from
    /// (RFC 9209's `received-status`): the hop in front of this proxy then knows the failure
    /// was relayed, not made here, and its passive ejection blames `service`, not this proxy.
    static func relayedFailure(status: Int, service: String) -> String {
        "titanium; received-status=\(status); next-hop=\"\(service)\""
    }

    /// What a failed next hop answers: 504 when it did not connect or answer in time, 502 for
    /// anything else (refused, reset, closed), with `Proxy-Status` naming the error.
    public static func failure(_ error: any Error, service: String, sent: Bool) -> APIError {
        switch error {
        case let error as ChannelError:
            if case .connectTimeout = error { return .nextHop(.gatewayTimeout, service: service, error: "connection_timeout") }
            return .nextHop(.badGateway, service: service, error: sent ? "connection_terminated" : "destination_unavailable")
        case is HTTPClientError:
            return .upstream(error, service: service)
        case let error as IOError where error.errnoCode == ECONNREFUSED:
            return .nextHop(.badGateway, service: service, error: "connection_refused")
        case let error as NIOConnectionError where error.connectionErrors.contains(where: { ($0.error as? IOError)?.errnoCode == ECONNREFUSED }):
            return .nextHop(.badGateway, service: service, error: "connection_refused")
        default:
            return .nextHop(.badGateway, service: service, error: sent ? "connection_terminated" : "destination_unavailable")
        }
    }
}

/// An IPv4 CIDR (`10.0.0.0/8`) or a single address (IPv4 or IPv6, matched exactly).
public struct CIDR: Sendable, Equatable {
    let network: UInt32?
    let mask: UInt32
    let exact: String?

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let first = parts.first else { return nil }
        if let ipv4 = CIDR.ipv4(String(first)) {
            let bits = parts.count == 2 ? Int(parts[1]) : 32
            guard let bits, (0...32).contains(bits) else { return nil }
            self.mask = bits == 0 ? 0 : UInt32.max << (32 - bits)
            self.network = ipv4 & self.mask
            self.exact = nil
        } else if parts.count == 1, text.contains(":") {
            self.network = nil
            self.mask = 0
            self.exact = text.lowercased()
        } else {
            return nil
        }
    }

    public func contains(_ address: String) -> Bool {
        if let exact { return address.lowercased() == exact }
        guard let network, let value = CIDR.ipv4(address) else { return false }
        return value & self.mask == network
    }

    static func ipv4(_ text: String) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var value: UInt32 = 0
        for octet in octets {
            guard let byte = UInt8(octet) else { return nil }
            value = value << 8 | UInt32(byte)
        }
        return value
    }
}
