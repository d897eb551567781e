import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// Faults set through the load balancer's `/admin/faults/{service}` on real processes: refused
/// without the token or with a bad field, applied to every instance, shown in `/stats`, met by
/// requests on both of the gateway's paths, and removed.
@Suite(.serialized) struct FaultInjectionTests {
    static let token = "integration-admin"

    @Test func faultsThroughTheLoadBalancer() async throws {
        let dataDir = try temporaryDirectory("titanium-faults")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        try await withRedisServer { redis in
            let admin = ["ADMIN_TOKEN": Self.token]
            let authPort = try Ports.free()
            let jwks = "http://127.0.0.1:\(authPort)/.well-known/jwks.json"
            let users = try ServiceProcess("user-service", environment: admin.merging([
                "DATA_DIR": dataDir.appendingPathComponent("users").path, "REDIS_URL": redis.url, "BCRYPT_COST": "4", "JWKS_URL": jwks,
            ]) { $1 })
            let usersURL = "http://127.0.0.1:\(try await users.port())"
            let blog = try ServiceProcess("blog-service", environment: admin.merging([
                "DATA_DIR": dataDir.appendingPathComponent("blog").path, "JWKS_URL": jwks, "USER_SERVICE_URL": usersURL,
            ]) { $1 })
            let blogURL = "http://127.0.0.1:\(try await blog.port())"
            let gateway = try ServiceProcess("api-gateway", environment: admin.merging([
                "DATA_DIR": dataDir.appendingPathComponent("gateway").path, "REDIS_URL": redis.url,
                "AUTH_SERVICE_URL": "http://127.0.0.1:\(authPort)", "USER_SERVICE_URL": usersURL, "BLOG_SERVICE_URL": blogURL,
            ]) { $1 })
            let gatewayURL = "http://127.0.0.1:\(try await gateway.port())"
            let balancer = try ServiceProcess("load-balancer", environment: admin.merging([
                "DATA_DIR": dataDir.appendingPathComponent("lb").path, "GATEWAY_URLS": gatewayURL,
                "STATS_TARGETS": "api-gateway=\(gatewayURL),user-service=\(usersURL),blog-service=\(blogURL)",
            ]) { $1 })
            let base = "http://127.0.0.1:\(try await balancer.port())"
            try await withHTTPClient { client in
                func fault(_ method: HTTPMethod, _ service: String, _ body: String? = nil, token: String? = Self.token) async throws -> Fetched {
                    try await send(client, method, "\(base)/admin/faults/\(service)", token: token, body: body)
                }
                func serviceStats(_ name: String) async throws -> [String: Any] {
                    try await Task.sleep(for: .milliseconds(1100))  // past the 1 s reuse of the last answer
                    let services = try #require(try json(try await get(client, "\(base)/stats").body)["services"] as? [[String: Any]])
                    return try #require(services.first { $0["name"] as? String == name }?["stats"] as? [String: Any])
                }

                // Refused: no token, an unknown service, a bad field (the instance's 422, naming it).
                #expect(try await fault(.PUT, "blog-service", #"{"latency_ms": 300}"#, token: nil).status == .unauthorized)
                #expect(try await fault(.PUT, "blog-service", #"{"latency_ms": 300}"#, token: "wrong").status == .unauthorized)
                #expect(try await fault(.PUT, "no-such-service", #"{"latency_ms": 300}"#).status == .notFound)
                let refused = try await fault(.PUT, "blog-service", #"{"latency_ms": 300, "latency": 1}"#)
                #expect(refused.status == .unprocessableEntity)
                #expect(((try json(refused.body)["error"] as? [String: Any])?["fields"] as? [String: String])?.keys.sorted() == ["latency"])
                // The load balancer does not take a fault itself.
                #expect(try await send(client, .PUT, "\(base)/admin/faults", token: Self.token, body: #"{"latency_ms": 300}"#).status == .notFound)

                // Latency on blog-service's posts: set on its one instance, met through both hops.
                let applied = try await fault(.PUT, "blog-service", #"{"latency_ms": 300, "routes": ["/api/posts*"], "duration_s": 60}"#)
                #expect(applied.status == .ok, "\(applied.body)")
                let instances = try #require(try json(applied.body)["instances"] as? [[String: Any]])
                #expect(instances.count == 1)
                #expect(instances.first?["url"] as? String == blogURL)
                #expect((instances.first?["fault"] as? [String: Any])?["latency_ms"] as? Int == 300)
                let start = ContinuousClock.now
                #expect(try await get(client, "\(base)/api/posts").status == .ok)
                #expect(start.duration(to: .now) >= .milliseconds(300))
                #expect((try await serviceStats("blog-service")["faults"] as? [String: Any])?["kinds"] as? [String] == ["latency"])
                let shown = try await fault(.GET, "blog-service")
                #expect(shown.status == .ok)
                #expect(shown.body.contains(#""latency_ms":300"#))

                // Errors from the gateway: its fast path hands the affected requests to its router.
                #expect(try await fault(.PUT, "api-gateway", #"{"error_rate": 1, "error_status": 503, "routes": ["/api/posts*"]}"#).status == .ok)
                let injected = try await get(client, "\(base)/api/posts")
                #expect(injected.status == .serviceUnavailable)
                #expect((try json(injected.body)["error"] as? [String: Any])?["code"] as? String == "injected_fault")
                #expect(try await get(client, "\(base)/api/users/1").status == .notFound)  // other routes untouched
                #expect(try await fault(.DELETE, "api-gateway").status == .ok)
                #expect(try await get(client, "\(base)/api/posts").status == .ok)

                // A service's own 5xx, relayed by the gateway, is marked so (RFC 9209 received-status): the
                // load balancer blames blog-service for them, not the gateway, which stays in rotation.
                #expect(try await fault(.PUT, "blog-service", #"{"error_rate": 1, "routes": ["/api/posts"]}"#).status == .ok)
                for _ in 0..<12 {
                    let relayed = try await get(client, "\(base)/api/posts")
                    #expect(relayed.status == .serviceUnavailable)
                    #expect(relayed.headers["Proxy-Status"].first == #"titanium; received-status=503; next-hop="blog-service""#)
                }
                try await Task.sleep(for: .milliseconds(1100))
                let backends = try #require(try json(try await get(client, "\(base)/stats").body)["backends"] as? [[String: Any]])
                #expect(backends.first?["ejected"] as? Bool == false, "\(backends)")

                // The cache taken away from user-service: OFFLINE, and reads still answered from SQLite.
                let created = try await post(client, "\(base)/api/users", body: #"{"username":"faulty","email":"faulty@example.com","password":"password-faulty"}"#)
                #expect(created.status == .created, "\(created.body)")
                let id = try #require(try json(created.body)["id"])
                #expect(try await fault(.PUT, "user-service", #"{"dependency": "cache"}"#).status == .ok)
                #expect(((try await serviceStats("user-service")["dependencies"] as? [String: Any])?["cache"] as? [String: Any])?["status"] as? String == "OFFLINE")
                #expect(try await get(client, "\(base)/api/users/\(id)").status == .ok)
                #expect(try await fault(.DELETE, "user-service").status == .ok)
                _ = try await poll(timeout: .seconds(10), interval: .milliseconds(500)) {
                    let cache = (try await serviceStats("user-service")["dependencies"] as? [String: Any])?["cache"] as? [String: Any]
                    return cache?["status"] as? String == "ONLINE" ? true : nil
                }

                let removed = try await fault(.DELETE, "blog-service")
                #expect(removed.status == .ok)
                #expect(try await serviceStats("blog-service")["faults"] == nil)
                let metrics = try await get(client, "\(blogURL)/metrics").body
                #expect(metrics.contains(#"fault_injections_total{kind="latency"} 1"#))
                #expect(metrics.contains(#"fault_injections_total{kind="error"} 1"#))
                #expect(metrics.contains(#"faults_active{kind="latency"} 0.0"#))
                #expect(metrics.contains(#"faults_active{kind="error"} 0.0"#))
            }
            for process in [balancer, gateway, blog, users] { _ = try await process.terminate() }
        }
    }
}
