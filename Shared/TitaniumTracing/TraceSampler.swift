import W3CTraceContext

/// Whether a trace that starts here is sampled: the share `ratio` of new traces, decided from
/// the trace id's random bits, as OpenTelemetry's `TraceIdRatioBased` sampler does. The
/// decision is made once, at the first hop that sees no `traceparent`, and travels in its
/// sampled flag; every later hop follows the flag (``W3CTracer/spanContext(childOf:)``).
public struct TraceSampler: Sendable {
    /// 0 … 1: the share of new traces sampled.
    public let ratio: Double
    /// Traces whose last 8 id bytes, read as an unsigned number, are below this are sampled.
    private let threshold: UInt64
    private let samplesAll: Bool

    public init(ratio: Double) {
        let ratio = ratio.isFinite ? min(max(ratio, 0), 1) : 1
        self.ratio = ratio
        self.samplesAll = ratio >= 1
        // 2^64 · ratio, computed in Double (exact enough for a ratio) and kept below 2^64.
        self.threshold = ratio >= 1 ? .max : UInt64(ratio * 18_446_744_073_709_551_615.0)
    }

    public static let always = TraceSampler(ratio: 1)

    /// The last 8 bytes of a trace id are random both in ids made here (time-ordered: 6 bytes of
    /// time, 10 random) and in W3C Level 2 ids, so a fixed threshold on them samples `ratio` of traces.
    public func samples(_ traceID: TraceID) -> Bool {
        if self.samplesAll { return true }
        var low: UInt64 = 0
        withUnsafeBytes(of: traceID.bytes) { raw in
            for index in 8..<16 { low = low << 8 | UInt64(raw[index]) }
        }
        return low < self.threshold
    }
}
