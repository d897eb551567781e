import AsyncHTTPClient
import Foundation
import JWTKit
import NIOCore
import NIOHTTP1
import TestSupport
import Testing
import TitaniumAuth

/// user-service and auth-service as processes (with a real redis-server): what a user's data
/// and password accept, and who sees what.
@Suite(.serialized) struct UserExposureTests {
    /// Redis, user-service and auth-service on free ports, with a client: see ``with(_:)``.
    struct Stack {
        let dataDir: URL
        let redis: RedisServer
        let users: ServiceProcess
        let auth: ServiceProcess
        let usersURL: String
        let authURL: String
        let client: HTTPClient

        /// Starts the stack for `body` and takes it down after, whether `body` returned or threw.
        static func with(_ body: (Stack) async throws -> Void) async throws {
            let dataDir = try temporaryDirectory("titanium-exposure")
            defer { try? FileManager.default.removeItem(at: dataDir) }
            try await withRedisServer { redis in
                try await withHTTPClient { client in
                    let stack = try await Stack(dataDir: dataDir, redis: redis, client: client)
                    try await body(stack)
                    _ = try await stack.auth.terminate()
                    _ = try await stack.users.terminate()
                }
            }
        }

        private init(dataDir: URL, redis: RedisServer, client: HTTPClient) async throws {
            self.dataDir = dataDir
            self.redis = redis
            self.client = client
            let authPort = try Ports.free()
            self.authURL = "http://127.0.0.1:\(authPort)"
            self.users = try ServiceProcess("user-service", environment: [
                "DATA_DIR": self.dataDir.appendingPathComponent("users").path, "REDIS_URL": self.redis.url, "BCRYPT_COST": "4",
                "JWKS_URL": "\(self.authURL)/.well-known/jwks.json", "SHUTDOWN_DELAY_SECONDS": "0",
            ])
            self.usersURL = "http://127.0.0.1:\(try await self.users.port())"
            self.auth = try ServiceProcess("auth-service", environment: [
                "DATA_DIR": self.dataDir.appendingPathComponent("auth").path, "USER_SERVICE_URL": self.usersURL, "HTTP_PORT": String(authPort),
                "SHUTDOWN_DELAY_SECONDS": "0",
            ])
            _ = try await self.auth.port()
        }

        func send(_ method: HTTPMethod, _ url: String, token: String? = nil, body: String? = nil) async throws -> Fetched {
            try await TestSupport.send(self.client, method, url, token: token, body: body)
        }

        /// Registers a user and returns its id.
        func register(_ name: String, password: String) async throws -> Int {
            let created = try await post(self.client, "\(self.usersURL)/api/users", body: #"{"username":"\#(name)","email":"\#(name)@example.com","password":"\#(password)"}"#)
            #expect(created.status == .created, "\(created.body)")
            return try #require(try json(created.body)["id"] as? Int)
        }

        func login(_ name: String, password: String) async throws -> String {
            let response = try await post(self.client, "\(self.authURL)/api/auth/login", body: #"{"username":"\#(name)","password":"\#(password)"}"#)
            #expect(response.status == .ok, "\(response.body)")
            return try #require(try json(response.body)["access_token"] as? String)
        }
    }

    static func fields(_ body: String) -> [String: String] {
        ((try? json(body)["error"] as? [String: Any])?["fields"] as? [String: String]) ?? [:]
    }

    @Test func passwordsBcryptWouldCutAreRefused() async throws {
        try await Stack.with { stack in
            let users = "\(stack.usersURL)/api/users"
            func register(_ name: String, _ passwordJSON: String) async throws -> Fetched {
                try await post(stack.client, users, body: #"{"username":"\#(name)","email":"\#(name)@example.com","password":"\#(passwordJSON)"}"#)
            }
            // A NUL byte (bcrypt would stop there), 73 ASCII bytes, 25 three-byte characters (75 bytes).
            for (name, password) in [("nul", #"abcdefgh\u0000ijkl"#), ("long", String(repeating: "a", count: 73)), ("euros", String(repeating: "€", count: 25))] {
                let refused = try await register(name, password)
                #expect(refused.status == .unprocessableEntity, "\(name): \(refused.status)")
                #expect(Set(Self.fields(refused.body).keys) == ["password"], "\(name): \(refused.body)")
            }
            #expect(try await register("short", "seven77").status == .unprocessableEntity)
            // Exactly 72 bytes is accepted, in ASCII or in multi-byte characters, and logs in.
            #expect(try await register("ascii72", String(repeating: "a", count: 72)).status == .created)
            let euros = String(repeating: "€", count: 24)
            #expect(try await register("euros72", euros).status == .created)
            let token = try await stack.login("euros72", password: euros)

            // The same rules on a password change, before the current password is looked at.
            let me = "\(stack.usersURL)/api/users/me"
            for password in [#"abcdefgh\u0000ijkl"#, String(repeating: "b", count: 73), String(repeating: "€", count: 25)] {
                let refused = try await stack.send(.PATCH, me, token: token, body: #"{"password":"\#(password)","current_password":"\#(euros)"}"#)
                #expect(refused.status == .unprocessableEntity, "\(refused.body)")
                #expect(Set(Self.fields(refused.body).keys) == ["password"], "\(refused.body)")
            }
            // Nothing changed: the password still logs in.
            _ = try await stack.login("euros72", password: euros)
        }
    }

    @Test func emailIsShownOnlyToItsOwner() async throws {
        try await Stack.with { stack in
            let aliceID = try await stack.register("alice", password: "password-alice")
            let bobID = try await stack.register("bob", password: "password-bob")
            let alice = try await stack.login("alice", password: "password-alice")
            let bob = try await stack.login("bob", password: "password-bob")
            let profile = "\(stack.usersURL)/api/users/\(aliceID)"

            // Tokens that prove nothing: garbage, bob's token claiming alice's id, an expired one and
            // one signed by another key, both for alice.
            let parts = bob.split(separator: ".").map(String.init)
            let payload = try #require(TokenAndPostTests.decode(parts[1])).replacingOccurrences(of: #""sub":"\#(bobID)""#, with: #""sub":"\#(aliceID)""#)
            #expect(payload.contains(#""sub":"\#(aliceID)""#))
            let tampered = [parts[0], TokenAndPostTests.encode(payload), parts[2]].joined(separator: ".")
            let realKey = try ES256PrivateKey(pem: String(contentsOfFile: stack.dataDir.appendingPathComponent("auth/jwt-es256.pem").path, encoding: .utf8))
            let expired = try await TokenIssuer(key: realKey, policy: TokenPolicy(), lifetime: .seconds(60))
                .issue(userID: Int64(aliceID), username: "alice", now: Date().addingTimeInterval(-3600)).token
            let wrongKey = try await TokenIssuer(key: ES256PrivateKey(), policy: TokenPolicy(), lifetime: .seconds(60))
                .issue(userID: Int64(aliceID), username: "alice").token

            // Others, first from SQLite (miss) then from the cache (hit): the same JSON without `email`.
            for (index, (name, token)) in [("no token", nil), ("bob", bob), ("garbage", "a.b.c"), ("tampered", tampered), ("expired", expired), ("wrong key", wrongKey)].enumerated() {
                let answer = try await stack.send(.GET, profile, token: token)
                #expect(answer.status == .ok, "\(name): \(answer.body)")
                #expect(answer.headers["X-Cache"].first == (index == 0 ? "miss" : "hit"), "\(name)")
                #expect(answer.headers["Vary"].first == "Authorization", "\(name)")
                let body = try json(answer.body)
                #expect(Set(body.keys) == ["id", "username", "created_at"], "\(name): \(answer.body)")
                #expect(body["username"] as? String == "alice")
                #expect(!answer.body.contains("alice@example.com"), "\(name)")
            }
            // The owner, from the same cached copy: with `email`.
            let own = try await stack.send(.GET, profile, token: alice)
            #expect(own.headers["X-Cache"].first == "hit")
            #expect(try json(own.body)["email"] as? String == "alice@example.com")
            // And after the owner, others still without it.
            let afterOwner = try await stack.send(.GET, profile, token: bob)
            #expect(afterOwner.headers["X-Cache"].first == "hit")
            #expect(try json(afterOwner.body)["email"] == nil)
            // Bob sees his own email; /me always shows it.
            #expect(try json(try await stack.send(.GET, "\(stack.usersURL)/api/users/\(bobID)", token: bob).body)["email"] as? String == "bob@example.com")
            #expect(try json(try await stack.send(.GET, "\(stack.usersURL)/api/users/me", token: alice).body)["email"] as? String == "alice@example.com")
        }
    }

    @Test func passwordChangeNeedsTheCurrentPasswordAndRetiresEarlierTokens() async throws {
        try await Stack.with { stack in
            let id = try await stack.register("carol", password: "password-carol")
            let me = "\(stack.usersURL)/api/users/me"
            let profile = "\(stack.usersURL)/api/users/\(id)"
            let verify = "\(stack.authURL)/api/auth/verify"
            let laptop = try await stack.login("carol", password: "password-carol")
            let phone = try await stack.login("carol", password: "password-carol")

            // Without the current password: 422 naming it; with a wrong one: 403, and nothing changes.
            for body in [#"{"password":"new password 1"}"#, #"{"password":"new password 1","current_password":""}"#] {
                let missing = try await stack.send(.PATCH, me, token: laptop, body: body)
                #expect(missing.status == .unprocessableEntity, "\(missing.body)")
                #expect(Self.fields(missing.body)["current_password"] != nil, "\(missing.body)")
            }
            let wrong = try await stack.send(.PATCH, me, token: laptop, body: #"{"password":"new password 1","current_password":"not my password"}"#)
            #expect(wrong.status == .forbidden, "\(wrong.body)")
            #expect((try json(wrong.body)["error"] as? [String: Any])?["code"] as? String == "forbidden")
            #expect(try await stack.send(.GET, me, token: laptop).status == .ok)
            _ = try await stack.login("carol", password: "password-carol")
            // An email change needs no password and retires nothing.
            let email = try await stack.send(.PATCH, me, token: phone, body: #"{"email":"carol@new.example"}"#)
            #expect(email.status == .ok, "\(email.body)")
            #expect(try await stack.send(.GET, verify, token: phone).status == .ok)

            // Changed at the start of a second, so that the tokens before and after it most likely
            // carry the same `iat`: the tokens are told apart by their password version, not by time.
            let now = Date().timeIntervalSince1970
            try await Task.sleep(for: .milliseconds(Int((now.rounded(.up) - now) * 1000) + 5))
            let sameSecond = try await stack.login("carol", password: "password-carol")
            let changed = try await stack.send(.PATCH, me, token: laptop, body: #"{"password":"new password 1","current_password":"password-carol"}"#)
            #expect(changed.status == .ok, "\(changed.body)")
            #expect(try json(changed.body)["email"] as? String == "carol@new.example")
            let fresh = try await stack.login("carol", password: "new password 1")

            // Every token from before the change, the one that made it included: 401 on the user
            // routes and at auth-service, and no email on the profile.
            for (name, token) in [("laptop", laptop), ("phone", phone), ("same second", sameSecond)] {
                for (method, url, body) in [(HTTPMethod.GET, me, nil), (.PATCH, me, #"{"email":"carol@stolen.example"}"#), (.GET, verify, nil)] {
                    let refused = try await stack.send(method, url, token: token, body: body)
                    #expect(refused.status == .unauthorized, "\(name) \(method) \(url): \(refused.body)")
                    #expect(refused.headers["WWW-Authenticate"].first == #"Bearer error="invalid_token""#, "\(name) \(method) \(url)")
                }
                #expect(try json(try await stack.send(.GET, profile, token: token).body)["email"] == nil, "\(name)")
            }
            // The token issued after it works everywhere.
            #expect(try await stack.send(.GET, me, token: fresh).status == .ok)
            #expect(try await stack.send(.GET, verify, token: fresh).status == .ok)
            #expect(try json(try await stack.send(.GET, profile, token: fresh).body)["email"] as? String == "carol@new.example")
            let after = try await stack.send(.PATCH, me, token: fresh, body: #"{"email":"carol@newer.example"}"#)
            #expect(after.status == .ok, "\(after.body)")
            #expect(try await post(stack.client, "\(stack.authURL)/api/auth/login", body: #"{"username":"carol","password":"password-carol"}"#).status == .unauthorized)

            // auth-service cannot vouch for a token without user-service: 502, not 200.
            #expect(try await stack.users.terminate() == 0)
            let unknown = try await stack.send(.GET, verify, token: fresh)
            #expect(unknown.status == .badGateway, "\(unknown.body)")
        }
    }
}
