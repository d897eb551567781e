import Foundation
import Logging
import NIOCore
import Prometheus
import Testing
import TitaniumHTTP
import TitaniumTrace
import TitaniumTracing
import W3CTraceContext

/// `TRACE_SAMPLE_RATIO` at the edge, the sampled flag honoured by every later hop, and the trace
/// store keeping 5xx and slow requests of unsampled traces.
@Suite struct SamplingTests {
    @Test func theRatioSamplesThatShareOfNewTraces() {
        let sampler = TraceSampler(ratio: 0.1)
        var random = IDRandomGenerator()
        let sampled = (0..<20_000).filter { _ in sampler.samples(TraceID.timeOrdered(using: &random)) }.count
        // Binomial(20,000, 0.1): sd ≈ 42; ±5 sd.
        #expect((1790...2210).contains(sampled), "\(sampled) of 20,000 sampled at 0.1")
        #expect((0..<1000).allSatisfy { _ in TraceSampler(ratio: 1).samples(TraceID.timeOrdered(using: &random)) })
        #expect((0..<1000).allSatisfy { _ in !TraceSampler(ratio: 0).samples(TraceID.timeOrdered(using: &random)) })
    }

    @Test func theDecisionDependsOnTheTraceIDOnly() {
        var random = IDRandomGenerator()
        let sampler = TraceSampler(ratio: 0.5)
        for _ in 0..<100 {
            let id = TraceID.timeOrdered(using: &random)
            #expect(sampler.samples(id) == TraceSampler(ratio: 0.5).samples(id))
        }
    }

    @Test func aNewTraceCarriesTheDecisionAndAContinuedOneKeepsItsCallers() throws {
        let never = W3CTracer(sampler: TraceSampler(ratio: 0))
        let always = W3CTracer(sampler: TraceSampler(ratio: 1))
        let root = never.spanContext(childOf: nil)
        #expect(!root.isSampled)
        #expect(root.traceparent.hasSuffix("-00"))
        #expect(always.spanContext(childOf: nil).traceparent.hasSuffix("-01"))

        let sampledCaller = try #require(W3CTracer.remoteSpanContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", tracestate: nil))
        let unsampledCaller = try #require(W3CTracer.remoteSpanContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", tracestate: nil))
        #expect(never.spanContext(childOf: sampledCaller).isSampled)
        #expect(!always.spanContext(childOf: unsampledCaller).isSampled)
    }

    @Test func theRatioIsReadAndCheckedAtStartUp() throws {
        func ratio(_ value: String) throws -> Double {
            try ServiceConfiguration(service: "s", defaultPort: 0, settings: .fromEnvironment(["TRACE_SAMPLE_RATIO": value])).traceSampleRatio
        }
        #expect(try ServiceConfiguration(service: "s", defaultPort: 0, settings: .fromEnvironment([:])).traceSampleRatio == 1)
        #expect(try ratio("0.01") == 0.01)
        #expect(try ratio("0") == 0)
        for bad in ["1.5", "-0.1", "ten", "nan"] {
            #expect(throws: ConfigurationError.self, "TRACE_SAMPLE_RATIO=\(bad)") { try ratio(bad) }
        }
        let traces = try TraceConfiguration(settings: .fromEnvironment(["TRACE_KEEP_SLOWER_THAN_MS": "250"]), dataDirectory: "/tmp")
        #expect(traces.keepSlowerThan == .milliseconds(250))
        #expect(try TraceConfiguration(settings: .fromEnvironment([:]), dataDirectory: "/tmp").keepSlowerThan == .milliseconds(500))
    }

    @Test func unsampledRequestsAreKeptOnlyWhenFailedOrSlow() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("titanium-sampling-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let registry = PrometheusCollectorRegistry()
        let recorder = try TraceRecorder(
            configuration: TraceConfiguration(databasePath: directory.appendingPathComponent("traces.db").path),
            service: "test-service", instance: "test:1", registry: registry, logger: .init(label: "test")
        )
        let unsampled = W3CTracer(sampler: TraceSampler(ratio: 0)).spanContext(childOf: nil)
        let sampled = W3CTracer(sampler: TraceSampler(ratio: 1)).spanContext(childOf: nil)
        func request(_ span: W3CSpanContext, status: Int, milliseconds: UInt64) -> FinishedRequest {
            FinishedRequest(
                spanContext: span, method: "GET", route: "/api/posts", path: "/api/posts", status: status,
                latencyMicroseconds: milliseconds * 1000, startedAtMilliseconds: 1_700_000_000_000, remoteAddress: nil,
                userAgent: nil, userID: nil
            )
        }
        #expect(recorder.keeps(request(sampled, status: 200, milliseconds: 1)))
        #expect(!recorder.keeps(request(unsampled, status: 200, milliseconds: 1)))
        #expect(!recorder.keeps(request(unsampled, status: 404, milliseconds: 499)))
        #expect(recorder.keeps(request(unsampled, status: 503, milliseconds: 1)))
        #expect(recorder.keeps(request(unsampled, status: 200, milliseconds: 500)))

        recorder.record(request(unsampled, status: 200, milliseconds: 1))
        recorder.record(request(unsampled, status: 500, milliseconds: 1))
        #expect(recorder.bufferDepth == 1)
        let text = String(decoding: registry.emitToBuffer(), as: UTF8.self)
        #expect(text.contains("trace_records_unsampled_total 1"))
    }
}
