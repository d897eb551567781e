import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdBcrypt
import NIOPosix
import Prometheus
import TitaniumAuth
import TitaniumHTTP

/// The user routes: register, fetch by id, the token owner's own record, and the internal
/// credential and token checks auth-service uses.
struct UserController: Sendable {
    let store: any UserStore
    let cache: UserCache
    let bcryptCost: Int
    let registrations: Counter
    /// A hash of a random string nobody knows, verified for unknown users.
    let decoyHash: String
    let verifier: TokenVerifier

    func register(on router: Router<TitaniumRequestContext>) {
        router.post("/api/users", use: self.create)
        router.get("/api/users/me", use: self.me)
        router.patch("/api/users/me", use: self.updateMe)
        router.get("/api/users/{id}", use: self.show)
        router.post("/internal/users/authenticate", use: self.authenticate)
        router.get("/internal/users/{id}/password-version", use: self.passwordVersion)
    }

    struct RegisterRequest: Decodable {
        var username: String?
        var email: String?
        var password: String?
    }

    @Sendable func create(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        let body = try await request.decodeJSON(as: RegisterRequest.self, context: context)
        let problems = UserValidation.problems(username: body.username, email: body.email, password: body.password)
        guard problems.isEmpty, let username = body.username, let email = body.email, let password = body.password else {
            throw APIError.validation(problems)
        }
        let cost = UInt8(self.bcryptCost)
        let hash = try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
        do {
            let user = try await self.store.create(username: username, email: email, passwordHash: hash)
            self.registrations.increment()
            return try JSONResponse(PublicUser(user, showingEmail: true)).response(status: .created)
        } catch UserStoreError.taken(let field) {
            throw APIError(.conflict, message: "\(field) is already taken", fields: [field: "is already taken"])
        }
    }

    /// Anyone may read a user; its email only its owner: with a valid bearer token whose subject is
    /// this user. Any other caller (no token, someone else's, an invalid one) gets the same JSON
    /// without `email`, not an error.
    @Sendable func show(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        guard let id = context.parameters.get("id").flatMap(Int64.init), id > 0 else {
            throw APIError(.notFound, message: "no such user")
        }
        let isOwner = await self.isOwner(request, context: context, of: id)
        var response = try await self.cachedUser(id: id, showingEmail: isOwner)
        // The answer depends on the token: no shared cache may hand the owner's to someone else.
        response.headers[.vary] = "Authorization"
        return response
    }

    /// The user the bearer token belongs to.
    @Sendable func me(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        let (id, _) = try await self.currentToken(of: request, context: context)
        return try await self.cachedUser(id: id, showingEmail: true)
    }

    /// The user id and password version of the request's bearer token when it is valid and not
    /// retired by a password change since it was issued; 401 otherwise.
    private func currentToken(of request: Request, context: TitaniumRequestContext) async throws -> (userID: Int64, passwordVersion: Int) {
        let claims = try await self.verifier.claims(for: request, context: context)
        guard let id = claims.userID, try await self.store.passwordVersion(id: id) == claims.passwordVersion else {
            throw Self.retiredToken
        }
        return (id, claims.passwordVersion)
    }

    static let retiredToken = APIError(
        .unauthorized, message: "token is no longer valid (the password changed since it was issued); log in again",
        headers: [.wwwAuthenticate: #"Bearer error="invalid_token""#]
    )

    /// Whether the request carries a current token of user `id`.
    private func isOwner(_ request: Request, context: TitaniumRequestContext, of id: Int64) async -> Bool {
        guard request.headers[.authorization] != nil,
            let claims = try? await self.verifier.claims(for: request, context: context), claims.userID == id
        else { return false }
        return (try? await self.store.passwordVersion(id: id)) == claims.passwordVersion
    }

    struct UpdateRequest: Decodable {
        var email: String?
        var password: String?
        var current_password: String?
    }

    /// Changes the token owner's email and/or password; the cached copy is dropped. A new password
    /// needs the current one (403 when wrong: the token is fine, the proof is not, and a client
    /// treating 401 as "log in again" must not) and retires every token issued before it, the one
    /// of this request included.
    @Sendable func updateMe(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        let (id, passwordVersion) = try await self.currentToken(of: request, context: context)
        let body = try await request.decodeJSON(as: UpdateRequest.self, context: context)
        var problems: [String: String] = [:]
        if let email = body.email { problems["email"] = UserValidation.emailProblem(email) }
        if let password = body.password {
            problems["password"] = UserValidation.passwordProblem(password)
            if body.current_password?.isEmpty ?? true { problems["current_password"] = "is required to change the password" }
        }
        if body.email == nil && body.password == nil { problems["email"] = "email or password is required" }
        guard problems.isEmpty else { throw APIError.validation(problems) }
        var hash: String?
        if let password = body.password, let current = body.current_password {
            guard let stored = try await self.store.passwordHash(id: id) else { throw Self.retiredToken }
            let cost = UInt8(self.bcryptCost)
            hash = try await NIOThreadPool.singleton.runIfActive { () -> String? in
                Bcrypt.verify(current, hash: stored) ? Bcrypt.hash(password, cost: cost) : nil
            }
            guard hash != nil else { throw APIError(.forbidden, message: "current password is wrong") }
        }
        let result: UserUpdateResult
        do {
            result = try await self.store.update(id: id, passwordVersion: passwordVersion, email: body.email, passwordHash: hash)
        } catch UserStoreError.taken(let field) {
            throw APIError(.conflict, message: "\(field) is already taken", fields: [field: "is already taken"])
        }
        await self.cache.invalidate(id: id)
        guard case .updated(let updated) = result else { throw Self.retiredToken }
        return try JSONResponse(PublicUser(updated, showingEmail: true)).response(status: .ok)
    }

    private func cachedUser(id: Int64, showingEmail: Bool) async throws -> Response {
        let (user, cacheResult) = try await self.cache.user(id: id) { try await self.store.user(id: id) }
        guard let user else { throw APIError(.notFound, message: "no such user") }
        var response = try JSONResponse(PublicUser(user, showingEmail: showingEmail)).response(status: .ok)
        response.headers[.xCache] = cacheResult
        return response
    }

    /// 200 `{id, username, password_version}` or 401 with one message whether or not the user
    /// exists; an unknown user still costs one bcrypt verification, so timing does not tell them apart.
    @Sendable func authenticate(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        let body = try await request.decodeJSON(as: UserServiceClient.LoginCredentials.self, context: context)
        guard let username = body.username, let password = body.password, !username.isEmpty, !password.isEmpty else {
            throw APIError.validation(
                [body.username?.isEmpty == false ? nil : ("username", "is required"), body.password?.isEmpty == false ? nil : ("password", "is required")]
                    .compactMap { $0 }.reduce(into: [:]) { $0[$1.0] = $1.1 }
            )
        }
        // No username or password has a NUL, and SQLite and bcrypt read only what comes before one:
        // `alice\0x` would log in as alice (each spelling a new key for the gateway's per-username
        // limit), and so would her password with anything after a NUL.
        let found = username.utf8.contains(0) ? nil : try await self.store.credentials(username: username)
        let hash = found?.passwordHash ?? self.decoyHash
        let verified = try await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }
        let matches = verified && !password.utf8.contains(0)
        guard matches, let found else {
            throw APIError(.unauthorized, message: "invalid username or password")
        }
        return try JSONResponse(
            UserServiceClient.AuthenticatedUser(id: found.user.id, username: found.user.username, password_version: found.passwordVersion)
        ).response(status: .ok)
    }

    /// 200 `{id, password_version}` or 404: auth-service's `/api/auth/verify` asks whether a token
    /// was retired by a password change.
    @Sendable func passwordVersion(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        guard let id = context.parameters.get("id").flatMap(Int64.init), let version = try await self.store.passwordVersion(id: id) else {
            throw APIError(.notFound, message: "no such user")
        }
        return try JSONResponse(UserServiceClient.PasswordVersion(id: id, password_version: version)).response(status: .ok)
    }
}

extension HTTPField.Name {
    /// `hit`, `miss` or `error` (Redis unavailable): how a cached read was served.
    static let xCache = HTTPField.Name("X-Cache")!
}
