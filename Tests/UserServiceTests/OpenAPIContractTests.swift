import Foundation
import Hummingbird
import HummingbirdTesting
import JWTKit
import TestSupport
import Testing
import TitaniumAuth
import TitaniumHTTP
import TitaniumRedis

@testable import UserService

/// user-service's public routes are exactly the operations openapi/titanium.yaml documents
/// under `/api/users` (the gateway's prefix for it), both ways; its `/internal/*` routes are not
/// public and not documented.
@Suite struct OpenAPIContractTests {
    @Test func everyUserRouteIsDocumentedAndEveryDocumentedOneExists() async throws {
        let directory = try temporaryDirectory("user-service-contract")
        defer { try? FileManager.default.removeItem(at: directory) }
        let kit = try makeTestKit(service: "user-service")
        let store = try SQLiteUserStore(path: directory.appendingPathComponent("users.db").path)
        let redis = RedisClient(configuration: RedisConfiguration(port: try Ports.refused()))
        let cache = UserCache(redis: redis, ttlSeconds: 60, registry: kit.registry, logger: kit.logger)
        let issuer = try await TokenIssuer(key: ES256PrivateKey(), policy: TokenPolicy(), lifetime: .seconds(60))
        let router = try await buildRouter(kit: kit, store: store, cache: cache, verifier: .local(issuer), bcryptCost: 4)
        let routes = OpenAPIContract.apiRoutes(of: router)
        let documented = try OpenAPIContract.documentedOperations(under: ["/api/users"])
        try await kit.makeApplication(router: router, services: [redis]).test(.router) { _ in }

        #expect(!routes.isEmpty)
        #expect(routes.subtracting(documented).isEmpty, "user-service routes missing from openapi/titanium.yaml: \(routes.subtracting(documented).sorted())")
        #expect(documented.subtracting(routes).isEmpty, "documented in openapi/titanium.yaml, not routed by user-service: \(documented.subtracting(routes).sorted())")
        #expect(try OpenAPIContract.documentedOperations(under: ["/internal"]).isEmpty)
    }
}
