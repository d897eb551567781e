import Hummingbird
import HummingbirdTesting
import JWTKit
import TestSupport
import Testing
import TitaniumAuth
import TitaniumHTTP

@testable import AuthService

/// auth-service's public routes are exactly the operations openapi/titanium.yaml documents
/// under `/api/auth` (the gateway's prefix for it), both ways.
@Suite struct OpenAPIContractTests {
    @Test func everyAuthRouteIsDocumentedAndEveryDocumentedOneExists() async throws {
        let kit = try makeTestKit(service: "auth-service")
        let client = kit.makeHTTPClient()
        let issuer = try await TokenIssuer(key: ES256PrivateKey(), policy: TokenPolicy(), lifetime: .seconds(60))
        let router = buildRouter(kit: kit, issuer: issuer, verifier: .local(issuer), client: client, userServiceURL: "http://127.0.0.1:1")
        let routes = OpenAPIContract.apiRoutes(of: router)
        let documented = try OpenAPIContract.documentedOperations(under: ["/api/auth"])
        // The client is shut down with the application.
        try await kit.makeApplication(router: router, services: [client]).test(.router) { _ in }

        #expect(!routes.isEmpty)
        #expect(routes.subtracting(documented).isEmpty, "auth-service routes missing from openapi/titanium.yaml: \(routes.subtracting(documented).sorted())")
        #expect(documented.subtracting(routes).isEmpty, "documented in openapi/titanium.yaml, not routed by auth-service: \(documented.subtracting(routes).sorted())")
    }
}
