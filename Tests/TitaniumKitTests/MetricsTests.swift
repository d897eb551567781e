import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import TestSupport
import Testing
import TitaniumHTTP
import TitaniumMetrics

/// One sample line of the text exposition: name, labels, value.
struct Sample: Equatable {
    var name: String
    var labels: [String: String]
    var value: Double
}

/// Parses Prometheus text format 0.0.4, failing on any line that is not a comment or a sample.
func parseExposition(_ text: String) throws -> [Sample] {
    var samples: [Sample] = []
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let match = line.wholeMatch(of: /([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)/) else {
            throw TestFailure("unparseable exposition line: \(line)")
        }
        var labels: [String: String] = [:]
        if let body = match.3 {
            for pair in body.matches(of: /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/) {
                labels[String(pair.1)] = String(pair.2)
            }
        }
        let valueText = String(match.4)
        guard let value = Double(valueText) ?? (valueText == "+Inf" ? .infinity : nil) else {
            throw TestFailure("bad value in: \(line)")
        }
        samples.append(Sample(name: String(match.1), labels: labels, value: value))
    }
    return samples
}

@Suite struct MetricsTests {
    @Test func requestsAreCountedByRouteTemplate() async throws {
        let kit = try makeKit()
        try await makeTestApplication(kit: kit).test(.router) { client in
            for id in 1...3 {
                try await client.execute(uri: "/api/posts/\(id)", method: .get) { #expect($0.status == .ok) }
            }
            for i in 0..<20 {
                try await client.execute(uri: "/random/\(UUID().uuidString)/\(i)", method: .get) { #expect($0.status == .notFound) }
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
                let samples = try parseExposition(String(buffer: response.body))
                let posts = samples.first {
                    $0.name == "http_requests_total" && $0.labels == ["method": "GET", "route": "/api/posts/{id}", "status": "200"]
                }
                #expect(posts?.value == 3)
                let histogramCount = samples.first {
                    $0.name == "http_request_duration_seconds_count" && $0.labels == ["method": "GET", "route": "/api/posts/{id}"]
                }
                #expect(histogramCount?.value == 3)
                let buckets = samples.filter { $0.name == "http_request_duration_seconds_bucket" && $0.labels["route"] == "/api/posts/{id}" }
                #expect(buckets.first?.labels["le"] == "0.001")
                #expect(buckets.last?.labels["le"] == "+Inf")
                #expect(buckets.contains { $0.labels["le"] == "10.0" })
                // Twenty random paths share one label value.
                let routes = Set(samples.filter { $0.name == "http_requests_total" }.compactMap { $0.labels["route"] })
                #expect(routes == ["/api/posts/{id}", "unmatched"])
                let unmatched = samples.first { $0.name == "http_requests_total" && $0.labels["route"] == "unmatched" }
                #expect(unmatched?.value == 20)
                for name in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_start_time_seconds", "http_requests_in_flight"] {
                    #expect(samples.contains { $0.name == name }, "missing \(name)")
                }
                // The scrape itself is in flight while it renders.
                #expect(samples.first { $0.name == "http_requests_in_flight" }?.value == 1)
            }
        }
    }

    static let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Reported as skipped, with the reason, where promtool is missing; in CI it must be there.
    @Test(.enabled(
        if: Self.promtool != nil || ProcessInfo.processInfo.environment["CI"] != nil,
        "promtool is not installed (Debian's prometheus package; scripts/install-deps.sh test installs it)"
    ))
    func exportedMetricsPassPromtool() async throws {
        let promtool = try #require(Self.promtool, "promtool is required in CI")
        let kit = try makeKit()
        try await makeTestApplication(kit: kit).test(.router) { client in
            try await client.execute(uri: "/api/posts/1", method: .get) { _ in }
            try await client.execute(uri: "/api/boom", method: .get) { _ in }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let directory = try temporaryDirectory("titanium-metrics")
                defer { try? FileManager.default.removeItem(at: directory) }
                let exposition = directory.appendingPathComponent("metrics.txt")
                try Data(response.body.readableBytesView).write(to: exposition)
                let check = try ChildProcess.run([promtool, "check", "metrics"], input: exposition.path)
                #expect(check.status == 0, "promtool check metrics: \(check.output)\n\(check.errors)")
            }
        }
    }

    @Test func statsReportTheWindowButNotOperationalRoutes() async throws {
        let kit = try makeKit()
        try await makeTestApplication(kit: kit).test(.router) { client in
            for _ in 0..<4 {
                try await client.execute(uri: "/api/posts/1", method: .get) { _ in }
            }
            try await client.execute(uri: "/api/boom", method: .get) { _ in }
            for path in ["/health/live", "/health/ready", "/metrics", "/stats"] {
                try await client.execute(uri: path, method: .get) { #expect($0.status == .ok) }
            }
            try await client.execute(uri: "/stats", method: .get) { response in
                let stats = try jsonObject(response.body)
                #expect(stats["service"] as? String == "test-service")
                #expect(stats["requests_total"] as? Int == 5)
                #expect(stats["requests_per_second"] as? Double == 0.5)
                #expect(stats["error_rate"] as? Double == 0.2)
                #expect((stats["p95_ms"] as? Double ?? -1) >= 0)
                #expect(stats["dependencies"] is [String: Any])
                for key in ["instance", "version", "started_at", "uptime_s", "avg_response_time_ms"] {
                    #expect(stats[key] != nil, "missing \(key)")
                }
            }
        }
    }
}
