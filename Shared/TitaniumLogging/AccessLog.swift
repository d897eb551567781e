import Logging

/// One access line per request, in the same JSON shape and to the same sink as
/// ``JSONLogHandler`` (`"message":"request"`, level info).
///
/// It is the hottest log line of every service, so it is rendered from typed fields straight
/// into bytes instead of going through a `Logger.Metadata` dictionary: measured with
/// `Benchmarks/kit-overhead`, the generic path cost more than the rest of the middleware.
public struct AccessLog: Sendable {
    public struct Entry: Sendable {
        public var requestID: String
        public var traceID: String
        public var spanID: String
        public var method: String
        public var route: String
        public var path: String
        public var status: Int
        public var durationMicroseconds: UInt64
        public var bytes: Int
        public var clientIP: String
        public var userAgent: String

        public init(
            requestID: String, traceID: String, spanID: String, method: String, route: String, path: String,
            status: Int, durationMicroseconds: UInt64, bytes: Int, clientIP: String, userAgent: String
        ) {
            self.requestID = requestID
            self.traceID = traceID
            self.spanID = spanID
            self.method = method
            self.route = route
            self.path = path
            self.status = status
            self.durationMicroseconds = durationMicroseconds
            self.bytes = bytes
            self.clientIP = clientIP
            self.userAgent = userAgent
        }
    }

    public let service: String
    public let isEnabled: Bool
    private let sink: LogSink

    /// Access lines are written at level info: `LOG_LEVEL` above info turns them off.
    public init(service: String, level: Logger.Level, sink: LogSink = .standardOutput) {
        self.service = service
        self.isEnabled = level <= .info
        self.sink = sink
    }

    public func write(_ entry: Entry) {
        guard self.isEnabled else { return }
        self.sink.write(Self.render(entry, service: self.service))
    }

    static func render(_ entry: Entry, service: String, timestamp: String? = nil) -> [UInt8] {
        var out = JSONWriter()
        out.beginObject()
        out.key("timestamp")
        if let timestamp { out.string(timestamp) } else { RFC3339.withNow { out.quotedASCII($0) } }
        out.key("level"); out.string("info")
        out.key("service"); out.string(service)
        out.key("message"); out.string("request")
        out.key("trace_id"); out.string(entry.traceID)
        out.key("span_id"); out.string(entry.spanID)
        out.key("request_id"); out.string(entry.requestID)
        out.key("method"); out.string(entry.method)
        out.key("route"); out.string(entry.route)
        out.key("path"); out.string(entry.path)
        out.key("status"); out.number(UInt64(max(entry.status, 0)))
        out.key("duration_ms"); out.milliseconds(fromMicroseconds: entry.durationMicroseconds)
        out.key("bytes"); out.number(UInt64(max(entry.bytes, 0)))
        out.key("client_ip"); out.string(entry.clientIP)
        out.key("user_agent"); out.string(entry.userAgent)
        out.endObject()
        out.newline()
        return out.bytes
    }
}
