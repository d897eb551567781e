import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import JWTKit
import NIOCore
import TestSupport
import Testing
import TitaniumAuth
import TitaniumHTTP

@testable import AuthService

/// auth-service's router in this process, in front of a stand-in user-service: tokens it issues
/// verify against the key set it publishes.
@Suite struct AuthControllerTests {
    /// user-service's internal routes for one user, alice (id 7, password "right", changed twice).
    static var userService: Router<BasicRequestContext> {
        let router = Router()
        router.post("/internal/users/authenticate") { request, _ -> Response in
            struct Credentials: Decodable { var username: String?; var password: String? }
            let body = try JSONDecoder().decode(Credentials.self, from: Data(try await request.body.collect(upTo: 1 << 16).readableBytesView))
            switch body.username {
            case "unprocessable": return Response(status: .unprocessableContent)
            case "broken": return Response(status: .internalServerError)
            case "garbled": return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "not json")))
            default: break
            }
            guard body.username == "alice", body.password == "right" else { return Response(status: .unauthorized) }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: #"{"id":7,"username":"alice","password_version":2}"#)))
        }
        router.get("/internal/users/7/password-version") { _, _ in
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: #"{"id":7,"password_version":2}"#)))
        }
        return router
    }

    static func withAuthService(
        userServicePort: Int, _ test: @escaping @Sendable (any TestClientProtocol, TokenIssuer) async throws -> Void
    ) async throws {
        let kit = try makeTestKit(service: "auth-service")
        let client = kit.makeHTTPClient()
        let issuer = try await TokenIssuer(key: ES256PrivateKey(), policy: TokenPolicy(), lifetime: .seconds(900))
        let router = buildRouter(
            kit: kit, issuer: issuer, verifier: .local(issuer), client: client, userServiceURL: "http://127.0.0.1:\(userServicePort)"
        )
        try await kit.makeApplication(router: router, services: [client]).test(.router) { testClient in
            try await test(testClient, issuer)
        }
    }

    static func login(_ client: some TestClientProtocol, _ json: String) async throws -> TestResponse {
        try await client.execute(uri: "/api/auth/login", method: .post, headers: .json(), body: ByteBuffer(string: json))
    }

    struct Token: Decodable {
        var access_token: String
        var token_type: String
        var expires_in: Int
    }

    @Test func aLoginIssuesATokenThatVerifiesAgainstThePublishedKeySet() async throws {
        try await withServer(Self.userService) { port in
            try await Self.withAuthService(userServicePort: port) { client, issuer in
                let login = try await Self.login(client, #"{"username":"alice","password":"right"}"#)
                #expect(login.status == .ok)
                let token = try login.decode(Token.self)
                #expect(token.token_type == "Bearer" && token.expires_in == 900)

                let keys = try await client.execute(uri: "/.well-known/jwks.json", method: .get)
                #expect(keys.status == .ok)
                #expect(keys.headers[.cacheControl] == "public, max-age=300")
                let keySet = String(buffer: keys.body)
                #expect(keySet.contains(issuer.kid))
                // What blog-service and user-service do: verify with the fetched key set only.
                let claims = try await TokenVerifier(policy: TokenPolicy()) { keySet }.verify(token.access_token)
                #expect(claims.userID == 7 && claims.username == "alice" && claims.passwordVersion == 2)

                let verified = try await client.execute(uri: "/api/auth/verify", method: .get, headers: .json(token: token.access_token))
                #expect(verified.status == .ok)
                #expect(try verified.jsonObject["user_id"] as? Int == 7)
                #expect(try verified.jsonObject["username"] as? String == "alice")
                // A token of an older password version is retired.
                let old = try await issuer.issue(userID: 7, username: "alice", passwordVersion: 1).token
                #expect(try await client.execute(uri: "/api/auth/verify", method: .get, headers: .json(token: old)).status == .unauthorized)
                let none = try await client.execute(uri: "/api/auth/verify", method: .get)
                #expect(none.status == .unauthorized)
                #expect(try none.apiError().code == "unauthorized")
            }
        }
    }

    @Test func wrongOrMissingCredentialsAreRefusedAndCounted() async throws {
        try await withServer(Self.userService) { port in
            try await Self.withAuthService(userServicePort: port) { client, _ in
                let wrong = try await Self.login(client, #"{"username":"alice","password":"wrong"}"#)
                let unknown = try await Self.login(client, #"{"username":"mallory","password":"right"}"#)
                #expect(wrong.status == .unauthorized && unknown.status == .unauthorized)
                #expect(try wrong.apiError().message == "invalid username or password")
                #expect(try unknown.apiError().message == "invalid username or password")
                let missing = try await Self.login(client, #"{"username":""}"#)
                #expect(missing.status == .unprocessableContent)
                #expect(try missing.apiError().fields == ["username": "is required", "password": "is required"])
                #expect(try await Self.login(client, "{nope").status == .badRequest)
                _ = try await Self.login(client, #"{"username":"alice","password":"right"}"#)

                let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
                #expect(metrics.contains(#"auth_logins_total{result="success"} 1"#))
                #expect(metrics.contains(#"auth_logins_total{result="failure"} 2"#))
            }
        }
    }

    @Test func anUnreachableUserServiceIsABadGateway() async throws {
        try await Self.withAuthService(userServicePort: try Ports.refused()) { client, _ in
            let login = try await Self.login(client, #"{"username":"alice","password":"right"}"#)
            #expect(login.status == .badGateway)
            #expect(try login.apiError().code == "bad_gateway")
        }
    }

    /// What user-service answers becomes the login's answer: its refusals (401, 422) are a 401;
    /// anything else it says (a 500, an unreadable 200) is a 502, never a token.
    @Test func userServiceAnswersMapToLoginAnswers() async throws {
        try await withServer(Self.userService) { port in
            try await Self.withAuthService(userServicePort: port) { client, _ in
                for (username, status) in [("bob", 401), ("unprocessable", 401), ("broken", 502), ("garbled", 502)] {
                    let login = try await Self.login(client, #"{"username":"\#(username)","password":"x"}"#)
                    #expect(login.status.code == status, "\(username): \(login.status)")
                    #expect(String(buffer: login.body).contains(#""error""#), "\(username): \(String(buffer: login.body))")
                }
            }
        }
    }
}
