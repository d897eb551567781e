import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import TestSupport
import Testing
import TitaniumHTTP
import TitaniumRedis

@testable import APIGateway

/// The gateway serves openapi/titanium.json as built into it, and every documented path is one
/// the gateway routes itself or forwards by prefix. The services' OpenAPIContractTests compare
/// their own prefixes, both ways.
@Suite struct OpenAPIContractTests {
    /// The `/api` prefixes of the route table, each with its service's contract test.
    static let checkedPrefixes: Set<String> = ["/api/auth", "/api/users", "/api/posts"]

    /// Runs `test` with the gateway router's public routes (read before `makeApplication` adds
    /// the operational ones) and a client of it; the services behind it refuse.
    static func withGateway(_ test: @escaping @Sendable (Set<String>, any TestClientProtocol) async throws -> Void) async throws {
        let refused = "http://127.0.0.1:\(try Ports.refused())"
        let settings = Settings.fromEnvironment([
            "AUTH_SERVICE_URL": refused, "USER_SERVICE_URL": refused, "BLOG_SERVICE_URL": refused,
            "REDIS_URL": "redis://127.0.0.1:\(try Ports.refused())",
        ])
        let configuration = try GatewayConfiguration(settings: settings)
        let kit = try makeTestKit(service: "api-gateway")
        let client = kit.makeHTTPClient()
        let redis = RedisClient(configuration: configuration.redis)
        let router = buildRouter(kit: kit, configuration: configuration, redis: redis, client: client)
        let routes = OpenAPIContract.apiRoutes(of: router)
        try await kit.makeApplication(router: router, services: [redis, client]).test(.router) { testClient in
            try await test(routes, testClient)
        }
    }

    @Test func theGatewaysOwnRoutesAreDocumentedAndEveryDocumentedPathIsRouted() async throws {
        let prefixes = GatewayConfiguration.routes.map(\.prefix)
        #expect(
            Set(prefixes.filter { $0.hasPrefix("/api/") }) == Self.checkedPrefixes,
            "a new /api prefix needs an OpenAPIContractTests in its service's test target, and a place in checkedPrefixes"
        )
        let forwarded: @Sendable (String) -> Bool = { operation in prefixes.contains { OpenAPIContract.path(of: operation, isUnder: $0) } }
        let documented = try OpenAPIContract.documentedOperations().filter { !forwarded($0) }
        try await Self.withGateway { routes, _ in
            let own = routes.filter { !forwarded($0) }
            #expect(own.contains("GET /api/openapi.json"))
            #expect(own.subtracting(documented).isEmpty, "gateway routes missing from openapi/titanium.yaml: \(own.subtracting(documented).sorted())")
            #expect(
                documented.subtracting(own).isEmpty,
                "documented in openapi/titanium.yaml, neither routed by the gateway nor under a prefix it forwards: \(documented.subtracting(own).sorted())"
            )
        }
    }

    @Test func theDocumentIsServedAsBuiltWithAnETag() async throws {
        let file = try String(contentsOf: OpenAPIContract.documentURL, encoding: .utf8)
        try await Self.withGateway { _, client in
            let answer = try await client.execute(uri: "/api/openapi.json", method: .get)
            #expect(answer.status == .ok)
            #expect(answer.headers[.contentType] == "application/json; charset=utf-8")
            #expect(answer.headers[.cacheControl] == "public, max-age=300")
            // The generated Swift file holds what openapi/titanium.json holds (check_consistency.py
            // checks both against the YAML).
            let servedAsBuilt = String(buffer: answer.body) + "\n" == file
            #expect(servedAsBuilt, "the gateway serves another document than openapi/titanium.json")
            let document = try answer.jsonObject
            #expect(document["openapi"] as? String == "3.1.0")
            let etag = try #require(answer.headers[.eTag])
            #expect(etag.hasPrefix("\"sha256-") && etag.hasSuffix("\""))

            for ifNoneMatch in [etag, "W/\(etag)", "\"other\", \(etag)", "*"] {
                let again = try await client.execute(uri: "/api/openapi.json", method: .get, headers: [.ifNoneMatch: ifNoneMatch])
                #expect(again.status == .notModified, "\(ifNoneMatch)")
                #expect(again.body.readableBytes == 0)
                #expect(again.headers[.eTag] == etag)
            }
            let stale = try await client.execute(uri: "/api/openapi.json", method: .get, headers: [.ifNoneMatch: "\"sha256-0\""])
            #expect(stale.status == .ok)
            let head = try await client.execute(uri: "/api/openapi.json", method: .head)
            #expect(head.status == .ok)
        }
    }
}
