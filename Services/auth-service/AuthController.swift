import AsyncHTTPClient
import Foundation
import Hummingbird
import JWTKit
import NIOHTTP1
import NIOCore
import Prometheus
import TitaniumAuth
import TitaniumHTTP

/// Login, token verification and the public key set.
struct AuthController: Sendable {
    let issuer: TokenIssuer
    let verifier: TokenVerifier
    let users: UserServiceClient
    let passwords: PasswordVersions
    let logins: (success: Counter, failure: Counter)

    func register(on router: Router<TitaniumRequestContext>) {
        router.post("/api/auth/login", use: self.login)
        router.get("/api/auth/verify", use: self.verify)
        router.get("/.well-known/jwks.json", use: self.jwks)
    }

    struct LoginRequest: Codable {
        var username: String?
        var password: String?
    }

    struct TokenResponse: Encodable, Sendable {
        var access_token: String
        var token_type = "Bearer"
        var expires_in: Int
    }

    @Sendable func login(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        let body = try await request.decodeJSON(as: LoginRequest.self, context: context)
        var problems: [String: String] = [:]
        if body.username?.isEmpty ?? true { problems["username"] = "is required" }
        if body.password?.isEmpty ?? true { problems["password"] = "is required" }
        guard problems.isEmpty else { throw APIError.validation(problems) }

        let credentials = UserServiceClient.LoginCredentials(username: body.username, password: body.password)
        guard let user = try await self.users.authenticate(credentials) else {
            self.logins.failure.increment()
            throw APIError(.unauthorized, message: "invalid username or password")
        }
        let (token, _) = try await self.issuer.issue(userID: user.id, username: user.username, passwordVersion: user.password_version ?? 0)
        self.logins.success.increment()
        return try JSONResponse(
            TokenResponse(access_token: token, expires_in: Int(self.issuer.lifetime.components.seconds))
        ).response(status: .ok)
    }

    struct VerifyResponse: Encodable, Sendable {
        var user_id: Int64
        var username: String
        var expires_at: String
    }

    /// 200 for a token that is valid and not retired by a password change since it was issued,
    /// which only user-service knows: it is asked every time (1 s at most; 502 or 504 when it
    /// cannot say, rather than vouching for a token that may be retired).
    @Sendable func verify(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        let claims = try await self.verifier.claims(for: request, context: context)
        try await self.passwords.requireCurrent(claims)
        guard let userID = claims.userID else { throw APIError(.unauthorized, message: "token names no user") }
        return try JSONResponse(
            VerifyResponse(
                user_id: userID,
                username: claims.username,
                expires_at: ISO8601DateFormatter().string(from: claims.exp.value)
            )
        ).response(status: .ok)
    }

    @Sendable func jwks(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        var response = try JSONResponse(self.issuer.jwks).response(status: .ok)
        response.headers[.cacheControl] = "public, max-age=300"
        return response
    }
}
