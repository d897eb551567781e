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
        let userID = await recorder?.userID(for: request)

        var context = context
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

/// What every answered request leaves behind, whichever path served it (the observability
/// middleware, or the load balancer's forwarder below Hummingbird): `http_requests_total` and
/// the duration histogram, the traffic window, the trace store's row and the access line.
public struct RequestAccounting: Sendable {
    /// Bytes of a path and of a `User-Agent` kept in access lines and trace rows.
    public static let maxPathBytes = 1024
    public static let maxUserAgentBytes = 256

    let metrics: HTTPMetrics
    let window: TrafficWindow
    let accessLog: AccessLog

    public init(metrics: HTTPMetrics, window: TrafficWindow, accessLog: AccessLog) {
        self.metrics = metrics
        self.window = window
        self.accessLog = accessLog
    }

    public func finished(
        method: String, route: String, path: String, status: Int, startNanos: UInt64, countsInWindow: Bool, bytes: Int,
        requestID: String, span: W3CSpanContext, remoteAddress: SocketAddress?, userAgent: String?,
        recorder: (any RequestRecorder)?, userID: String?, endNanos: UInt64? = nil
    ) {
        // What a client sends is stored bounded: a 64 KB User-Agent must not fill the trace store.
        let path = path.cut(toBytes: Self.maxPathBytes)
        let userAgent = userAgent?.cut(toBytes: Self.maxUserAgentBytes)
        let now = endNanos ?? TrafficWindow.monotonicNanos()
        let elapsed = now &- startNanos
        self.metrics.requestFinished(method: method, route: route, status: status, duration: .nanoseconds(Int64(elapsed)))
        if countsInWindow {
            self.window.record(latencyNanos: elapsed, isError: status >= 500, isRateLimited: status == 429, nowNanos: now)
        }
        recorder?.record(
            FinishedRequest(
                spanContext: span, method: method, route: route, path: path, status: status, latencyMicroseconds: elapsed / 1_000,
                startedAtMilliseconds: wallClockMilliseconds() - Int64(elapsed / 1_000_000),
                remoteAddress: remoteAddress, userAgent: userAgent, userID: userID
            )
        )
        if self.accessLog.isEnabled {
            // The client address becomes text only here, when a line is written.
            self.accessLog.write(
                AccessLog.Entry(
                    requestID: requestID, traceID: span.traceID, spanID: span.spanID, method: method, route: route, path: path,
                    status: status, durationMicroseconds: elapsed / 1_000, bytes: bytes,
                    clientIP: remoteAddress?.ipAddress ?? "unknown", userAgent: userAgent ?? ""
                )
            )
        }
    }
}

/// Milliseconds since the epoch (CLOCK_REALTIME).
func wallClockMilliseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
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

/// `X-Request-ID` values: accepted when 1–128 characters of `[A-Za-z0-9._:-]`, otherwise replaced.
public enum RequestID {
    public static func accept(_ value: String) -> String? {
        guard (1...128).contains(value.utf8.count) else { return nil }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"),
                UInt8(ascii: "."), UInt8(ascii: ":"):
                continue
            default:
                return nil
            }
        }
        return value
    }

    /// 32 random hex digits.
    public static func make() -> String {
        var generator = IDRandomGenerator()
        return W3CSpanContext.hex(generator.next(), generator.next())
    }
}

extension String {
    /// At most `limit` bytes of UTF-8, whole characters only; a cut string ends with "…" (within the limit).
    public func cut(toBytes limit: Int) -> String {
        guard self.utf8.count > limit else { return self }
        let marker = "…"
        let bytes = Array(self.utf8.prefix(max(0, limit - marker.utf8.count)))
        var end = bytes.count
        // A scalar the limit splits goes whole.
        if let lead = bytes.lastIndex(where: { $0 & 0xC0 != 0x80 }) {
            let length = bytes[lead] < 0x80 ? 1 : bytes[lead] >= 0xF0 ? 4 : bytes[lead] >= 0xE0 ? 3 : 2
            if lead + length > end { end = lead }
        }
        return String(decoding: bytes[..<end], as: UTF8.self) + marker
    }
}
