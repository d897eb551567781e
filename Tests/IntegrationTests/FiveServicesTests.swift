import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// Starts the five built executables as processes and checks the kit on each of them.
@Suite(.serialized) struct FiveServicesTests {
    static let services = ["load-balancer", "api-gateway", "auth-service", "user-service", "blog-service"]

    @Test func everyServiceRunsTheFullKit() async throws {
        let dataDir = try temporaryDirectory("titanium-it")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        try await withRedisServer { redis in
            let processes = try Self.services.map {
                try ServiceProcess($0, environment: ["DATA_DIR": dataDir.appendingPathComponent($0).path, "REDIS_URL": redis.url, "BCRYPT_COST": "4"])
            }
            try await withHTTPClient { client in
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
                    // Only the probe counts; the load balancer counts only /api traffic, so not even that.
                    let expectedTotal = service.name == "load-balancer" ? 0 : 1
                    #expect(statsObject["requests_total"] as? Int == expectedTotal, "\(service.name): \(stats.body)")
                    if service.name == "load-balancer" {
                        // The load balancer's /stats is the aggregate of the others (LoadBalancerStatsTests).
                        #expect(statsObject["services"] is [[String: Any]])
                    } else {
                        #expect(statsObject["dependencies"] is [String: Any])
                    }

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
            }
        }
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

