import AsyncHTTPClient
import HTTPTypes
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import TitaniumTracing
import Tracing

/// The pooled outbound HTTP client every service uses to call another.
///
/// Connect and read timeouts come from ``OutboundClientConfiguration``; every request also has
/// an overall deadline. The current W3C trace continues: the request carries the current server
/// span as `traceparent` (and the current `X-Request-ID`), so the callee's span is the child of
/// the caller's and the trace store links one request across services without client spans in
/// between. Run it as a `Service` so that it shuts down after the server has drained.
public final class OutboundHTTPClient: Service, Sendable {
    public let client: HTTPClient
    public let configuration: OutboundClientConfiguration

    public let tracer: W3CTracer?

    public init(configuration: OutboundClientConfiguration, tracer: W3CTracer?) {
        var clientConfiguration = HTTPClient.Configuration(
            timeout: .init(
                connect: .nanoseconds(configuration.connectTimeout.nanoseconds),
                read: .nanoseconds(configuration.readTimeout.nanoseconds)
            ),
            // 64 keep-alive connections per upstream host (AsyncHTTPClient's default is 8): a
            // proxy under 64 concurrent requests otherwise queues 56 of them in the pool.
            connectionPool: .init(idleTimeout: .nanoseconds(configuration.idleTimeout.nanoseconds), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        )
        // No client spans: the current span's context is injected directly in `execute`.
        clientConfiguration.tracing.tracer = nil
        self.tracer = tracer
        clientConfiguration.decompression = .disabled
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        self.configuration = configuration
    }

    /// Sends `request` with the current request id and trace context.
    /// - Parameter timeout: the deadline for the response head; defaults to connect + read timeout.
    public func execute(_ request: HTTPClientRequest, timeout: Duration? = nil) async throws -> HTTPClientResponse {
        var request = request
        // The current span's traceparent, never one copied from elsewhere.
        request.headers.remove(name: "traceparent")
        request.headers.remove(name: "tracestate")
        if let context = ServiceContext.current {
            self.tracer?.inject(context, into: &request.headers, using: HTTPHeadersInjector())
            if let requestID = context.requestID {
                request.headers.replaceOrAdd(name: "X-Request-ID", value: requestID)
            }
        }
        let deadline = timeout ?? (self.configuration.connectTimeout + self.configuration.readTimeout)
        return try await self.client.execute(request, timeout: .nanoseconds(deadline.nanoseconds))
    }

    public func run() async throws {
        try? await gracefulShutdown()
        try await self.client.shutdown()
    }

    /// Shuts the client down if it is still running (a build that failed after making it).
    func shutDown() async {
        try? await self.client.shutdown()
    }
}

struct HTTPHeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout HTTPHeaders) {
        carrier.replaceOrAdd(name: key, value: value)
    }
}

extension Duration {
    /// Milliseconds, with their fraction (the `latency_ms` fields).
    public var milliseconds: Double {
        Double(self.components.seconds) * 1000 + Double(self.components.attoseconds) / 1e15
    }

    /// Whole nanoseconds, saturating.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = self.components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return product &+ attoseconds / 1_000_000_000
    }
}

extension APIError {
    /// The error for a failed call to another service: 504 when it timed out, 502 otherwise
    /// (refused, reset, unresolvable).
    public static func upstream(_ error: any Error, service: String) -> APIError {
        if let clientError = error as? HTTPClientError,
            [HTTPClientError.deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout].contains(clientError)
        {
            return .nextHop(.gatewayTimeout, service: service, error: clientError == .connectTimeout ? "connection_timeout" : "http_response_timeout")
        }
        return .nextHop(.badGateway, service: service, error: "destination_unavailable")
    }

    /// 502, 503 or 504 about a next hop, marked as such with RFC 9209's `Proxy-Status`, so that
    /// the hop in front of this one does not eject it for another service's failure.
    public static func nextHop(_ status: HTTPResponse.Status, service: String, error: String) -> APIError {
        let message = switch status {
        case .gatewayTimeout: "\(service) did not answer in time"
        case .serviceUnavailable: "no healthy \(service)"
        default: "\(service) is unreachable"
        }
        return APIError(status, message: message, headers: [.proxyStatus: "titanium; error=\(error); next-hop=\"\(service)\""])
    }
}

extension HTTPField.Name {
    /// RFC 9209: set on answers a proxy makes about its next hop.
    public static let proxyStatus = HTTPField.Name("Proxy-Status")!
}
