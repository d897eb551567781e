import Tracing
import W3CTraceContext

/// The W3C identity of the span a piece of work runs in, stored in the `ServiceContext`.
public struct W3CSpanContext: Sendable, Hashable {
    /// The `traceparent` fields of this span: trace id, this span's id, flags, `tracestate`.
    public var traceContext: TraceContext
    /// The span this one is a child of; nil for a root span.
    public var parentSpanID: SpanID?
    /// True when the context was extracted from an incoming request rather than started here.
    public var isRemote: Bool

    public init(traceContext: TraceContext, parentSpanID: SpanID? = nil, isRemote: Bool = false) {
        self.traceContext = traceContext
        self.parentSpanID = parentSpanID
        self.isRemote = isRemote
    }

    /// The `traceparent` sampled flag: whether the trace's first hop chose to record it.
    public var isSampled: Bool { self.traceContext.flags.contains(.sampled) }

    public var parentSpanIDString: String? {
        self.parentSpanID.map { id in withUnsafeBytes(of: id.bytes) { Hex.encode($0) } }
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.traceContext.traceID == rhs.traceContext.traceID
            && lhs.traceContext.spanID == rhs.traceContext.spanID
            && lhs.parentSpanID == rhs.parentSpanID
            && lhs.isRemote == rhs.isRemote
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.traceContext.traceID)
        hasher.combine(self.traceContext.spanID)
    }
}

private enum W3CSpanContextKey: ServiceContextKey {
    typealias Value = W3CSpanContext
    static var nameOverride: String? { "w3c-span-context" }
}

private enum RequestIDKey: ServiceContextKey {
    typealias Value = String
    static var nameOverride: String? { "request-id" }
}

extension ServiceContext {
    /// The W3C span context of the current span, if any.
    public var w3cSpanContext: W3CSpanContext? {
        get { self[W3CSpanContextKey.self] }
        set { self[W3CSpanContextKey.self] = newValue }
    }

    /// The `X-Request-ID` of the request being served, carried to logs and outbound calls.
    public var requestID: String? {
        get { self[RequestIDKey.self] }
        set { self[RequestIDKey.self] = newValue }
    }
}
