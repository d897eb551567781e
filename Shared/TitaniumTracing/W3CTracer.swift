import Logging
import Synchronization
import Tracing
import W3CTraceContext

/// A tracer speaking W3C Trace Context: it extracts and injects `traceparent`/`tracestate`,
/// starts child spans of whatever span is in the `ServiceContext`, and hands every finished
/// span to `onSpanEnd` (a trace store, an exporter, a test).
public struct W3CTracer: Tracer {
    public typealias Span = W3CSpan

    /// Creates the trace id of a new root trace. Defaults to ``TraceID/timeOrdered(using:unixMilliseconds:)``:
    /// the time in milliseconds, then 80 random bits.
    public var makeTraceID: @Sendable () -> TraceID
    /// Called once per span when it ends. Without it spans carry ids only and record nothing
    /// (`isRecording` is false), which keeps the per-request cost down.
    public var onSpanEnd: (@Sendable (FinishedSpan) -> Void)?
    /// Which new traces carry the sampled flag (`TRACE_SAMPLE_RATIO`); a continued trace keeps its caller's.
    public var sampler: TraceSampler

    public init(
        makeTraceID: @escaping @Sendable () -> TraceID = {
            var random = IDRandomGenerator()
            return TraceID.timeOrdered(using: &random)
        },
        sampler: TraceSampler = .always,
        onSpanEnd: (@Sendable (FinishedSpan) -> Void)? = nil
    ) {
        self.makeTraceID = makeTraceID
        self.sampler = sampler
        self.onSpanEnd = onSpanEnd
    }

    public func startSpan<Instant: TracerInstant>(
        _ operationName: String,
        context: @autoclosure () -> ServiceContext,
        ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant,
        function: String,
        file fileID: String,
        line: UInt
    ) -> W3CSpan {
        var context = context()
        let spanContext = self.spanContext(childOf: context.w3cSpanContext)
        context.w3cSpanContext = spanContext
        return W3CSpan(
            operationName: operationName,
            kind: kind,
            context: context,
            spanContext: spanContext,
            startNanoseconds: instant().nanosecondsSinceEpoch,
            onEnd: self.onSpanEnd
        )
    }

    /// A new span's identity: a child of `parent` (same trace, flags and state: the caller's
    /// sampling decision holds), or the root of a new trace (``makeTraceID``), sampled or not by
    /// ``sampler``, when there is none.
    public func spanContext(childOf parent: W3CSpanContext?) -> W3CSpanContext {
        var random = IDRandomGenerator()
        guard let parent else {
            let traceID = self.makeTraceID()
            return W3CSpanContext(
                traceContext: TraceContext(
                    traceID: traceID, spanID: .random(using: &random), flags: self.sampler.samples(traceID) ? .sampled : [],
                    state: TraceState()
                )
            )
        }
        return W3CSpanContext(
            traceContext: TraceContext(
                traceID: parent.traceContext.traceID, spanID: .random(using: &random), flags: parent.traceContext.flags,
                state: parent.traceContext.state
            ),
            parentSpanID: parent.traceContext.spanID
        )
    }

    /// The caller's span from its `traceparent`/`tracestate` headers; nil when absent or
    /// malformed (the request then starts a new trace).
    public static func remoteSpanContext(traceparent: String?, tracestate: String?) -> W3CSpanContext? {
        guard let traceparent, let parsed = try? TraceContext(traceParentHeaderValue: traceparent, traceStateHeaderValue: tracestate)
        else { return nil }
        return W3CSpanContext(traceContext: parsed, isRemote: true)
    }

    public func forceFlush() {}

    public func extract<Carrier, Extract: Extractor>(
        _ carrier: Carrier,
        into context: inout ServiceContext,
        using extractor: Extract
    ) where Extract.Carrier == Carrier {
        // A malformed header is ignored: the request simply starts a new trace.
        guard let remote = Self.remoteSpanContext(
            traceparent: extractor.extract(key: "traceparent", from: carrier), tracestate: extractor.extract(key: "tracestate", from: carrier)
        ) else { return }
        context.w3cSpanContext = remote
    }

    public func inject<Carrier, Inject: Injector>(
        _ context: ServiceContext,
        into carrier: inout Carrier,
        using injector: Inject
    ) where Inject.Carrier == Carrier {
        guard let spanContext = context.w3cSpanContext else { return }
        injector.inject(spanContext.traceparent, forKey: "traceparent", into: &carrier)
        if let state = spanContext.traceContext.traceStateHeaderValue, !state.isEmpty {
            injector.inject(state, forKey: "tracestate", into: &carrier)
        }
    }
}

/// A finished span as handed to ``W3CTracer/onSpanEnd``.
public struct FinishedSpan: Sendable {
    public var operationName: String
    public var kind: SpanKind
    public var spanContext: W3CSpanContext
    public var attributes: SpanAttributes
    public var status: SpanStatus?
    public var startNanoseconds: UInt64
    public var endNanoseconds: UInt64
}

/// A span of ``W3CTracer``. Mutable state sits behind a lock: spans are shared across tasks.
public final class W3CSpan: Tracing.Span, Sendable {
    public let context: ServiceContext
    public let spanContext: W3CSpanContext
    public let kind: SpanKind
    public let startNanoseconds: UInt64
    private let onEnd: (@Sendable (FinishedSpan) -> Void)?

    private struct State {
        var operationName: String
        var attributes: SpanAttributes = [:]
        var status: SpanStatus?
        var ended = false
    }
    private let state: Mutex<State>

    init(
        operationName: String,
        kind: SpanKind,
        context: ServiceContext,
        spanContext: W3CSpanContext,
        startNanoseconds: UInt64,
        onEnd: (@Sendable (FinishedSpan) -> Void)?
    ) {
        self.kind = kind
        self.context = context
        self.spanContext = spanContext
        self.startNanoseconds = startNanoseconds
        self.onEnd = onEnd
        self.state = Mutex(State(operationName: operationName))
    }

    public var operationName: String {
        get { self.state.withLock { $0.operationName } }
        set { self.state.withLock { $0.operationName = newValue } }
    }

    public var attributes: SpanAttributes {
        get { self.state.withLock { $0.attributes } }
        set { self.state.withLock { $0.attributes = newValue } }
    }

    public var isRecording: Bool { self.onEnd != nil && self.state.withLock { !$0.ended } }

    public func setStatus(_ status: SpanStatus) {
        self.state.withLock { $0.status = status }
    }

    public func addEvent(_ event: SpanEvent) {}

    public func addLink(_ link: SpanLink) {}

    public func recordError<Instant: TracerInstant>(
        _ error: any Error,
        attributes: SpanAttributes,
        at instant: @autoclosure () -> Instant
    ) {
        self.state.withLock { $0.attributes["exception.message"] = "\(error)" }
    }

    public func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        guard let onEnd = self.onEnd else {
            self.state.withLock { $0.ended = true }
            return
        }
        let finished: FinishedSpan? = self.state.withLock { state in
            guard !state.ended else { return nil }
            state.ended = true
            return FinishedSpan(
                operationName: state.operationName,
                kind: self.kind,
                spanContext: self.spanContext,
                attributes: state.attributes,
                status: state.status,
                startNanoseconds: self.startNanoseconds,
                endNanoseconds: instant().nanosecondsSinceEpoch
            )
        }
        if let finished { onEnd(finished) }
    }
}

extension Logger.MetadataProvider {
    /// Adds `trace_id`, `span_id` and `request_id` of the current task's `ServiceContext` to every log line.
    public static let w3cTracing = Logger.MetadataProvider {
        guard let context = ServiceContext.current else { return [:] }
        var metadata: Logger.Metadata = [:]
        if let span = context.w3cSpanContext {
            metadata["trace_id"] = .string(span.traceID)
            metadata["span_id"] = .string(span.spanID)
        }
        if let requestID = context.requestID {
            metadata["request_id"] = .string(requestID)
        }
        return metadata
    }
}
