import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import TestSupport
import Testing
import TitaniumHTTP
import TitaniumRedis

@testable import APIGateway

/// The gateway's router in this process: the routes it proxies through ``ReverseProxy`` and the
/// rate limiter in front of them, with Redis down (requests pass: fail-open).
@Suite struct GatewayRouterTests {
    static func withGateway(
        _ environment: [String: String], _ test: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let refused = "http://127.0.0.1:\(try Ports.refused())"
        let settings = Settings.fromEnvironment(
            ["AUTH_SERVICE_URL": refused, "USER_SERVICE_URL": refused, "BLOG_SERVICE_URL": refused, "REDIS_URL": "redis://127.0.0.1:\(try Ports.refused())"]
                .merging(environment) { $1 }
        )
        let configuration = try GatewayConfiguration(settings: settings)
        let kit = try makeTestKit(service: "api-gateway")
        let client = kit.makeHTTPClient()
        let redis = RedisClient(configuration: configuration.redis)
        let router = buildRouter(kit: kit, configuration: configuration, redis: redis, client: client)
        try await kit.makeApplication(router: router, services: [redis, client]).test(.router, test)
    }

    /// blog-service's stand-in: every path answers with itself and the forwarded protocol.
    static var blogService: Router<BasicRequestContext> {
        let router = Router()
        for path: RouterPath in ["/api/posts", "/api/posts/**", "/blog/**"] {
            router.get(path) { request, _ -> Response in
                let proto = HTTPField.Name("X-Forwarded-Proto").flatMap { request.headers[$0] } ?? "-"
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "blog \(request.uri.path) \(proto)")))
            }
        }
        return router
    }

    @Test func eachPrefixIsProxiedToItsServiceAndNothingElse() async throws {
        try await withServer(Self.blogService) { port in
            try await Self.withGateway(["BLOG_SERVICE_URL": "http://127.0.0.1:\(port)"]) { client in
                for path in ["/api/posts", "/api/posts/3", "/blog/first-post"] {
                    let answer = try await client.execute(uri: path, method: .get, headers: [.xRequestID: "gw-1"])
                    #expect(answer.status == .ok, "\(path)")
                    #expect(String(buffer: answer.body) == "blog \(path) http", "\(path)")
                    #expect(answer.headers[.xRequestID] == "gw-1")
                }
                // Not a prefix the gateway serves, internal routes included: its own 404.
                for path in ["/api/postsX", "/internal/users/authenticate", "/"] {
                    let answer = try await client.execute(uri: path, method: .get)
                    #expect(answer.status == .notFound, "\(path)")
                    #expect(try answer.apiError().code == "not_found")
                }
                // A service that refuses: 502 naming it.
                let down = try await client.execute(uri: "/api/users/1", method: .get)
                #expect(down.status == .badGateway)
                #expect(try down.apiError().message == "user-service is unreachable")
            }
        }
    }

    @Test func withRedisDownALimitedRoutePassesAndTheFailureIsCounted() async throws {
        try await Self.withGateway([:]) { client in
            let before = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            for group in ["login", "login-ip", "register", "post-writes"] {
                #expect(before.contains(#"rate_limit_rejections_total{route="\#(group)"} 0"#), "\(group)")
            }
            let login = try await client.execute(
                uri: "/api/auth/login", method: .post, headers: .json(), body: ByteBuffer(string: #"{"username":"u","password":"p"}"#)
            )
            // Passed the limiter, then found auth-service refusing.
            #expect(login.status == .badGateway)
            #expect(try login.apiError().code == "bad_gateway")
            let after = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(after.contains("rate_limit_errors_total 2"), "one per rule the login matches")
        }
    }
}
