import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// The request trace store with real processes: rows linked across three services and merged
/// by the load balancer, nothing lost on SIGTERM, drops counted when the buffer is full, a
/// locked database retried.
@Suite(.serialized) struct TraceStoreTests {
    static func metric(_ client: HTTPClient, _ base: String, _ name: String) async throws -> Double {
        let text = try await get(client, "\(base)/metrics").body
        let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) } ?? 0
    }

    @Test func oneRequestIsLinkedAcrossThreeStoresAndMergedIntoOneTree() async throws {
        let root = try temporaryDirectory("titanium-traces")
        defer { try? FileManager.default.removeItem(at: root) }
        let admin = "test-admin-token"
        let common = ["TRACE_FLUSH_INTERVAL": "100ms", "ADMIN_TOKEN": admin]
        let user = try ServiceProcess("user-service", environment: common.merging([
            "DATA_DIR": root.appendingPathComponent("user").path, "REDIS_URL": "redis://127.0.0.1:\(try Ports.refused())", "BCRYPT_COST": "4",
        ]) { $1 })
        let userURL = "http://127.0.0.1:\(try await user.port())"
        let gateway = try ServiceProcess("api-gateway", environment: common.merging([
            "DATA_DIR": root.appendingPathComponent("gateway").path, "USER_SERVICE_URL": userURL, "RATE_LIMIT_ENABLED": "false",
        ]) { $1 })
        let gatewayURL = "http://127.0.0.1:\(try await gateway.port())"
        let balancer = try ServiceProcess("load-balancer", environment: common.merging([
            "DATA_DIR": root.appendingPathComponent("lb").path, "GATEWAY_URLS": gatewayURL,
            "STATS_TARGETS": "api-gateway=\(gatewayURL),user-service=\(userURL)",
        ]) { $1 })
        let base = "http://127.0.0.1:\(try await balancer.port())"
        let bearer = ["Authorization": "Bearer \(admin)"]
        try await withHTTPClient { client in
            do {
                // The health checks must have found the gateway before traffic goes through.
                _ = try await poll(timeout: .seconds(10)) { () -> Bool? in
                    try await get(client, "\(base)/api/users/1").status == .notFound ? true : nil
                }
                let response = try await get(client, "\(base)/api/users/1", headers: ["X-User-ID": "42", "X-Request-ID": "trace-test-1"])
                let traceparent = try #require(response.headers.first(name: "traceparent"))
                let traceID = String(traceparent.split(separator: "-")[1])

                // Each service's own store holds its one step (the load balancer's, below, in `sources`).
                for (name, url) in [("api-gateway", gatewayURL), ("user-service", userURL)] {
                    let own = try await poll(timeout: .seconds(5)) { () -> [[String: Any]]? in
                        let steps = try json(try await get(client, "\(url)/traces/\(traceID)", headers: bearer).body)["steps"] as? [[String: Any]]
                        return steps?.isEmpty == false ? steps : nil
                    }
                    #expect(own.count == 1, "\(name): \(own)")
                    #expect(own.first?["service"] as? String == name)
                    #expect(own.first?["user_id"] as? String == "42")
                    #expect(own.first?["route"] as? String != nil)
                }

                // The load balancer merges them: one tree, parent before child.
                // Each store writes on its own schedule (here every 100 ms): poll until all three have.
                let merged = try await poll(timeout: .seconds(5)) { () -> [String: Any]? in
                    let merged = try json(try await get(client, "\(base)/traces/\(traceID)", headers: bearer).body)
                    return (merged["spans"] as? [[String: Any]])?.count == 3 ? merged : nil
                }
                let spans = try #require(merged["spans"] as? [[String: Any]])
                #expect(spans.map { $0["service"] as? String } == ["load-balancer", "api-gateway", "user-service"])
                #expect(spans.map { $0["depth"] as? Int } == [0, 1, 2])
                #expect(spans.allSatisfy { $0["trace_id"] as? String == traceID })
                #expect(spans[0]["parent_span_id"] == nil)
                #expect(spans[1]["parent_span_id"] as? String == spans[0]["span_id"] as? String)
                #expect(spans[2]["parent_span_id"] as? String == spans[1]["span_id"] as? String)
                #expect(spans[2]["route"] as? String == "/api/users/{id}")
                #expect(spans[2]["status_code"] as? Int == 404)
                let durations = spans.compactMap { $0["duration_ms"] as? Double }
                #expect(durations.count == 3 && durations[0] >= durations[1] && durations[1] >= durations[2], "\(durations)")
                let sources = try #require(merged["sources"] as? [[String: Any]])
                #expect(sources.map { $0["name"] as? String } == ["load-balancer", "api-gateway", "user-service"])
                #expect(sources.allSatisfy { $0["status"] as? String == "ONLINE" && $0["count"] as? Int == 1 })

                let recent = try json(try await get(client, "\(base)/traces/recent", headers: bearer).body)
                let headline = try #require((recent["traces"] as? [[String: Any]])?.first { $0["trace_id"] as? String == traceID })
                #expect(headline["services"] as? [String] == ["load-balancer", "api-gateway", "user-service"])
                #expect(headline["steps"] as? Int == 3)

                // The routes expose user ids and client IPs: without the admin token, 401.
                #expect(try await get(client, "\(base)/traces/\(traceID)").status == .unauthorized)
                #expect(try await get(client, "\(userURL)/traces?user_id=42").status == .unauthorized)
                let byUser = try json(try await get(client, "\(userURL)/traces?user_id=42", headers: bearer).body)
                #expect((byUser["steps"] as? [[String: Any]])?.count == 1)
                let summary = try json(try await get(client, "\(userURL)/traces/summary", headers: bearer).body)
                let route = (summary["routes"] as? [[String: Any]])?.first { $0["route"] as? String == "/api/users/{id}" }
                #expect((route?["count"] as? Int ?? 0) >= 1)
                #expect((summary["users"] as? [[String: Any]])?.first { $0["user_id"] as? String == "42" }?["calls"] as? Int == 1)
                #expect(try await get(client, "\(base)/traces/not-a-trace", headers: bearer).status == .notFound)
            } catch {
                // What each process said, to see why.
                print("load-balancer:", balancer.text.suffix(3000), "\napi-gateway:", gateway.text.suffix(3000), "\nuser-service:", user.text.suffix(3000))
                throw error
            }
        }
        #expect(try await balancer.terminate() == 0)
        #expect(try await gateway.terminate() == 0)
        #expect(try await user.terminate() == 0)
    }

    @Test func sigtermWritesEveryBufferedRecord() async throws {
        let root = try temporaryDirectory("titanium-traces")
        defer { try? FileManager.default.removeItem(at: root) }
        // Nothing is written before shutdown: the interval is long and a batch never fills.
        let blog = try ServiceProcess("blog-service", environment: [
            "DATA_DIR": root.path, "TRACE_FLUSH_INTERVAL": "60s", "TRACE_BATCH_SIZE": "1000", "TRACE_BUFFER_SIZE": "1000",
        ])
        let base = "http://127.0.0.1:\(try await blog.port())"
        let count = 300
        try await withHTTPClient { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<6 {
                    group.addTask {
                        for index in stride(from: worker, to: count, by: 6) {
                            _ = try await get(client, "\(base)/api/posts/\(index + 1)")
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        let database = root.appendingPathComponent("traces.db").path
        #expect(try SQLiteCLI.run(database + "-inbox", "SELECT COUNT(*) FROM trace_inbox;") == "0")
        #expect(try await blog.terminate() == 0)
        #expect(try SQLiteCLI.run(database, "SELECT COUNT(*) FROM trace_steps;") == "\(count)")
        #expect(try SQLiteCLI.run(database, "SELECT COUNT(DISTINCT path) FROM trace_steps;") == "\(count)")
        #expect(try SQLiteCLI.run(database + "-inbox", "SELECT COUNT(*) FROM trace_inbox;") == "0")
    }

    @Test func aLockedDatabaseIsRetriedAndAFullBufferDropsAndCounts() async throws {
        let root = try temporaryDirectory("titanium-traces")
        defer { try? FileManager.default.removeItem(at: root) }
        let blog = try ServiceProcess("blog-service", environment: [
            "DATA_DIR": root.path, "LOG_LEVEL": "notice", "TRACE_FLUSH_INTERVAL": "100ms", "TRACE_BUFFER_SIZE": "10", "TRACE_BATCH_SIZE": "10",
        ])
        let base = "http://127.0.0.1:\(try await blog.port())"
        let database = root.appendingPathComponent("traces.db").path
        try await withHTTPClient { client in
            // Another connection holds the write lock of the file batches go to (the inbox) for
            // 2 s while 200 requests arrive.
            let lock = try await SQLiteCLI.holdWriteLock(database + "-inbox", seconds: 2)
            let total = 200
            let slowest = try await withThrowingTaskGroup(of: Duration.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        var slowest = Duration.zero
                        for _ in 0..<(total / 4) {
                            let start = ContinuousClock.now
                            let status = try await get(client, "\(base)/api/posts/1").status
                            #expect(status == .notFound)
                            slowest = max(slowest, start.duration(to: .now))
                        }
                        return slowest
                    }
                }
                return try await group.reduce(Duration.zero) { max($0, $1) }
            }
            #expect(lock.isRunning, "the lock was released before the burst ended")
            // Requests never wait for the store: none was held up by the locked database.
            #expect(slowest < .seconds(1), "slowest request \(slowest)")

            // Once the lock is gone the retried batch is written: every request is either
            // written or counted as dropped, and drops happened (the buffer holds 10).
            let written = try await poll(timeout: .seconds(15), interval: .milliseconds(200)) { () -> (Double, Double)? in
                let written = try await Self.metric(client, base, "trace_records_written_total")
                let dropped = try await Self.metric(client, base, "trace_records_dropped_total")
                return written + dropped == Double(total) ? (written, dropped) : nil
            }
            #expect(written.1 > 0, "no drops with a buffer of 10")
            #expect(written.0 >= 10, "the batch held during the lock was written")
            #expect(try SQLiteCLI.run(database, "ATTACH '\(database)-inbox' AS inbox;", "SELECT (SELECT COUNT(*) FROM trace_steps) + (SELECT COUNT(*) FROM inbox.trace_inbox WHERE id > (SELECT last_inbox_id FROM compaction_state));") == "\(Int(written.0))")
            #expect(blog.text.contains("trace store busy, retrying the batch"))
            // Log lines reach stdout up to 50 ms after they are logged (the buffered writer).
            let retried = try? await poll(timeout: .seconds(5), interval: .milliseconds(50)) { () -> Bool? in
                blog.text.contains("trace batch written after retries") ? true : nil
            }
            #expect(retried == true, "no 'trace batch written after retries' line")
        }
        #expect(try await blog.terminate() == 0)
    }

    @Test func theTraceRoutesAreOpenOnlyOnLoopback() async throws {
        let root = try temporaryDirectory("titanium-traces")
        defer { try? FileManager.default.removeItem(at: root) }
        try await withHTTPClient { client in
            // Off loopback without ADMIN_TOKEN: no start, one line naming the variable; the load
            // balancer too, whose fan-out serves /traces even with its own store off; and the
            // services that make their HTTP client before reading the trace settings (the kit
            // shuts it down: AsyncHTTPClient traps on a running client dropped).
            let services: [(String, [String: String])] = [
                ("api-gateway", [:]), ("load-balancer", ["TRACE_ENABLED": "false", "GATEWAY_URLS": "http://127.0.0.1:1"]),
                ("auth-service", [:]), ("user-service", [:]), ("blog-service", [:]),
            ]
            for (name, extra) in services {
                let refused = try ServiceProcess(name, environment: extra.merging([
                    "DATA_DIR": root.appendingPathComponent("\(name)-open").path, "HTTP_HOST": "0.0.0.0", "ADMIN_TOKEN": "",
                ]) { $1 })
                #expect(try await refused.waitForExit() == 1, "\(name): \(refused.text)")
                let lines = refused.text.split(separator: "\n")
                #expect(lines.count == 1, "\(name): \(refused.text)")
                #expect(refused.text.hasPrefix(#"\#(name): invalid configuration: ADMIN_TOKEN="": expected a token, because HTTP_HOST="0.0.0.0" is not a loopback address"#), "\(refused.text)")
            }

            // Off loopback with the token: the routes ask for it.
            let guarded = try ServiceProcess("api-gateway", environment: [
                "DATA_DIR": root.appendingPathComponent("guarded").path, "HTTP_HOST": "0.0.0.0", "ADMIN_TOKEN": "s3cret", "SHUTDOWN_DELAY_SECONDS": "0",
            ])
            let guardedURL = "http://127.0.0.1:\(try await guarded.port())/traces/recent"
            #expect(try await get(client, guardedURL).status == .unauthorized)
            #expect(try await get(client, guardedURL, headers: ["Authorization": "Bearer s3cret"]).status == .ok)
            // On loopback without one: open, as before.
            let local = try ServiceProcess("api-gateway", environment: [
                "DATA_DIR": root.appendingPathComponent("local").path, "ADMIN_TOKEN": "", "SHUTDOWN_DELAY_SECONDS": "0",
            ])
            #expect(try await get(client, "http://127.0.0.1:\(try await local.port())/traces/recent").status == .ok)
            #expect(try await guarded.terminate() == 0)
            #expect(try await local.terminate() == 0)
        }
    }
}
