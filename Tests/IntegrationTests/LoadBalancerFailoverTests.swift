import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// Two gateway replicas behind the load balancer; one is killed during a load of GETs.
@Suite(.serialized) struct LoadBalancerFailoverTests {
    /// 5,000 requests, so that the 0.1 % bound allows the few requests whose response had started
    /// on the killed replica (those cannot be retried).
    @Test func aKilledReplicaIsEjectedAndAlmostNothingFails() async throws {
        let dataDir = try temporaryDirectory("titanium-failover")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let blog = try ServiceProcess("blog-service", environment: ["DATA_DIR": dataDir.path])
        let blogURL = "http://127.0.0.1:\(try await blog.port())"
        let gateways = try (0..<2).map { _ in
            try ServiceProcess("api-gateway", environment: ["BLOG_SERVICE_URL": blogURL, "RATE_LIMIT_ENABLED": "false", "LOG_LEVEL": "notice"])
        }
        var gatewayURLs: [String] = []
        for gateway in gateways { gatewayURLs.append("http://127.0.0.1:\(try await gateway.port())") }
        let balancer = try ServiceProcess("load-balancer", environment: [
            "GATEWAY_URLS": gatewayURLs.joined(separator: ","), "STATS_TARGETS": "blog-service=\(blogURL)", "LOG_LEVEL": "notice",
        ])
        let base = "http://127.0.0.1:\(try await balancer.port())"
        try await withHTTPClient { client in
            let outcomes = NIOLockedValueBox<(ok: Int, failed: Int, statuses: [Int])>((0, 0, []))
            let total = 5000
            let workers = 8
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<workers {
                    group.addTask { () async -> Void in
                        for index in 0..<(total / workers) {
                            if worker == 0 && index == total / workers / 4 { gateways[1].kill() }
                            let status = (try? await get(client, "\(base)/api/posts?limit=1")).map { Int($0.status.code) } ?? -1
                            outcomes.withLockedValue { value in
                                if status == 200 { value.ok += 1 } else { value.failed += 1; value.statuses.append(status) }
                            }
                        }
                    }
                }
                await group.waitForAll()
            }
            let result = outcomes.withLockedValue { $0 }
            #expect(result.ok + result.failed == total)
            #expect(Double(result.failed) / Double(total) < 0.001, "failed \(result.failed) of \(total): \(result.statuses)")

            try await Task.sleep(for: .milliseconds(1100))
            let stats = try json(try await get(client, "\(base)/stats").body)
            let backends = try #require(stats["backends"] as? [[String: Any]])
            let dead = try #require(backends.first { $0["url"] as? String == gatewayURLs[1] })
            let alive = try #require(backends.first { $0["url"] as? String == gatewayURLs[0] })
            #expect(dead["ejected"] as? Bool == true || dead["healthy"] as? Bool == false, "\(dead)")
            #expect(alive["ejected"] as? Bool == false && alive["healthy"] as? Bool == true, "\(alive)")
        }
        #expect(try await balancer.terminate() == 0)
        _ = try await gateways[0].terminate()
        _ = try await blog.terminate()
    }
}
