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
import TitaniumRedis

@testable import UserService

/// user-service's router in this process: a real SQLite file in a temporary folder, a cache whose
/// Redis refuses (the service fails open), and tokens from a local issuer.
@Suite struct UserControllerTests {
    struct Created: Decodable {
        var id: Int64
        var username: String
        var email: String?
        var created_at: String
    }

    /// Runs `test` against user-service's router and the kit's operational routes.
    static func withUserService(
        _ test: @escaping @Sendable (any TestClientProtocol, SQLiteUserStore, TokenIssuer) async throws -> Void
    ) async throws {
        let directory = try temporaryDirectory("user-service-tests")
        defer { try? FileManager.default.removeItem(at: directory) }
        let kit = try makeTestKit(service: "user-service")
        let store = try SQLiteUserStore(path: directory.appendingPathComponent("users.db").path)
        let redis = RedisClient(configuration: RedisConfiguration(port: try Ports.refused()))
        let cache = UserCache(redis: redis, ttlSeconds: 60, registry: kit.registry, logger: kit.logger)
        let issuer = try await TokenIssuer(key: ES256PrivateKey(), policy: TokenPolicy(), lifetime: .seconds(60))
        let router = try await buildRouter(kit: kit, store: store, cache: cache, verifier: .local(issuer), bcryptCost: 4)
        try await kit.makeApplication(router: router, services: [redis]).test(.router) { client in
            try await test(client, store, issuer)
        }
    }

    static func register(_ client: some TestClientProtocol, _ json: String) async throws -> TestResponse {
        try await client.execute(uri: "/api/users", method: .post, headers: .json(), body: ByteBuffer(string: json))
    }

    @Test func aRegisteredUserIsReadBackAndItsEmailShownOnlyToItsOwner() async throws {
        try await Self.withUserService { client, _, issuer in
            let created = try await Self.register(client, #"{"username":"alice","email":"alice@example.com","password":"correct horse"}"#)
            #expect(created.status == .created)
            let alice = try created.decode(Created.self)
            #expect(alice.username == "alice" && alice.email == "alice@example.com")
            #expect(!String(buffer: created.body).contains("password") && !String(buffer: created.body).contains("$2"))

            // Redis refuses: the read is served from SQLite and says so.
            let anyone = try await client.execute(uri: "/api/users/\(alice.id)", method: .get)
            #expect(anyone.status == .ok)
            #expect(anyone.headers[.xCache] == "error")
            #expect(anyone.headers[.vary] == "Authorization")
            #expect(try Set(anyone.jsonObject.keys) == ["id", "username", "created_at"])

            let own = try await issuer.issue(userID: alice.id, username: "alice").token
            let owner = try await client.execute(uri: "/api/users/\(alice.id)", method: .get, headers: .json(token: own))
            #expect(try owner.decode(Created.self).email == "alice@example.com")
            let someoneElse = try await issuer.issue(userID: alice.id + 1, username: "bob").token
            #expect(try await client.execute(uri: "/api/users/\(alice.id)", method: .get, headers: .json(token: someoneElse)).jsonObject["email"] == nil)

            let me = try await client.execute(uri: "/api/users/me", method: .get, headers: .json(token: own))
            #expect(me.status == .ok)
            #expect(try me.decode(Created.self).id == alice.id)
            let anonymous = try await client.execute(uri: "/api/users/me", method: .get)
            #expect(anonymous.status == .unauthorized)
            #expect(try anonymous.apiError().code == "unauthorized")
            // A token from before a password change (an older version) is retired.
            let retired = try await issuer.issue(userID: alice.id, username: "alice", passwordVersion: 1).token
            let refused = try await client.execute(uri: "/api/users/me", method: .get, headers: .json(token: retired))
            #expect(refused.status == .unauthorized)
            #expect(refused.headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#)

            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("user_registrations_total 1"))
            #expect(metrics.contains(#"cache_requests_total{result="error"} 4"#), "\(metrics.split(separator: "\n").filter { $0.contains("cache_") })")
        }
    }

    @Test func badInputGetsTheRightStatusAndTheErrorShape() async throws {
        try await Self.withUserService { client, _, _ in
            let plain = try await client.execute(uri: "/api/users", method: .post, headers: [.contentType: "text/plain"], body: ByteBuffer(string: "{}"))
            #expect(plain.status == .unsupportedMediaType)
            #expect(try plain.apiError().code == "unsupported_media_type")
            for malformed in ["{not json", #"{"username":42}"#] {
                let answer = try await Self.register(client, malformed)
                #expect(answer.status == .badRequest, "\(malformed)")
                _ = try answer.apiError()
            }
            let invalid = try await Self.register(client, #"{"username":"x","email":"nope","password":"short"}"#)
            #expect(invalid.status == .unprocessableContent)
            let error = try invalid.apiError()
            #expect(error.code == "validation_failed")
            #expect(error.fields.map { Set($0.keys) } == ["username", "email", "password"])
            #expect(try await Self.register(client, "{}").apiError().fields?["password"] == "is required")

            #expect(try await Self.register(client, #"{"username":"bobby.tables","email":"b@example.com","password":"long enough"}"#).status == .created)
            // Taken, case-insensitively: 409 naming the field.
            let taken = try await Self.register(client, #"{"username":"Bobby.Tables","email":"other@example.com","password":"long enough"}"#)
            #expect(taken.status == .conflict)
            #expect(try taken.apiError().fields == ["username": "is already taken"])
            let takenEmail = try await Self.register(client, #"{"username":"other","email":"B@example.com","password":"long enough"}"#)
            #expect(try takenEmail.apiError().fields == ["email": "is already taken"])

            // No such user, however the id is spelled: 404.
            for missing in ["/api/users/2", "/api/users/abc", "/api/users/0"] {
                #expect(try await client.execute(uri: missing, method: .get).apiError().code == "not_found", "\(missing)")
            }
            let delete = try await client.execute(uri: "/api/users/1", method: .delete)
            #expect(delete.status == .methodNotAllowed)
            #expect(delete.headers[.allow] == "GET, HEAD")
        }
    }

    /// SQL-looking and non-ASCII text is stored and returned exactly; the credential check
    /// answers alike whether or not the user exists.
    @Test func textIsStoredExactlyAndTheCredentialCheckDoesNotTellUsersApart() async throws {
        try await Self.withUserService { client, store, _ in
            let email = "robert');DROP-TABLE--users;'@例え.jp"
            let password = "pässwörd ' OR 1=1 -- 🚀"
            let created = try await Self.register(client, #"{"username":"bobby.tables","email":"\#(email)","password":"\#(password)"}"#)
            #expect(created.status == .created)
            let id = try created.decode(Created.self).id
            #expect(try created.decode(Created.self).email == email)
            #expect(try await store.user(id: id)?.email == email)

            let authenticate = { (body: String) in
                try await client.execute(uri: "/internal/users/authenticate", method: .post, headers: .json(), body: ByteBuffer(string: body))
            }
            let good = try await authenticate(#"{"username":"bobby.tables","password":"\#(password)"}"#)
            #expect(good.status == .ok)
            #expect(try good.jsonObject["id"] as? Int == Int(id))
            #expect(try good.jsonObject["password_version"] as? Int == 0)
            let wrong = try await authenticate(#"{"username":"bobby.tables","password":"nope nope"}"#)
            let unknown = try await authenticate(#"{"username":"nobody","password":"nope nope"}"#)
            #expect(wrong.status == .unauthorized && unknown.status == .unauthorized)
            #expect(try wrong.apiError().message == unknown.apiError().message)
            #expect(try await authenticate(#"{"username":""}"#).apiError().fields == ["username": "is required", "password": "is required"])
            // SQLite and bcrypt read text up to a NUL: what follows one must not be ignored.
            let cutUsername = try await authenticate(#"{"username":"bobby.tables\u0000x","password":"\#(password)"}"#)
            let cutPassword = try await authenticate(#"{"username":"bobby.tables","password":"\#(password)\u0000x"}"#)
            #expect(cutUsername.status == .unauthorized && cutPassword.status == .unauthorized)
            let nulEmail = try await Self.register(client, #"{"username":"nul","email":"a\u0000b@example.com","password":"long enough"}"#)
            #expect(try nulEmail.apiError().fields == ["email": "must be a valid email address"])

            let version = try await client.execute(uri: "/internal/users/\(id)/password-version", method: .get)
            #expect(try version.jsonObject["password_version"] as? Int == 0)
            #expect(try await client.execute(uri: "/internal/users/\(id + 1)/password-version", method: .get).status == .notFound)
        }
    }

    /// The whole application as `main` builds it, in this process: with Redis refusing it is
    /// ready but degraded, and `/stats` counts its users.
    @Test func theApplicationIsDegradedWithoutRedisAndCountsItsUsers() async throws {
        let directory = try temporaryDirectory("user-service-app")
        defer { try? FileManager.default.removeItem(at: directory) }
        let kit = try makeTestKit(service: "user-service", environment: ["DATA_DIR": directory.path])
        let settings = Settings.fromEnvironment(["REDIS_URL": "redis://127.0.0.1:\(try Ports.refused())", "BCRYPT_COST": "4"])
        try await buildApplication(kit: kit, settings: settings).test(.router) { client in
            #expect(try await Self.register(client, #"{"username":"dave","email":"dave@example.com","password":"long enough"}"#).status == .created)
            let ready = try await client.execute(uri: "/health/ready", method: .get)
            #expect(ready.status == .ok)
            #expect(try ready.jsonObject["status"] as? String == "degraded")
            let stats = try await client.execute(uri: "/stats", method: .get).jsonObject
            #expect((stats["details"] as? [String: Any])?["users"] as? Int == 1)
            let dependencies = try #require(stats["dependencies"] as? [String: [String: Any]])
            #expect(dependencies["cache"]?["status"] as? String == "OFFLINE")
            #expect(dependencies["database"]?["status"] as? String == "ONLINE")
        }
    }
}
