/// One row of `trace_steps`: one request as one service instance served it.
public struct TraceStep: Codable, Sendable, Equatable {
    public var trace_id: String
    public var span_id: String
    public var parent_span_id: String?
    public var service: String
    public var instance: String
    public var user_id: String?
    public var route: String
    public var path: String
    public var method: String
    public var status_code: Int
    public var latency_us: Int64
    public var ip: String
    public var user_agent: String
    /// Milliseconds since the epoch when the request arrived.
    public var created_at: Int64

    public init(
        trace_id: String, span_id: String, parent_span_id: String?, service: String, instance: String, user_id: String?,
        route: String, path: String, method: String, status_code: Int, latency_us: Int64, ip: String, user_agent: String,
        created_at: Int64
    ) {
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.service = service
        self.instance = instance
        self.user_id = user_id
        self.route = route
        self.path = path
        self.method = method
        self.status_code = status_code
        self.latency_us = latency_us
        self.ip = ip
        self.user_agent = user_agent
        self.created_at = created_at
    }
}
