import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// api-gateway as a process in front of the three data services, and in front of upstreams
/// that hang or refuse.
@Suite(.serialized) struct GatewayTests {
    @Test func routesTheAPIAndKeepsTraceAndRequestID() async throws {
        let dataDir = try temporaryDirectory("titanium-gateway")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let authPort = try Ports.free()
        let jwks = "http://127.0.0.1:\(authPort)/.well-known/jwks.json"
        let users = try ServiceProcess("user-service", environment: [
            "DATA_DIR": dataDir.appendingPathComponent("users").path, "BCRYPT_COST": "4", "JWKS_URL": jwks,
            "REDIS_URL": "redis://127.0.0.1:\(try Ports.refused())",
        ])
        let usersURL = "http://127.0.0.1:\(try await users.port())"
        let auth = try ServiceProcess("auth-service", environment: [
            "DATA_DIR": dataDir.appendingPathComponent("auth").path, "USER_SERVICE_URL": usersURL, "HTTP_PORT": String(authPort),
        ])
        _ = try await auth.port()
        let blog = try ServiceProcess("blog-service", environment: [
            "DATA_DIR": dataDir.appendingPathComponent("blog").path, "JWKS_URL": jwks, "USER_SERVICE_URL": usersURL,
        ])
        let blogURL = "http://127.0.0.1:\(try await blog.port())"
        let gateway = try ServiceProcess("api-gateway", environment: [
            "AUTH_SERVICE_URL": "http://127.0.0.1:\(authPort)", "USER_SERVICE_URL": usersURL, "BLOG_SERVICE_URL": blogURL,
        ])
        let gatewayURL = "http://127.0.0.1:\(try await gateway.port())"
        // The load balancer in front: the whole chain LB → gateway → service, and static files at `/`.
        let dashboard = dataDir.appendingPathComponent("dashboard")
        try FileManager.default.createDirectory(at: dashboard, withIntermediateDirectories: true)
        try "<!doctype html><title>Titanium</title><h1>dashboard</h1>".write(to: dashboard.appendingPathComponent("index.html"), atomically: true, encoding: .utf8)
        try "console.log('dashboard')".write(to: dashboard.appendingPathComponent("app.js"), atomically: true, encoding: .utf8)
        let balancer = try ServiceProcess("load-balancer", environment: ["GATEWAY_URLS": gatewayURL, "DASHBOARD_DIR": dashboard.path])
        let base = "http://127.0.0.1:\(try await balancer.port())"
        try await withHTTPClient { client in
            #expect(try await post(client, "\(base)/api/users", body: #"{"username":"gina","email":"gina@example.com","password":"gateway pass"}"#).status == .created)
            let login = try await post(client, "\(base)/api/auth/login", body: #"{"username":"gina","password":"gateway pass"}"#)
            let token = try #require(try json(login.body)["access_token"] as? String)
            let created = try await post(client, "\(base)/api/posts", body: #"{"title":"via gateway","body":"hello"}"#, headers: ["Authorization": "Bearer \(token)"])
            #expect(created.status == .created, "\(created.body)")
            // A request with a body on a route without a rate limit: streamed by the gateway's forwarder.
            var patch = HTTPClientRequest(url: "\(base)/api/users/me")
            patch.method = .PATCH
            patch.headers.add(name: "Authorization", value: "Bearer \(token)")
            patch.headers.add(name: "Content-Type", value: "application/json")
            patch.body = .bytes(ByteBuffer(string: #"{"email":"gina@new.example"}"#))
            let patched = try await client.execute(patch, timeout: .seconds(10))
            let patchedBody = String(buffer: try await patched.body.collect(upTo: 1 << 20))
            #expect(patched.status == .ok, "\(patchedBody)")
            #expect(try json(patchedBody)["email"] as? String == "gina@new.example")
            #expect(try await post(client, "\(base)/internal/users/authenticate", body: #"{"username":"gina","password":"gateway pass"}"#).status == .notFound)
            #expect(try await get(client, "\(base)/nowhere").status == .notFound)
            let index = try await get(client, "\(base)/")
            #expect(index.status == .ok)
            #expect(index.headers["Content-Type"].first?.hasPrefix("text/html") == true)
            #expect(index.body.contains("<h1>dashboard</h1>"))
            #expect(try await get(client, "\(base)/app.js").body == "console.log('dashboard')")
            #expect((try json(try await get(client, "\(base)/missing.js").body)["error"] as? [String: Any])?["code"] as? String == "not_found")

            let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
            let listed = try await get(client, "\(base)/api/posts?limit=5", headers: [
                "traceparent": "00-\(traceID)-00f067aa0ba902b7-01", "X-Request-ID": "gw-it-1",
            ])
            #expect(listed.status == .ok)
            #expect(try json(listed.body)["total"] as? Int == 1)
            #expect(listed.headers["X-Request-ID"].first == "gw-it-1")
            // The same trace and request id in the gateway's and blog-service's access lines; the
            // blog span is a child of the gateway's outbound call.
            let gatewayLine = try await eventually { gateway.logObjects.first { $0["request_id"] as? String == "gw-it-1" && $0["message"] as? String == "request" } }
            let blogLine = try await eventually { blog.logObjects.first { $0["request_id"] as? String == "gw-it-1" && $0["message"] as? String == "request" } }
            let balancerLine = try await eventually { balancer.logObjects.first { $0["request_id"] as? String == "gw-it-1" && $0["message"] as? String == "request" } }
            #expect(balancerLine["trace_id"] as? String == traceID)
            #expect(gatewayLine["trace_id"] as? String == traceID)
            #expect(blogLine["trace_id"] as? String == traceID)
            #expect(gatewayLine["route"] as? String == "/api/posts")
            #expect(blogLine["route"] as? String == "/api/posts")

            // Body-less DELETEs (no Content-Length, as curl sends them) through both proxies
            // while GETs share the pooled connections: nothing is streamed for an empty body, so
            // the gateway never reads a body after its response has finished (it used to crash).
            var doomed: [Int] = []
            for index in 0..<24 {
                let made = try await post(client, "\(base)/api/posts", body: #"{"title":"doomed \#(index)","body":"x"}"#, headers: ["Authorization": "Bearer \(token)"])
                doomed.append(try #require(try json(made.body)["id"] as? Int))
            }
            let ids = doomed
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        for id in ids[(worker * 6)..<(worker * 6 + 6)] {
                            // curl, because it sends a body-less DELETE without Content-Length.
                            let status = try curlStatus("-X", "DELETE", "-H", "Authorization: Bearer \(token)", "\(base)/api/posts/\(id)")
                            #expect(status == "204")
                            #expect(try await get(client, "\(base)/api/posts?limit=1").status == .ok)
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(!gateway.text.contains("Fatal error"))
        }
        for process in [balancer, gateway, blog, auth, users] { #expect(try await process.terminate() == 0) }
    }

    @Test func hangingUpstreamIs504AndRefusedIs502WithinTheTimeout() async throws {
        let silent = try SilentServer()
        let refused = try Ports.refused()
        let gateway = try ServiceProcess("api-gateway", environment: [
            "AUTH_SERVICE_URL": "http://127.0.0.1:\(silent.port)", "USER_SERVICE_URL": "http://127.0.0.1:\(refused)",
            "BLOG_SERVICE_URL": "http://127.0.0.1:\(refused)",
        ])
        let base = "http://127.0.0.1:\(try await gateway.port())"
        try await withHTTPClient { client in
            let start = ContinuousClock.now
            let hung = try await get(client, "\(base)/api/auth/verify")
            let hungTime = start.duration(to: .now)
            #expect(hung.status == .gatewayTimeout)
            #expect((try json(hung.body)["error"] as? [String: Any])?["code"] as? String == "gateway_timeout")
            #expect(hungTime < .milliseconds(2200), "504 after \(hungTime)")
            #expect(hungTime >= .milliseconds(1900), "504 after \(hungTime)")

            let refusedStart = ContinuousClock.now
            let down = try await get(client, "\(base)/api/users/1")
            #expect(down.status == .badGateway)
            #expect((try json(down.body)["error"] as? [String: Any])?["code"] as? String == "bad_gateway")
            #expect(refusedStart.duration(to: .now) < .milliseconds(1100))
        }
        _ = silent
        #expect(try await gateway.terminate() == 0)
    }
}

extension GatewayTests {
    /// A service with two URLs, one refusing: a GET that finds the refusing one is retried on the
    /// other by the gateway's forwarder, so every answer comes from the live upstream. A service
    /// with an https:// URL does not stop the gateway from starting: it is proxied by the router.
    @Test func aRefusedReplicaIsRetriedAndHTTPSUpstreamsStayWithTheRouter() async throws {
        try await LoadBalancerUpstreamTests.withUpstream { port in
            let refused = try Ports.refused()
            let gateway = try ServiceProcess("api-gateway", environment: [
                "BLOG_SERVICE_URL": "http://127.0.0.1:\(refused),http://127.0.0.1:\(port)",
                "USER_SERVICE_URL": "https://127.0.0.1:\(refused)", "AUTH_SERVICE_URL": "http://127.0.0.1:\(refused)",
                "REDIS_URL": "redis://127.0.0.1:\(refused)",
            ])
            let base = "http://127.0.0.1:\(try await gateway.port())"
            try await withHTTPClient { client in
                // The stand-in upstream has no /blog/ page: its own 404, never the gateway's 502.
                for _ in 0..<6 {
                    let answer = try await get(client, "\(base)/blog/missing")
                    #expect(answer.status == .notFound, "\(answer.body)")
                    #expect(answer.headers["Content-Length"].first == "0", "not the upstream's answer: \(answer.body)")
                }
                let tls = try await get(client, "\(base)/api/users/1")
                #expect(tls.status == .badGateway)
                #expect((try json(tls.body)["error"] as? [String: Any])?["message"] as? String == "user-service is unreachable")
            }
            #expect(try await gateway.terminate() == 0)
        }
    }
}

/// The status code curl reports for one request.
func curlStatus(_ arguments: String...) throws -> String {
    try ChildProcess.run(["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5"] + arguments).output
}
