import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// user-service and blog-service on a real PostgreSQL the test starts (Debian's `postgresql`;
/// missing, these tests fail: CI installs it), several processes on one database: what SQLite
/// cannot show. The rest of the user, auth and blog tests run on PostgreSQL in scripts/test.sh's
/// second pass.
@Suite(.serialized) struct PostgresStorageTests {
    /// A client with room for 64 connections per service (AsyncHTTPClient's default is 8), so
    /// that 50 requests are in flight at once.
    static func withWideHTTPClient<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        return try await withTearDown { try await body(client) } tearDown: { try await client.shutdown() }
    }

    static func databaseStatus(_ client: HTTPClient, _ base: String) async throws -> String? {
        let stats = try await get(client, "\(base)/stats")
        let dependencies = try json(stats.body)["dependencies"] as? [String: [String: Any]]
        return dependencies?["database"]?["status"] as? String
    }

    static func seconds(_ duration: Duration) -> String {
        String(format: "%.2f s", Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
    }

    @Test(.timeLimit(.minutes(2)))
    func oneUsernameRegisteredFiftyTimesAtOnceOverTwoProcessesGivesOneUser() async throws {
        let dataDir = try temporaryDirectory("titanium-pg-users")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        try await withPostgresServer { postgres in
            try postgres.createDatabase("titanium")
            try await withRedisServer { redis in
                let services = try (0..<2).map { index in
                    try ServiceProcess("user-service", environment: [
                        "DATABASE_URL": postgres.url(database: "titanium"), "REDIS_URL": redis.url, "BCRYPT_COST": "4",
                        "DATA_DIR": dataDir.appendingPathComponent("users-\(index)").path, "SHUTDOWN_DELAY_SECONDS": "0",
                    ])
                }
                var bases: [String] = []
                for service in services { bases.append("http://127.0.0.1:\(try await service.port())") }
                let urls = bases
                try await Self.withWideHTTPClient { client in
                    // Spellings of one name (uniqueness ignores case), each with an email of its own so
                    // that only the username collides.
                    for (round, spellings) in [["alice"], ["Bob", "bob", "BOB", "boB"]].enumerated() {
                        let statuses = try await withThrowingTaskGroup(of: (Int, HTTPResponseStatus, String).self) { group in
                            for attempt in 0..<50 {
                                let name = spellings[attempt % spellings.count]
                                let url = "\(urls[attempt % 2])/api/users"
                                group.addTask {
                                    let body = #"{"username":"\#(name)","email":"r\#(round)-\#(attempt)@example.com","password":"password-\#(round)"}"#
                                    let answer = try await post(client, url, body: body)
                                    return (attempt, answer.status, answer.body)
                                }
                            }
                            return try await group.reduce(into: []) { $0.append($1) }
                        }
                        let created = statuses.filter { $0.1 == .created }
                        let conflicts = statuses.filter { $0.1 == .conflict }
                        let others = statuses.filter { $0.1 != .created && $0.1 != .conflict }
                        print("PostgresStorageTests: \(spellings.joined(separator: "/")) ×50 over 2 processes: \(created.count) × 201, \(conflicts.count) × 409, others \(others.map { "\($0.1.code)" })")
                        #expect(created.count == 1, "\(spellings): \(created.map(\.2))")
                        #expect(conflicts.count == 49, "\(spellings): others \(others.map { "\($0.1.code) \($0.2)" })")
                        #expect(others.isEmpty, "\(others.map { "\($0.1.code) \($0.2)" })")
                        let rows = try postgres.psql("SELECT count(*) FROM users WHERE lower(username) = '\(spellings[0].lowercased())'", database: "titanium")
                        #expect(rows == "1")
                    }
                    // The one user is seen by both processes.
                    for base in urls {
                        #expect(try await post(client, "\(base)/internal/users/authenticate", body: #"{"username":"alice","password":"password-0"}"#).status == .ok)
                        #expect(try await post(client, "\(base)/internal/users/authenticate", body: #"{"username":"bob","password":"password-1"}"#).status == .ok)
                    }
                }
                for service in services { #expect(try await service.terminate() == 0) }
            }
        }
    }

    /// One request of the light load and what it got.
    struct Outcome: Sendable {
        var sent: ContinuousClock.Instant
        var finished: ContinuousClock.Instant
        var kind: String
        var status: UInt
        var body: String
    }

    @Test(.timeLimit(.minutes(2)))
    func postgresStoppedForTenSecondsUnderLoadIsOfflineThen503ThenBackWithoutARestart() async throws {
        let dataDir = try temporaryDirectory("titanium-pg-outage")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        try await withPostgresServer { postgres in
            try postgres.createDatabase("titanium")
            // The cache is off (nothing listens on REDIS_URL): every read needs the database.
            let service = try ServiceProcess("user-service", environment: [
                "DATABASE_URL": postgres.url(database: "titanium"), "REDIS_URL": "redis://127.0.0.1:\(try Ports.refused())",
                "BCRYPT_COST": "4", "DATA_DIR": dataDir.path, "SHUTDOWN_DELAY_SECONDS": "0",
            ])
            let base = "http://127.0.0.1:\(try await service.port())"
            try await withHTTPClient { client in
                let created = try await post(client, "\(base)/api/users", body: #"{"username":"reader","email":"reader@example.com","password":"password-reader"}"#)
                #expect(created.status == .created, "\(created.body)")
                let id = try #require(try json(created.body)["id"] as? Int)
                #expect(try await Self.databaseStatus(client, base) == "ONLINE")

                // Light load: a request every 200 ms whether or not the earlier ones have been
                // answered, reads of one user and registrations in turn (10 s client timeout).
                let outcomes = NIOLockedValueBox<[Outcome]>([])
                let load = Task {
                    await withTaskGroup(of: Void.self) { group in
                        var tick = 0
                        while !Task.isCancelled {
                            let sent = ContinuousClock.now
                            let kind = tick % 2 == 0 ? "read" : "register"
                            let body = #"{"username":"load\#(tick)","email":"load\#(tick)@example.com","password":"password-\#(tick)"}"#
                            group.addTask {
                                do {
                                    let answer = kind == "read"
                                        ? try await send(client, .GET, "\(base)/api/users/\(id)")
                                        : try await send(client, .POST, "\(base)/api/users", body: body)
                                    outcomes.withLockedValue { $0.append(Outcome(sent: sent, finished: .now, kind: kind, status: answer.status.code, body: answer.body)) }
                                } catch {
                                    outcomes.withLockedValue { $0.append(Outcome(sent: sent, finished: .now, kind: kind, status: 0, body: "\(error)")) }
                                }
                            }
                            tick += 1
                            try? await Task.sleep(until: sent + .milliseconds(200))
                        }
                    }
                }
                defer { load.cancel() }
                try await Task.sleep(for: .seconds(2))

                // PostgreSQL stops (fast shutdown: its connections are cut).
                try await postgres.stop(.fast)
                let stopped = ContinuousClock.now
                _ = try await poll(timeout: .seconds(8), interval: .milliseconds(50)) { () async throws -> Bool? in
                    try await Self.databaseStatus(client, base) == "OFFLINE" ? true : nil
                }
                let offlineAfter = stopped.duration(to: .now)
                let ready = try await get(client, "\(base)/health/ready")
                #expect(ready.status == .serviceUnavailable, "\(ready.body)")
                try await Task.sleep(until: stopped + .seconds(10))

                // It returns, on the same port with the same data.
                let restarting = ContinuousClock.now
                try await postgres.start()
                let returned = ContinuousClock.now
                _ = try await poll(timeout: .seconds(8), interval: .milliseconds(50)) { () async throws -> Bool? in
                    try await Self.databaseStatus(client, base) == "ONLINE" ? true : nil
                }
                let onlineAfter = returned.duration(to: .now)
                try await Task.sleep(for: .seconds(6))
                load.cancel()
                _ = await load.result

                let all = outcomes.withLockedValue { $0 }
                // Sent once OFFLINE was reported and answered before PostgreSQL was started again.
                let during = all.filter { $0.sent >= stopped + offlineAfter && $0.finished < restarting }
                let served = all.filter { $0.sent >= returned && ($0.status == 200 || $0.status == 201) }
                let firstRead = served.first { $0.kind == "read" }.map { returned.duration(to: $0.sent) }
                let firstRegistration = served.first { $0.kind == "register" }.map { returned.duration(to: $0.sent) }
                let outageAnswers = all.filter { $0.status == 503 }.map { $0.sent.duration(to: $0.finished) }.sorted()
                func tally(_ outcomes: [Outcome]) -> String {
                    Dictionary(grouping: outcomes, by: { "\($0.kind) \($0.status)" }).map { "\($0.key) ×\($0.value.count)" }.sorted().joined(separator: ", ")
                }
                print("""
                    PostgresStorageTests outage: OFFLINE on /stats \(Self.seconds(offlineAfter)) after PostgreSQL stopped; \
                    ONLINE \(Self.seconds(onlineAfter)) after it returned; first 200 read sent \(firstRead.map(Self.seconds) ?? "never"), \
                    first 201 registration sent \(firstRegistration.map(Self.seconds) ?? "never") after its return; \
                    while OFFLINE: \(tally(during)); all: \(tally(all)); \
                    503s answered in \(outageAnswers.first.map(Self.seconds) ?? "-") to \(outageAnswers.last.map(Self.seconds) ?? "-") \
                    (\(outageAnswers.filter { $0 > .seconds(1) }.count) slower than 1 s)
                    """)
                #expect(offlineAfter < .seconds(5))
                #expect(onlineAfter < .seconds(5))
                #expect(!during.isEmpty)
                #expect(during.allSatisfy { $0.status == 503 }, "\(during.filter { $0.status != 503 }.map { "\($0.kind) \($0.status) \($0.body)" })")
                for outcome in during where outcome.status == 503 {
                    let code = (try? json(outcome.body)["error"] as? [String: Any])?["code"] as? String
                    #expect(code == "unavailable", "\(outcome.body)")  // 503's code in openapi/titanium.yaml
                    #expect(outcome.body.contains("database"), "\(outcome.body)")
                }
                // No 500 at any time, nothing unanswered.
                #expect(all.allSatisfy { [200, 201, 503].contains($0.status) }, "\(all.filter { ![200, 201, 503].contains($0.status) }.map { "\($0.kind) \($0.status) \($0.body)" })")
                // None waited much longer than the query timeout (DATABASE_QUERY_TIMEOUT_MS, 5 s by default).
                #expect((outageAnswers.last ?? .zero) < .seconds(7))
                #expect(try #require(firstRead) < .seconds(5))
                #expect(try #require(firstRegistration) < .seconds(5))
                // Everything sent 5 s after the return was served.
                let late = all.filter { $0.sent >= returned + .seconds(5) }
                #expect(!late.isEmpty && late.allSatisfy { $0.status == 200 || $0.status == 201 }, "\(tally(late))")

                // The same process throughout: one "listening" line, and up since before the outage.
                #expect(service.logObjects.filter { $0["message"] as? String == "listening" }.count == 1)
                let uptime = try json(try await get(client, "\(base)/stats").body)["uptime_s"] as? Double ?? 0
                #expect(uptime > 15, "uptime_s \(uptime)")
                #expect(try await get(client, "\(base)/api/users/\(id)").status == .ok)
                #expect(try await get(client, "\(base)/health/ready").status == .ok)
            }
            #expect(try await service.terminate() == 0)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func postgresKilledAndStartedAgainIsServedAgainWithoutARestart() async throws {
        let dataDir = try temporaryDirectory("titanium-pg-crash")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        try await withPostgresServer { postgres in
            try postgres.createDatabase("titanium")
            let service = try ServiceProcess("user-service", environment: [
                "DATABASE_URL": postgres.url(database: "titanium"), "REDIS_URL": "redis://127.0.0.1:\(try Ports.refused())",
                "BCRYPT_COST": "4", "DATA_DIR": dataDir.path, "SHUTDOWN_DELAY_SECONDS": "0",
            ])
            let base = "http://127.0.0.1:\(try await service.port())"
            try await withHTTPClient { client in
                let created = try await post(client, "\(base)/api/users", body: #"{"username":"crash","email":"crash@example.com","password":"password-crash"}"#)
                let id = try #require(try json(created.body)["id"] as? Int, "\(created.body)")
                #expect(try await get(client, "\(base)/api/users/\(id)").status == .ok)

                // A crash (SIGKILL: no shutdown, the server recovers from its WAL on the next start).
                try await postgres.stop(.kill)
                let down = try await send(client, .GET, "\(base)/api/users/\(id)")
                #expect(down.status == .serviceUnavailable, "\(down.body)")
                try await postgres.start()
                let returned = ContinuousClock.now
                _ = try await poll(timeout: .seconds(5), interval: .milliseconds(50)) { () async throws -> Bool? in
                    try await get(client, "\(base)/api/users/\(id)").status == .ok ? true : nil
                }
                let servedAfter = returned.duration(to: .now)
                print("PostgresStorageTests crash: a read served again \(Self.seconds(servedAfter)) after PostgreSQL returned")
                #expect(try await Self.databaseStatus(client, base) == "ONLINE")
                let after = try await post(client, "\(base)/api/users", body: #"{"username":"crash2","email":"crash2@example.com","password":"password-crash"}"#)
                #expect(after.status == .created, "\(after.body)")
                #expect(service.logObjects.filter { $0["message"] as? String == "listening" }.count == 1)
            }
            #expect(try await service.terminate() == 0)
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func twoBlogProcessesOnOneDatabaseShareAuthorshipAndSeeEachOthersWrites() async throws {
        let dataDir = try temporaryDirectory("titanium-pg-blog")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        try await withPostgresServer { postgres in
            try postgres.createDatabase("titanium")
            let databaseURL = postgres.url(database: "titanium")
            try await withRedisServer { redis in
                let authPort = try Ports.free()
                let authURL = "http://127.0.0.1:\(authPort)"
                let jwks = "\(authURL)/.well-known/jwks.json"
                let users = try ServiceProcess("user-service", environment: [
                    "DATABASE_URL": databaseURL, "REDIS_URL": redis.url, "BCRYPT_COST": "4", "JWKS_URL": jwks,
                    "DATA_DIR": dataDir.appendingPathComponent("users").path, "SHUTDOWN_DELAY_SECONDS": "0",
                ])
                let usersURL = "http://127.0.0.1:\(try await users.port())"
                let auth = try ServiceProcess("auth-service", environment: [
                    "DATA_DIR": dataDir.appendingPathComponent("auth").path, "USER_SERVICE_URL": usersURL, "HTTP_PORT": String(authPort),
                    "SHUTDOWN_DELAY_SECONDS": "0",
                ])
                _ = try await auth.port()
                let blogs = try (0..<2).map { index in
                    try ServiceProcess("blog-service", environment: [
                        "DATABASE_URL": databaseURL, "JWKS_URL": jwks, "USER_SERVICE_URL": usersURL,
                        "DATA_DIR": dataDir.appendingPathComponent("blog-\(index)").path, "SHUTDOWN_DELAY_SECONDS": "0",
                    ])
                }
                let first = "http://127.0.0.1:\(try await blogs[0].port())"
                let second = "http://127.0.0.1:\(try await blogs[1].port())"
                try await withHTTPClient { client in
                    var tokens: [String: String] = [:]
                    for name in ["alice", "bob"] {
                        let created = try await post(client, "\(usersURL)/api/users", body: #"{"username":"\#(name)","email":"\#(name)@example.com","password":"password-\#(name)"}"#)
                        #expect(created.status == .created, "\(created.body)")
                        let login = try await post(client, "\(authURL)/api/auth/login", body: #"{"username":"\#(name)","password":"password-\#(name)"}"#)
                        #expect(login.status == .ok, "\(login.body)")
                        tokens[name] = try #require(try json(login.body)["access_token"] as? String)
                    }
                    let alice = try #require(tokens["alice"])
                    let bob = try #require(tokens["bob"])
                    func titles(_ base: String) async throws -> [String] {
                        let page = try json(try await get(client, "\(base)/api/posts").body)
                        return (page["posts"] as? [[String: Any]] ?? []).compactMap { $0["title"] as? String }
                    }

                    // Each process has its (empty) first page cached before the other one writes.
                    for base in [first, second] {
                        #expect(try await titles(base) == [])
                        #expect(try await titles(base) == [])
                    }
                    let created = try await send(client, .POST, "\(first)/api/posts", token: alice, body: #"{"title":"Hello","body":"from the first process"}"#)
                    #expect(created.status == .created, "\(created.body)")
                    let id = try #require(try json(created.body)["id"] as? Int)
                    #expect(try await titles(second) == ["Hello"])
                    #expect(try json(try await get(client, "\(second)/api/posts/\(id)").body)["author"] as? String == "alice")

                    // Only the author changes a post, whichever process is asked.
                    for base in [first, second] {
                        let patch = try await send(client, .PATCH, "\(base)/api/posts/\(id)", token: bob, body: #"{"title":"Hijacked"}"#)
                        #expect(patch.status == .forbidden, "\(patch.body)")
                        #expect(try await send(client, .DELETE, "\(base)/api/posts/\(id)", token: bob).status == .forbidden)
                    }
                    let patched = try await send(client, .PATCH, "\(second)/api/posts/\(id)", token: alice, body: #"{"title":"Hello, again"}"#)
                    #expect(patched.status == .ok, "\(patched.body)")
                    #expect(try await titles(first) == ["Hello, again"])
                    #expect(try await titles(second) == ["Hello, again"])

                    let bobs = try await send(client, .POST, "\(second)/api/posts", token: bob, body: #"{"title":"Bob's","body":"from the second process"}"#)
                    #expect(bobs.status == .created, "\(bobs.body)")
                    #expect(try await titles(first) == ["Bob's", "Hello, again"])
                    #expect(try await send(client, .DELETE, "\(first)/api/posts/\(id)", token: alice).status == .noContent)
                    #expect(try await titles(second) == ["Bob's"])
                    #expect(try await get(client, "\(second)/api/posts/\(id)").status == .notFound)
                    #expect(try postgres.psql("SELECT string_agg(title, ',') FROM posts", database: "titanium") == "Bob's")
                }
                for blog in blogs { #expect(try await blog.terminate() == 0) }
                _ = try await auth.terminate()
                _ = try await users.terminate()
            }
        }
    }
}
