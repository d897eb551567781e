import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// The load balancer's aggregated `/stats` with one healthy, one hanging and one refusing target.
@Suite(.serialized) struct LoadBalancerStatsTests {
    @Test func fanOutIsBoundedAndOnlyRealAPITrafficCounts() async throws {
        let dataDir = try temporaryDirectory("titanium-lb")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let blog = try ServiceProcess("blog-service", environment: ["DATA_DIR": dataDir.path])
        let blogURL = "http://127.0.0.1:\(try await blog.port())"
        let silent = try SilentServer()
        let refused = try Ports.refused()
        let balancer = try ServiceProcess("load-balancer", environment: [
            "GATEWAY_URLS": "http://127.0.0.1:\(refused)",
            "STATS_TARGETS": "blog-service=\(blogURL),user-service=http://127.0.0.1:\(silent.port),auth-service=http://127.0.0.1:\(refused)",
        ])
        let base = "http://127.0.0.1:\(try await balancer.port())"
        try await withHTTPClient { client in
            func stats() async throws -> [String: Any] {
                try await Task.sleep(for: .milliseconds(1100))  // past the 1 s reuse of the last answer
                let start = ContinuousClock.now
                let response = try await get(client, "\(base)/stats")
                let elapsed = start.duration(to: .now)
                // 1.9 s per target, and slack for a loaded machine (2.2 s seen once): a hang would be far longer.
                #expect(elapsed < .seconds(3), "/stats took \(elapsed)")
                #expect(response.status == .ok)
                return try json(response.body)
            }
            let first = try await stats()
            let services = try #require(first["services"] as? [[String: Any]])
            let byName = Dictionary(uniqueKeysWithValues: services.map { ($0["name"] as! String, $0) })
            #expect(byName["blog-service"]?["status"] as? String == "ONLINE")
            #expect((byName["blog-service"]?["stats"] as? [String: Any])?["service"] as? String == "blog-service")
            #expect(byName["user-service"]?["status"] as? String == "OFFLINE")
            #expect(byName["auth-service"]?["status"] as? String == "OFFLINE")
            #expect((byName["user-service"]?["error"] as? String)?.isEmpty == false)
            #expect((first["system"] as? [String: Any])?["status"] as? String == "degraded")
            // The load balancer counts itself, as the dashboard's table lists it.
            #expect(first["active_services"] as? Int == 2)
            #expect(first["total_services"] as? Int == 4)
            #expect(first["error_rate"] as? Double == 0)
            #expect((first["database"] as? [String: Any])?["status"] as? String == "ONLINE")
            #expect(first["has_real_traffic"] as? Bool == false)

            // HEAD and heartbeat-marked requests leave the window alone.
            var head = HTTPClientRequest(url: "\(base)/api/posts")
            head.method = .HEAD
            _ = try await client.execute(head, timeout: .seconds(5))
            _ = try await get(client, "\(base)/api/posts", headers: ["X-Heartbeat": "true"])
            let quiet = try await stats()
            #expect(quiet["has_real_traffic"] as? Bool == false)
            #expect(quiet["requests_per_second"] as? Double == 0)

            // A real API request counts (here an error: the only gateway refuses, 502, or has been
            // marked unhealthy by the health checks by now, 503).
            let failing = try await get(client, "\(base)/api/posts").status
            let lastRequest = Date()
            #expect(failing == .badGateway || failing == .serviceUnavailable, "\(failing)")
            let busy = try await stats()
            #expect(busy["has_real_traffic"] as? Bool == true)
            #expect(busy["requests_per_second"] as? Double == 0.1)
            #expect(busy["success_rate"] as? Double == 0)
            #expect(busy["error_rate"] as? Double == 1)

            // With no more traffic, has_real_traffic turns false 10 s after the last request: every
            // answer generated before then says true, every one generated after says false.
            var seen: [(at: TimeInterval, real: Bool)] = []
            _ = try await poll(timeout: .seconds(20), interval: .milliseconds(250)) { () -> Bool? in
                let stats = try json(try await get(client, "\(base)/stats").body)
                let generated = try #require((stats["generated_at"] as? String).flatMap(Self.parseTimestamp))
                let real = try #require(stats["has_real_traffic"] as? Bool)
                seen.append((generated.timeIntervalSince(lastRequest), real))
                return real ? nil : true
            }
            for answer in seen where abs(answer.at - 10) > 0.1 {
                #expect(answer.real == (answer.at < 10), "has_real_traffic \(answer.real) \(answer.at) s after the last request")
            }
            #expect(seen.contains { $0.real } && seen.last?.real == false)

            // Many pollers at once share one fan-out: blog-service is asked once, not 12 times.
            func blogStatsCalls() async throws -> Int {
                let metrics = try await get(client, "\(blogURL)/metrics").body
                let line = metrics.split(separator: "\n").first { $0.hasPrefix(#"http_requests_total{method="GET",route="/stats",status="200"}"#) }
                return line.flatMap { $0.split(separator: " ").last }.flatMap { Int($0) } ?? 0
            }
            try await Task.sleep(for: .milliseconds(1100))
            let before = try await blogStatsCalls()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<12 { group.addTask { _ = try await get(client, "\(base)/stats") } }
                try await group.waitForAll()
            }
            #expect(try await blogStatsCalls() - before == 1)

            // The fan-out carries the caller's trace and request id to every service it asks.
            try await Task.sleep(for: .milliseconds(1100))
            let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
            _ = try await get(client, "\(base)/stats", headers: [
                "traceparent": "00-\(traceID)-00f067aa0ba902b7-01", "X-Request-ID": "fan-out-check-1",
            ])
            let asked = blog.logObjects.filter { $0["route"] as? String == "/stats" && $0["request_id"] as? String == "fan-out-check-1" }
            #expect(asked.count == 1)
            #expect(asked.first?["trace_id"] as? String == traceID)
        }
        _ = silent
        #expect(try await balancer.terminate() == 0)
        #expect(try await blog.terminate() == 0)
    }

    /// Started by hand, with a dashboard folder that has no `vendor/`: Chart.js comes from `CHARTJS_PATH`.
    @Test func chartJSIsServedFromItsPathWhenTheDashboardHasNone() async throws {
        let root = try temporaryDirectory("titanium-lb-ui")
        defer { try? FileManager.default.removeItem(at: root) }
        let dashboard = root.appendingPathComponent("ui")
        try FileManager.default.createDirectory(at: dashboard, withIntermediateDirectories: true)
        try Data("<html>dashboard</html>".utf8).write(to: dashboard.appendingPathComponent("index.html"))
        let script = "/* Chart.js stand-in */ window.Chart = function () {};"
        let chartJS = root.appendingPathComponent("chart.min.js")
        try Data(script.utf8).write(to: chartJS)
        let refused = try Ports.refused()
        func balancer(chartJSPath: String) throws -> ServiceProcess {
            try ServiceProcess("load-balancer", environment: [
                "DATA_DIR": root.path, "DASHBOARD_DIR": dashboard.path, "CHARTJS_PATH": chartJSPath,
                "GATEWAY_URLS": "http://127.0.0.1:\(refused)", "STATS_TARGETS": "blog-service=http://127.0.0.1:\(refused)",
                "SHUTDOWN_DELAY_SECONDS": "0",
            ])
        }
        try await withHTTPClient { client in
            let served = try balancer(chartJSPath: chartJS.path)
            let base = "http://127.0.0.1:\(try await served.port())"
            let page = try await get(client, "\(base)/")
            #expect(page.status == .ok && page.body.contains("dashboard"))
            let chart = try await get(client, "\(base)/vendor/chart.min.js")
            #expect(chart.status == .ok)
            #expect(chart.body == script)
            #expect(chart.headers["Content-Type"].first?.hasPrefix("application/javascript") == true)
            #expect(try await served.terminate() == 0)

            // No file there either: 404, and the log says why the charts are missing.
            let missing = try balancer(chartJSPath: root.appendingPathComponent("absent.js").path)
            let missingBase = "http://127.0.0.1:\(try await missing.port())"
            #expect(try await get(client, "\(missingBase)/vendor/chart.min.js").status == .notFound)
            #expect(missing.logObjects.contains { ($0["message"] as? String)?.hasPrefix("no Chart.js to serve") == true })
            #expect(try await missing.terminate() == 0)
        }
    }

    static func parseTimestamp(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }
}
