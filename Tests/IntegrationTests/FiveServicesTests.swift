import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// Starts the five built executables as processes and checks the kit on each of them.
@Suite(.serialized) struct FiveServicesTests {
    static let services = ["load-balancer", "api-gateway", "auth-service", "user-service", "blog-service"]

    @Test func everyServiceRunsTheFullKit() async throws {
        let dataDir = try temporaryDirectory("titanium-it")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let processes = try Self.services.map { try ServiceProcess($0, environment: ["DATA_DIR": dataDir.appendingPathComponent($0).path]) }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            for service in processes {
                let port = try await service.port()
                let base = "http://127.0.0.1:\(port)"

                let live = try await get(client, "\(base)/health/live")
                #expect(live.status == .ok, "\(service.name) /health/live")
                let ready = try await get(client, "\(base)/health/ready")
                #expect(ready.status == .ok, "\(service.name) /health/ready: \(ready.body)")
                #expect(try json(ready.body)["status"] as? String == "ready")

                // A request with a traceparent: the same trace id comes back and is in the access line.
                let traceID = String((0..<32).map { _ in "0123456789abcdef".randomElement()! })
                let traceparent = "00-\(traceID)-00f067aa0ba902b7-01"
                let probe = try await get(client, "\(base)/no-such-route", headers: ["traceparent": traceparent, "X-Request-ID": "it-\(service.name)"])
                #expect(probe.status == .notFound)
                #expect(probe.headers["traceparent"].first?.contains(traceID) == true, "\(service.name) traceparent header")
                #expect(probe.headers["X-Request-ID"].first == "it-\(service.name)")
                #expect(try (json(probe.body)["error"] as? [String: Any])?["code"] as? String == "not_found")

                let stats = try await get(client, "\(base)/stats")
                #expect(stats.status == .ok)
                let statsObject = try json(stats.body)
                #expect(statsObject["service"] as? String == service.name)
                #expect(statsObject["requests_total"] as? Int == 1, "\(service.name): only the probe counts: \(stats.body)")
                #expect(statsObject["dependencies"] is [String: Any])

                let metrics = try await get(client, "\(base)/metrics")
                #expect(metrics.status == .ok)
                #expect(metrics.headers["Content-Type"].first?.hasPrefix("text/plain; version=0.0.4") == true)
                #expect(metrics.body.contains(#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#), "\(service.name) metrics")
                #expect(metrics.body.contains("process_resident_memory_bytes "))

                let accessLine = try await eventually {
                    service.logObjects.first { $0["message"] as? String == "request" && $0["trace_id"] as? String == traceID }
                }
                #expect(accessLine["service"] as? String == service.name)
                #expect(accessLine["request_id"] as? String == "it-\(service.name)")
                #expect(accessLine["path"] as? String == "/no-such-route")
                #expect(accessLine["status"] as? Int == 404)
            }
            for service in processes {
                let status = try await service.terminate()
                #expect(status == 0, "\(service.name) exit status after SIGTERM: \(status)")
            }
        } catch {
            try await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    @Test func anInvalidSettingStopsStartUpNamingTheVariable() async throws {
        let service = try ServiceProcess("blog-service", environment: ["HTTP_PORT": "70000"])
        let status = try await service.waitForExit()
        #expect(status != 0)
        let lines = service.text.split(separator: "\n")
        #expect(lines.count == 1, "\(service.text)")
        #expect(lines.first?.contains("HTTP_PORT") == true)
    }
}

struct Fetched {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: String
}

func get(_ client: HTTPClient, _ url: String, headers: [String: String] = [:]) async throws -> Fetched {
    var request = HTTPClientRequest(url: url)
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    let response = try await client.execute(request, timeout: .seconds(5))
    let body = try await response.body.collect(upTo: 1 << 22)
    return Fetched(status: response.status, headers: response.headers, body: String(buffer: body))
}

func json(_ text: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw ProcessFailure("not a JSON object: \(text)")
    }
    return object
}

/// Polls `probe` until it returns a value (log lines reach the pipe asynchronously).
func eventually<T>(timeout: Duration = .seconds(5), _ probe: () throws -> T?) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if let value = try probe() { return value }
        try await Task.sleep(for: .milliseconds(25))
    }
    throw ProcessFailure("condition not met within \(timeout)")
}
