import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOConcurrencyHelpers
import NIOCore
import Testing
import TitaniumHTTP
import TitaniumLogging
import TitaniumTracing
import Tracing
import W3CTraceContext
import NIOHTTP1

/// Keeps every span a tracer finishes.
final class SpanRecorder: Sendable {
    private let spans = NIOLockedValueBox<[FinishedSpan]>([])
    var tracer: W3CTracer { W3CTracer(onSpanEnd: { span in self.spans.withLockedValue { $0.append(span) } }) }
    var finished: [FinishedSpan] { self.spans.withLockedValue { $0 } }
}

func kit(tracer: W3CTracer, logs: LogCapture? = nil) throws -> ServiceKit {
    let configuration = try ServiceConfiguration(service: "test-service", defaultPort: 0, settings: .fromEnvironment([:]))
    return ServiceKit(configuration: configuration, tracer: tracer, logger: logs?.logger(), accessLogSink: logs?.sink ?? .standardOutput)
}

@Suite struct TracingTests {
    let parentTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
    let parentSpanID = "00f067aa0ba902b7"

    @Test func aValidTraceparentIsContinued() async throws {
        let recorder = SpanRecorder()
        let logs = LogCapture()
        try await makeTestApplication(kit: kit(tracer: recorder.tracer, logs: logs)).test(.router) { client in
            let incoming = "00-\(parentTraceID)-\(parentSpanID)-01"
            try await client.execute(uri: "/api/posts/1", method: .get, headers: [.traceparent: incoming]) { response in
                #expect(response.status == .ok)
                let traceparent = try #require(response.headers[.traceparent])
                let parts = traceparent.split(separator: "-")
                #expect(parts.count == 4)
                #expect(parts[1] == parentTraceID)
                #expect(parts[2] != parentSpanID)
            }
        }
        let span = try #require(recorder.finished.first)
        #expect(span.spanContext.traceID == parentTraceID)
        #expect(span.spanContext.parentSpanIDString == parentSpanID)
        #expect(span.operationName == "GET /api/posts/{id}")
        let access = try #require(logs.objects.first { $0["message"] as? String == "request" })
        #expect(access["trace_id"] as? String == parentTraceID)
        #expect(access["span_id"] as? String == span.spanContext.spanID)
        #expect(access["route"] as? String == "/api/posts/{id}")
        #expect(access["path"] as? String == "/api/posts/1")
        #expect(access["status"] as? Int == 200)
        for key in ["method", "duration_ms", "bytes", "client_ip", "user_agent", "request_id"] {
            #expect(access[key] != nil, "access line lacks \(key)")
        }
    }

    @Test(arguments: [
        nil,
        "garbage",
        "00-\(String(repeating: "0", count: 32))-00f067aa0ba902b7-01",  // all-zero trace id is invalid
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper-case hex
    ])
    func aMissingOrMalformedTraceparentStartsANewTrace(header: String?) async throws {
        let recorder = SpanRecorder()
        try await makeTestApplication(kit: kit(tracer: recorder.tracer)).test(.router) { client in
            var headers: HTTPFields = [:]
            if let header { headers[.traceparent] = header }
            try await client.execute(uri: "/api/posts/1", method: .get, headers: headers) { response in
                #expect(response.status == .ok)
                let traceparent = try #require(response.headers[.traceparent])
                #expect(traceparent.wholeMatch(of: /00-[0-9a-f]{32}-[0-9a-f]{16}-01/) != nil)
                #expect(!traceparent.contains(String(repeating: "0", count: 32)))
            }
        }
        let span = try #require(recorder.finished.first)
        #expect(span.spanContext.parentSpanID == nil)
        #expect(span.spanContext.traceID != parentTraceID)
    }

    /// Traces started here get ids that grow with time (the trace stores' trace-id index takes
    /// them at its end): the Unix time in milliseconds in the first 6 bytes, 80 random bits after.
    @Test func newTraceIDsBeginWithTheTimeInMilliseconds() async throws {
        var generator = IDRandomGenerator()
        let early = TraceID.timeOrdered(using: &generator, unixMilliseconds: 1_795_000_000_000)
        let sameMillisecond = TraceID.timeOrdered(using: &generator, unixMilliseconds: 1_795_000_000_000)
        let later = TraceID.timeOrdered(using: &generator, unixMilliseconds: 1_795_000_000_001)
        #expect(early.description.hasPrefix(String(1_795_000_000_000, radix: 16).leftPadded(to: 12)))
        #expect(early.description != sameMillisecond.description)
        #expect(early.description.prefix(12) == sameMillisecond.description.prefix(12))
        #expect(early.description < later.description && sameMillisecond.description < later.description)
        #expect(early.description.wholeMatch(of: /[0-9a-f]{32}/) != nil)

        // The tracer's root spans: the id's time is the time the span started.
        let before = TraceID.nowMilliseconds()
        let span = W3CTracer().startSpan("root", context: ServiceContext.topLevel)
        let after = TraceID.nowMilliseconds()
        let stamped = try #require(UInt64(span.spanContext.traceID.prefix(12), radix: 16))
        #expect(stamped >= before && stamped <= after, "\(stamped) not in \(before)...\(after)")
        span.end()
    }

    @Test func outboundCallsCarryTheChildContextAndRequestID() async throws {
        // The upstream answers with the trace headers it received.
        let upstreamRouter = Router()
        upstreamRouter.get("/echo") { request, _ in
            "\(request.headers[.traceparent] ?? "-") \(request.headers[.xRequestID] ?? "-") \(request.headers[values: .traceparent].count)"
        }
        let upstream = Application(router: upstreamRouter, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await upstream.test(.live) { upstreamClient in
            let port = try #require(upstreamClient.port)
            let recorder = SpanRecorder()
            let frontKit = try kit(tracer: recorder.tracer)
            let outbound = frontKit.makeHTTPClient()
            let router = frontKit.makeRouter()
            router.get("/api/call") { _, _ -> String in
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/echo")
                // A stale header copied from elsewhere must not travel on.
                request.headers.add(name: "traceparent", value: "00-\(String(repeating: "a", count: 32))-\(String(repeating: "b", count: 16))-01")
                let response = try await outbound.execute(request)
                let body = try await response.body.collect(upTo: 1 << 16)
                return String(buffer: body)
            }
            let front = frontKit.makeApplication(router: router)
            do {
                try await front.test(.router) { client in
                    let incoming = "00-\(parentTraceID)-\(parentSpanID)-01"
                    try await client.execute(uri: "/api/call", method: .get, headers: [.traceparent: incoming, .xRequestID: "req-42"]) { response in
                        #expect(response.status == .ok)
                        let echoed = String(buffer: response.body).split(separator: " ")
                        #expect(echoed.count == 3)
                        let received = echoed[0].split(separator: "-")
                        #expect(received[1] == parentTraceID)
                        #expect(echoed[1] == "req-42")
                        #expect(echoed[2] == "1")
                        // The upstream's parent is the caller's server span (no client spans in between).
                        let server = try #require(recorder.finished.first { $0.kind == .server })
                        #expect(!recorder.finished.contains { $0.kind == .client })
                        #expect(String(received[2]) == server.spanContext.spanID)
                    }
                }
            } catch {
                try await outbound.client.shutdown()
                throw error
            }
            try await outbound.client.shutdown()
        }
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - self.count)) + self }
}
