import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import Synchronization
import TitaniumHTTP

/// A pool of base URLs for one upstream service, taken in turn (round robin).
public final class UpstreamPool: Sendable {
    public let name: String
    public let baseURLs: [String]
    private let next = Atomic<Int>(0)

    public init(name: String, baseURLs: [String]) {
        precondition(!baseURLs.isEmpty, "an upstream needs at least one URL")
        self.name = name
        self.baseURLs = baseURLs.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
    }

    public func pick() -> String {
        self.baseURLs[self.pickIndex()]
    }

    /// The next URL's index in `baseURLs`.
    public func pickIndex() -> Int {
        self.next.wrappingAdd(1, ordering: .relaxed).oldValue % self.baseURLs.count
    }
}

/// Forwards a request to an upstream through AsyncHTTPClient (the path for `https://` upstreams
/// and the dashboard pool; plain-HTTP API traffic takes TitaniumProxy's forwarder): the request
/// body is read whole first, up to the body limit (as nginx's `proxy_request_buffering` does),
/// the answer is streamed back; hop-by-hop headers are dropped both ways, `X-Forwarded-For/
/// Proto/Host` are set, `X-Request-ID` and the trace continue. A timeout answers 504 and a
/// refused or reset connection 502, in the shared JSON shape.
///
/// The body is not streamed upstream because the client would then have two readers: an
/// upstream that answers before reading it (a 401) leaves AsyncHTTPClient still reading while
/// Hummingbird reads the rest of it for the next request, and two readers of one request body
/// crash the process.
public struct ReverseProxy: Sendable {
    public let client: OutboundHTTPClient
    public let policy: ProxyPolicy

    public init(client: OutboundHTTPClient, policy: ProxyPolicy = ProxyPolicy()) {
        self.client = client
        self.policy = policy
    }

    public func forward(_ request: Request, context: some IdentifiedRequestContext, to upstream: UpstreamPool) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: context.bodyLimit)
        let outbound = self.makeRequest(request, body: body, context: context, baseURL: upstream.pick())
        let response: HTTPClientResponse
        do {
            response = try await self.client.execute(outbound)
        } catch {
            throw ProxyPolicy.failure(error, service: upstream.name, sent: true)
        }
        return self.makeResponse(response, from: upstream.name)
    }

    /// The request to send upstream: same method, path, query and end-to-end headers, the body
    /// read already, forwarding headers set.
    func makeRequest(_ request: Request, body: ByteBuffer, context: some IdentifiedRequestContext, baseURL: String) -> HTTPClientRequest {
        var outbound = HTTPClientRequest(url: baseURL + (request.uri.string.hasPrefix("/") ? request.uri.string : "/" + request.uri.string))
        outbound.method = HTTPMethod(rawValue: request.method.rawValue)
        // The client sets X-Request-ID and the trace context of the current span.
        let incoming = HTTPHeaders(request.headers.map { ($0.name.rawName, $0.value) })
        self.policy.forwardedRequestFields(incoming, peer: context.peerIP, into: &outbound.headers)
        // Framing is set here from what was read, never copied from the client.
        if body.readableBytes > 0 || request.headers[.contentLength] != nil || request.headers[.transferEncoding] != nil {
            outbound.body = .bytes(body)
        }
        return outbound
    }

    /// The upstream's answer as ours: status, end-to-end headers, the body streamed; a 5xx of
    /// `service`'s own marked as relayed (``ProxyPolicy/relayedFailure(status:service:)``).
    public func makeResponse(_ response: HTTPClientResponse, from service: String) -> Response {
        var forwarded = HTTPHeaders()
        self.policy.forwardedResponseFields(response.headers, into: &forwarded)
        let status = Int(response.status.code)
        if ProxyPolicy.upstreamFailed(status: status, headers: response.headers) {
            forwarded.add(name: "Proxy-Status", value: ProxyPolicy.relayedFailure(status: status, service: service))
        }
        var headers = HTTPFields()
        for (name, value) in forwarded {
            guard let fieldName = HTTPField.Name(name), name.lowercased() != "content-length" else { continue }
            headers.append(HTTPField(name: fieldName, value: value))
        }
        let length = response.headers.first(name: "content-length").flatMap(Int.init)
        return Response(
            status: HTTPResponse.Status(code: Int(response.status.code), reasonPhrase: response.status.reasonPhrase),
            headers: headers,
            body: ResponseBody(asyncSequence: response.body).withContentLength(length)
        )
    }
}

extension ResponseBody {
    /// The same body, declaring its length so it is not sent chunked.
    func withContentLength(_ length: Int?) -> ResponseBody {
        guard let length else { return self }
        let body = self
        return ResponseBody(contentLength: length) { writer in try await body.write(writer) }
    }
}

extension HTTPField.Name {
    public static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
    public static let xForwardedProto = HTTPField.Name("X-Forwarded-Proto")!
    public static let xForwardedHost = HTTPField.Name("X-Forwarded-Host")!
}

extension Router {
    /// Registers `handler` for `paths` under every method a proxied API uses.
    public func onAnyMethod(
        _ paths: [RouterPath],
        use handler: @escaping @Sendable (Request, Context) async throws -> Response
    ) {
        for path in paths {
            for method: HTTPRequest.Method in [.get, .head, .post, .put, .patch, .delete, .options] {
                self.on(path, method: method, use: handler)
            }
        }
    }
}
