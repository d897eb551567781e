import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import TitaniumLogging
import TitaniumMetrics
import TitaniumTracing
import Tracing

#if canImport(Glibc)
import Glibc
#endif

/// The one middleware every service runs first. Per request it:
/// - accepts a well-formed `X-Request-ID` or makes one, and echoes it;
/// - continues the caller's W3C trace (or starts one) in a server span, echoed as `traceparent`;
/// - rejects bodies over the size limit with 413;
/// - turns every thrown error into the shared JSON error shape;
/// - records `http_requests_total`, `http_request_duration_seconds`, the in-flight gauge and the
///   traffic window (labelled by route template, never the raw path);
/// - writes one JSON access line.
public struct ObservabilityMiddleware<Context: IdentifiedRequestContext>: RouterMiddleware {
    public static var unmatchedRoute: String { "unmatched" }

    let tracer: W3CTracer
    let metrics: HTTPMetrics
    let window: TrafficWindow
    let accessLog: AccessLog
    let bodyLimit: Int
    let countsInWindow: @Sendable (Request) -> Bool
    let recorder: (any RequestRecorder)?

    public init(
        tracer: W3CTracer,
        metrics: HTTPMetrics,
        window: TrafficWindow,
        accessLog: AccessLog,
        bodyLimit: Int,
        countsInWindow: @escaping @Sendable (Request) -> Bool = ObservabilityMiddleware.isBusinessRequest,
        recorder: (any RequestRecorder)? = nil
    ) {
        self.tracer = tracer
        self.metrics = metrics
        self.window = window
        self.accessLog = accessLog
        self.bodyLimit = bodyLimit
        self.countsInWindow = countsInWindow
        self.recorder = recorder
    }

    /// Operational endpoints (`/health/*`, `/metrics`, `/stats`) stay out of the traffic window.
    @Sendable public static func isBusinessRequest(_ request: Request) -> Bool {
        let path = request.uri.path
        return !(path.hasPrefix("/health/") || path == "/metrics" || path == "/stats")
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let startNanos = TrafficWindow.monotonicNanos()
        self.metrics.requestStarted()

        let requestID = request.headers[.xRequestID].flatMap(RequestID.accept) ?? RequestID.make()
        var serviceContext = ServiceContext.topLevel
        self.tracer.extract(request.headers, into: &serviceContext, using: HTTPFieldsExtractor())
        serviceContext.requestID = requestID
        let route = context.endpointPath.flatMap { $0 == "NotFound" ? nil : $0 } ?? Self.unmatchedRoute
        let method = request.method.rawValue
        let span = self.tracer.startSpan("\(method) \(route)", context: serviceContext, ofKind: .server)

        // The trace store, when this request is one it keeps: who made it is decided before the
        // handler runs (a verified token, a header or a query parameter).
        let recorder = self.recorder.flatMap { $0.shouldRecord(request) ? $0 : nil }
        let identity = await recorder?.identify(request)
        let userID = identity?.userID

        var context = context
        context.credentials = identity?.credentials
        context.requestID = requestID
        context.spanContext = span.spanContext
        context.bodyLimit = self.bodyLimit
        // Logs inside the handler get the ids from the ServiceContext (Logger.MetadataProvider.w3cTracing).

        var response: Response
        do {
            if let length = request.headers[.contentLength].flatMap(Int.init), length > self.bodyLimit {
                throw APIError(.contentTooLarge, message: "request body of \(length) bytes exceeds the limit of \(self.bodyLimit) bytes")
            }
            response = try await ServiceContext.$current.withValue(span.context) {
                try await next(request, context)
            }
        } catch {
            let apiError = APIError.from(error)
            if apiError.status.code >= 500 {
                context.logger.error(
                    "request failed",
                    metadata: [
                        "error": "\(String(reflecting: error))", "request_id": .string(requestID),
                        "trace_id": .string(span.spanContext.traceID), "span_id": .string(span.spanContext.spanID),
                    ]
                )
            }
            response = apiError.response(requestID: requestID)
        }
        response.headers[.xRequestID] = requestID
        response.headers[.traceparent] = span.spanContext.traceparent

        let finish = Finish(
            middleware: self, span: span, method: method, route: route,
            path: request.uri.path, status: Int(response.status.code), startNanos: startNanos,
            countsInWindow: self.countsInWindow(request), remoteAddress: context.remoteAddress,
            userAgent: request.headers[.userAgent], requestID: requestID, recorder: recorder, userID: userID
        )
        if let length = response.body.contentLength {
            finish.record(bytes: length)
        } else {
            // Streamed bodies are measured when the last byte has been written.
            let body = response.body
            response.body = ResponseBody { writer in
                let count = ByteCount()
                do {
                    try await body.write(CountingWriter(base: writer, count: count))
                    finish.record(bytes: count.value)
                } catch {
                    finish.record(bytes: count.value)
                    throw error
                }
            }
        }
        return response
    }

    private struct Finish: Sendable {
        let middleware: ObservabilityMiddleware
        let span: W3CSpan
        let method: String
        let route: String
        let path: String
        let status: Int
        let startNanos: UInt64
        let countsInWindow: Bool
        /// Turned into text only when a log line or a recording span needs it.
        let remoteAddress: SocketAddress?
        let userAgent: String?
        let requestID: String
        let recorder: (any RequestRecorder)?
        let userID: String?

        func record(bytes: Int) {
            if self.span.isRecording {
                self.span.attributes = [
                    "http.request.method": .string(self.method),
                    "http.route": .string(self.route),
                    "url.path": .string(self.path),
                    "http.response.status_code": .int64(Int64(self.status)),
                    "client.address": .string(self.remoteAddress?.ipAddress ?? "unknown"),
                ]
                if self.status >= 500 { self.span.setStatus(.init(code: .error)) }
            }
            self.span.end()
            RequestAccounting(metrics: self.middleware.metrics, window: self.middleware.window, accessLog: self.middleware.accessLog)
                .finished(
                    method: self.method, route: self.route, path: self.path, status: self.status, startNanos: self.startNanos,
                    countsInWindow: self.countsInWindow, bytes: bytes, requestID: self.requestID, span: self.span.spanContext,
                    remoteAddress: self.remoteAddress, userAgent: self.userAgent, recorder: self.recorder, userID: self.userID
                )
        }
    }
}

private final class ByteCount: @unchecked Sendable {
    var value = 0
}

private struct CountingWriter: ResponseBodyWriter {
    var base: any ResponseBodyWriter
    let count: ByteCount

    mutating func write(_ buffer: ByteBuffer) async throws {
        self.count.value += buffer.readableBytes
        try await self.base.write(buffer)
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        try await self.base.finish(trailingHeaders)
    }
}
