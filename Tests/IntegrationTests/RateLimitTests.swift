import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// api-gateway rate limits against a real redis-server (upstreams refuse, so a passing request
/// is a 502 and a limited one a 429).
@Suite(.serialized) struct RateLimitTests {
    @Test func loginIsLimitedPerUsernameAndPerAddressSpoofingDoesNotHelpAndRedisDownFailsOpen() async throws {
        try await withRedisServer { redis in
            let refused = "http://127.0.0.1:\(try Ports.refused())"
            let upstreams = [
                "AUTH_SERVICE_URL": refused, "USER_SERVICE_URL": refused, "BLOG_SERVICE_URL": refused, "REDIS_URL": redis.url,
                "RATE_LIMIT_LOGIN_IP": "7/60",
            ]
            let direct = try ServiceProcess("api-gateway", environment: upstreams)
            let behindProxy = try ServiceProcess("api-gateway", environment: upstreams.merging(["TRUSTED_PROXIES": "127.0.0.1/32"]) { $1 })
            let directURL = "http://127.0.0.1:\(try await direct.port())"
            let proxiedURL = "http://127.0.0.1:\(try await behindProxy.port())"
            func login(_ username: String) -> String { #"{"username":"\#(username)","password":"p"}"# }
            try await withHTTPClient { client in
                // Every group's series is there from the start, at 0.
                let before = try await get(client, "\(directURL)/metrics").body
                for group in ["login", "login-ip", "register", "post-writes"] {
                    #expect(before.contains(#"rate_limit_rejections_total{route="\#(group)"} 0"#), "\(group)")
                }
                for attempt in 1...5 {
                    let response = try await post(client, "\(directURL)/api/auth/login", body: login("u"))
                    #expect(response.status == .badGateway, "attempt \(attempt)")
                }
                let sixth = try await post(client, "\(directURL)/api/auth/login", body: login("U "))
                #expect(sixth.status == .tooManyRequests, "the username is compared trimmed and lower-cased")
                #expect((try json(sixth.body)["error"] as? [String: Any])?["code"] as? String == "rate_limited")
                let retryAfter = try #require(sixth.headers["Retry-After"].first.flatMap(Int.init))
                #expect(retryAfter >= 1 && retryAfter <= 60)
                #expect(sixth.headers["RateLimit-Limit"].first == "5")
                #expect(sixth.headers["RateLimit-Remaining"].first == "0")
                // Per address: 7 logins from one client, whatever the usernames; its own
                // X-Forwarded-For does not give an untrusted peer a fresh bucket.
                #expect(try await post(client, "\(directURL)/api/auth/login", body: login("a1")).status == .badGateway)
                #expect(try await post(client, "\(directURL)/api/auth/login", body: login("a2")).status == .tooManyRequests)
                let spoofed = try await post(client, "\(directURL)/api/auth/login", body: login("a3"), headers: ["X-Forwarded-For": "203.0.113.9"])
                #expect(spoofed.status == .tooManyRequests)
                // Other routes are not limited.
                #expect(try await get(client, "\(directURL)/api/posts").status == .badGateway)
                let counted = try await get(client, "\(directURL)/metrics").body
                #expect(counted.contains(#"rate_limit_rejections_total{route="login"} 1"#))
                #expect(counted.contains(#"rate_limit_rejections_total{route="login-ip"} 2"#))

                // Behind a trusted proxy the forwarded client address is the address key, and the
                // 6th wrong login for one username is refused whichever address it comes from.
                for attempt in 1...5 {
                    let from = attempt <= 3 ? "198.51.100.1" : "198.51.100.2"
                    _ = try await post(client, "\(proxiedURL)/api/auth/login", body: login("v"), headers: ["X-Forwarded-For": from])
                }
                #expect(try await post(client, "\(proxiedURL)/api/auth/login", body: login("v"), headers: ["X-Forwarded-For": "198.51.100.2"]).status == .tooManyRequests)
                #expect(try await post(client, "\(proxiedURL)/api/auth/login", body: login("w"), headers: ["X-Forwarded-For": "198.51.100.2"]).status == .badGateway)

                // Redis gone: requests pass, and the failure is counted.
                await redis.stop()
                let passed = try await post(client, "\(directURL)/api/auth/login", body: login("u"))
                #expect(passed.status == .badGateway)
                let metrics = try await get(client, "\(directURL)/metrics").body
                #expect(metrics.contains("rate_limit_errors_total 2"), "one per rule the login matches")
                #expect(metrics.contains("rate_limit_errors_total 2"), "\(metrics.split(separator: "\n").filter { $0.contains("rate_limit") })")
            }
            #expect(try await direct.terminate() == 0)
            #expect(try await behindProxy.terminate() == 0)
        }
    }
}
