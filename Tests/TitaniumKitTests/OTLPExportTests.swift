import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Prometheus
import Testing
import TitaniumHTTP
@testable import TitaniumOTLP
import TitaniumTracing

/// The OTLP/HTTP JSON a service sends, its configuration, and what a collector's answers do.
/// (tests/traces checks the same JSON against the protobuf schema, through a real collector endpoint.)
@Suite struct OTLPExportTests {
    static let resource = OTLPResource(service: "blog-service", instance: "host:7303", version: "0.1.0")

    func request(status: Int = 200, parent: String? = "00f067aa0ba902b7", userAgent: String? = "curl/8") throws -> FinishedRequest {
        let caller = parent.flatMap { W3CTracer.remoteSpanContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-\($0)-01", tracestate: nil) }
        return FinishedRequest(
            spanContext: W3CTracer().spanContext(childOf: caller), method: "GET", route: "/api/posts/{id}", path: "/api/posts/7",
            status: status, latencyMicroseconds: 1_500, startedAtMilliseconds: 1_700_000_000_123, startedAtNanoseconds: 1_700_000_000_123_456_789,
            remoteAddress: try SocketAddress(ipAddress: "10.1.2.3", port: 5000), userAgent: userAgent, userID: "42"
        )
    }

    func decode(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    func attributes(_ list: Any?) -> [String: [String: Any]] {
        var result: [String: [String: Any]] = [:]
        for case let entry as [String: Any] in (list as? [Any]) ?? [] {
            if let key = entry["key"] as? String, let value = entry["value"] as? [String: Any] { result[key] = value }
        }
        return result
    }

    @Test func aRecordedRequestBecomesAServerSpanWithTheSameIDs() throws {
        let finished = try self.request(status: 503)
        let body = try self.decode(OTLPTraceEncoder.encode([finished], resource: Self.resource))
        let resourceSpans = try #require((body["resourceSpans"] as? [[String: Any]])?.first)
        let resource = self.attributes((resourceSpans["resource"] as? [String: Any])?["attributes"])
        #expect(resource["service.name"]?["stringValue"] as? String == "blog-service")
        #expect(resource["service.instance.id"]?["stringValue"] as? String == "host:7303")
        #expect(resource["service.version"]?["stringValue"] as? String == "0.1.0")
        let scope = try #require((resourceSpans["scopeSpans"] as? [[String: Any]])?.first)
        let span = try #require((scope["spans"] as? [[String: Any]])?.first)
        #expect(span["traceId"] as? String == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(span["spanId"] as? String == finished.spanContext.spanID)
        #expect(span["parentSpanId"] as? String == "00f067aa0ba902b7")
        #expect(span["name"] as? String == "GET /api/posts/{id}")
        #expect(span["kind"] as? Int == 2)
        // 64-bit integers are decimal strings in OTLP's JSON.
        #expect(span["startTimeUnixNano"] as? String == "1700000000123456789")
        #expect(span["endTimeUnixNano"] as? String == "1700000000124956789")
        let attributes = self.attributes(span["attributes"])
        #expect(attributes["http.request.method"]?["stringValue"] as? String == "GET")
        #expect(attributes["http.route"]?["stringValue"] as? String == "/api/posts/{id}")
        #expect(attributes["url.path"]?["stringValue"] as? String == "/api/posts/7")
        #expect(attributes["http.response.status_code"]?["intValue"] as? String == "503")
        #expect(attributes["client.address"]?["stringValue"] as? String == "10.1.2.3")
        #expect(attributes["user_agent.original"]?["stringValue"] as? String == "curl/8")
        #expect(attributes["user.id"]?["stringValue"] as? String == "42")
        let status = try #require(span["status"] as? [String: Any])
        #expect(status["code"] as? Int == 2)
    }

    @Test func aRootSpanHasNoParentAndASuccessNoErrorStatus() throws {
        let body = try self.decode(OTLPTraceEncoder.encode([try self.request(parent: nil)], resource: Self.resource))
        let span = try #require(
            (((body["resourceSpans"] as? [[String: Any]])?.first?["scopeSpans"] as? [[String: Any]])?.first?["spans"] as? [[String: Any]])?.first
        )
        #expect(span["parentSpanId"] == nil)
        #expect(span["status"] == nil)
    }

    @Test func clientTextIsEscaped() throws {
        let hostile = "a\"b\\c\nd\u{1}é"
        let body = try self.decode(OTLPTraceEncoder.encode([try self.request(userAgent: hostile)], resource: Self.resource))
        let span = try #require(
            (((body["resourceSpans"] as? [[String: Any]])?.first?["scopeSpans"] as? [[String: Any]])?.first?["spans"] as? [[String: Any]])?.first
        )
        #expect(self.attributes(span["attributes"])["user_agent.original"]?["stringValue"] as? String == hostile)
    }

    @Test func theStandardVariablesConfigureTheExport() throws {
        #expect(try OTLPConfiguration.from(.fromEnvironment([:])) == nil)
        let base = try #require(try OTLPConfiguration.from(.fromEnvironment(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318/"])))
        #expect(base.tracesURL == "http://jaeger:4318/v1/traces")
        #expect(base.timeout == .seconds(10) && base.maxQueueSize == 2048 && base.maxBatchSize == 512 && base.scheduleDelay == .seconds(5))
        let full = try #require(try OTLPConfiguration.from(.fromEnvironment([
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://otel.example/custom/traces",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%3Dcret,X-Tenant = blue", "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10", "OTEL_BSP_SCHEDULE_DELAY": "200",
        ])))
        #expect(full.tracesURL == "https://otel.example/custom/traces")
        #expect(full.headers == [.init(name: "api-key", value: "s=cret"), .init(name: "X-Tenant", value: "blue")])
        #expect(full.timeout == .milliseconds(2500) && full.maxQueueSize == 100 && full.maxBatchSize == 10)
        #expect(full.scheduleDelay == .milliseconds(200))
        for bad in [
            ["OTEL_EXPORTER_OTLP_ENDPOINT": "jaeger:4318"],
            ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://j:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"],
            ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://j:4318", "OTEL_EXPORTER_OTLP_HEADERS": "novalue"],
            ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://j:4318", "OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "11"],
        ] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try OTLPConfiguration.from(.fromEnvironment(bad)) }
        }
    }

    @Test func onlyAnswersACollectorMayRecoverFromAreRetried() {
        #expect(OTLPExporter.outcome(status: .ok, retryAfter: nil) == .accepted)
        #expect(OTLPExporter.outcome(status: .tooManyRequests, retryAfter: "3") == .retryable("HTTP 429", retryAfter: .seconds(3)))
        for status: HTTPResponseStatus in [.badGateway, .serviceUnavailable, .gatewayTimeout] {
            #expect(OTLPExporter.outcome(status: status, retryAfter: nil) == .retryable("HTTP \(status.code)", retryAfter: nil))
        }
        for status: HTTPResponseStatus in [.badRequest, .notFound, .payloadTooLarge, .internalServerError] {
            #expect(OTLPExporter.outcome(status: status, retryAfter: nil) == .rejected("HTTP \(status.code)"))
        }
        let backoffs = (1...6).map { OTLPExporter.backoff(attempt: $0) }
        #expect(backoffs[0] >= .milliseconds(400) && backoffs[0] <= .milliseconds(600))
        #expect(backoffs.allSatisfy { $0 <= .seconds(6) })
    }

    @Test func aFullQueueDropsAndADownCollectorIsCountedAndRetried() async throws {
        var configuration = OTLPConfiguration(tracesURL: "http://127.0.0.1:1/v1/traces")
        configuration.maxQueueSize = 4
        configuration.maxBatchSize = 4
        let registry = PrometheusCollectorRegistry()
        let exporter = OTLPExporter(configuration: configuration, resource: Self.resource, registry: registry, logger: Logger(label: "test"))
        for _ in 0..<10 { exporter.enqueue(try self.request()) }
        #expect(exporter.queueDepth == 4)
        func metrics() -> String { String(decoding: registry.emitToBuffer(), as: UTF8.self) }
        #expect(metrics().contains("otlp_spans_dropped_total 6"))

        let client = OTLPExporter.makeClient(configuration)
        let start = ContinuousClock.now
        await exporter.export(exporter.queue.takeBatch(), client: client, attempts: 2, timeout: .seconds(5))
        try await client.shutdown()
        let elapsed = start.duration(to: .now)
        #expect(elapsed >= .milliseconds(400), "the second attempt waits for the back-off")
        // Far below two 5 s timeouts (a busy machine stretches the rest).
        #expect(elapsed < .seconds(3), "a refused connection fails at once, not at the timeout")
        #expect(metrics().contains("otlp_export_failures_total 2"))
        #expect(metrics().contains("otlp_spans_dropped_total 10"))
        #expect(metrics().contains("otlp_spans_exported_total 0"))
    }
}
