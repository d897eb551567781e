import Foundation
import Hummingbird
import HummingbirdTesting
import JWTKit
import TestSupport
import Testing
import TitaniumAuth
import TitaniumHTTP

@testable import BlogService

/// blog-service's public routes are exactly the operations openapi/titanium.yaml documents
/// under `/api/posts` (the gateway's prefix for it), both ways.
@Suite struct OpenAPIContractTests {
    @Test func everyPostRouteIsDocumentedAndEveryDocumentedOneExists() async throws {
        let directory = try temporaryDirectory("blog-service-contract")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("blog.db").path
        let kit = try makeTestKit(service: "blog-service")
        let client = kit.makeHTTPClient()
        let issuer = try await TokenIssuer(key: ES256PrivateKey(), policy: TokenPolicy(), lifetime: .seconds(60))
        let router = buildRouter(
            kit: kit, store: try SQLitePostStore(path: path), pages: PageCache(), verifier: .local(issuer),
            passwords: PasswordVersions(client: client, userServiceURL: "http://127.0.0.1:1")
        )
        let routes = OpenAPIContract.apiRoutes(of: router)
        let documented = try OpenAPIContract.documentedOperations(under: ["/api/posts"])
        // The client is shut down with the application.
        try await kit.makeApplication(router: router, services: [client]).test(.router) { _ in }

        #expect(!routes.isEmpty)
        #expect(routes.subtracting(documented).isEmpty, "blog-service routes missing from openapi/titanium.yaml: \(routes.subtracting(documented).sorted())")
        #expect(documented.subtracting(routes).isEmpty, "documented in openapi/titanium.yaml, not routed by blog-service: \(documented.subtracting(routes).sorted())")
    }
}
