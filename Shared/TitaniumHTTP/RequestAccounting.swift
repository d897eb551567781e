import NIOCore
import TitaniumLogging
import TitaniumMetrics
import TitaniumTracing

#if canImport(Glibc)
import Glibc
#endif

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
        if let recorder {
            let startedAt = wallClockNanoseconds() - Int64(elapsed)
            recorder.record(
                FinishedRequest(
                    spanContext: span, method: method, route: route, path: path, status: status, latencyMicroseconds: elapsed / 1_000,
                    startedAtMilliseconds: startedAt / 1_000_000, startedAtNanoseconds: startedAt,
                    remoteAddress: remoteAddress, userAgent: userAgent, userID: userID
                )
            )
        }
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

/// Nanoseconds since the epoch (CLOCK_REALTIME).
func wallClockNanoseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
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
