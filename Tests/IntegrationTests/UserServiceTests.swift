import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// user-service as a process, with a real redis-server the test starts, kills and restarts.
@Suite(.serialized) struct UserServiceTests {
    @Test func cacheAsideFailsOpenAndComesBack() async throws {
        let dataDir = try temporaryDirectory("titanium-users")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        try await withRedisServer { redis in
            let service = try ServiceProcess("user-service", environment: [
                "DATA_DIR": dataDir.path, "REDIS_URL": redis.url, "BCRYPT_COST": "4",
            ])
            let base = "http://127.0.0.1:\(try await service.port())"
            try await withHTTPClient { client in
                let created = try await post(client, "\(base)/api/users", body: #"{"username":"alice","email":"alice@example.com","password":"correct horse"}"#)
                #expect(created.status == .created, "\(created.body)")
                let id = try #require(try json(created.body)["id"] as? Int)

                let first = try await get(client, "\(base)/api/users/\(id)")
                #expect(first.status == .ok)
                #expect(first.headers["X-Cache"].first == "miss")
                let second = try await get(client, "\(base)/api/users/\(id)")
                #expect(second.headers["X-Cache"].first == "hit")
                #expect(second.body == first.body)

                // Redis dies: reads and writes are served from SQLite; the cache is reported OFFLINE.
                await redis.stop()
                let duringOutage = try await get(client, "\(base)/api/users/\(id)")
                #expect(duringOutage.status == .ok)
                #expect(duringOutage.headers["X-Cache"].first == "error")
                #expect(try json(duringOutage.body)["username"] as? String == "alice")
                let registeredDuringOutage = try await post(client, "\(base)/api/users", body: #"{"username":"bob","email":"bob@example.com","password":"battery staple"}"#)
                #expect(registeredDuringOutage.status == .created)
                let ready = try await get(client, "\(base)/health/ready")
                #expect(ready.status == .ok)
                #expect(try json(ready.body)["status"] as? String == "degraded")
                let offline = try await get(client, "\(base)/stats")
                let dependencies = try #require(try json(offline.body)["dependencies"] as? [String: [String: Any]])
                #expect(dependencies["cache"]?["status"] as? String == "OFFLINE")
                #expect(dependencies["database"]?["status"] as? String == "ONLINE")

                // Redis returns on the same port: ONLINE again without restarting the service.
                try await redis.start()
                let recovered = try await poll(timeout: .seconds(10)) { () async throws -> Bool? in
                    let stats = try await get(client, "\(base)/stats")
                    let dependencies = try json(stats.body)["dependencies"] as? [String: [String: Any]]
                    return dependencies?["cache"]?["status"] as? String == "ONLINE" ? true : nil
                }
                #expect(recovered)
                #expect(try await get(client, "\(base)/api/users/\(id)").headers["X-Cache"].first == "miss")
                #expect(try await get(client, "\(base)/api/users/\(id)").headers["X-Cache"].first == "hit")
                let metrics = try await get(client, "\(base)/metrics").body
                #expect(metrics.contains(#"cache_requests_total{result="error"} 1"#))
                #expect(metrics.contains("user_registrations_total 2"))
            }
            _ = try await service.terminate()
        }
    }

    @Test(.disabled(if: TestDatabase.isPostgres, "alters the SQLite file users.db; PostgreSQL databases start with password_version"))
    func aDatabaseFromBeforePasswordVersionsIsUpgradedInPlace() async throws {
        let dataDir = try temporaryDirectory("titanium-users")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let environment = [
            "DATA_DIR": dataDir.path, "REDIS_URL": "redis://127.0.0.1:\(try Ports.refused())", "BCRYPT_COST": "4",
            "SHUTDOWN_DELAY_SECONDS": "0",
        ]
        try await withHTTPClient { client in
            let before = try ServiceProcess("user-service", environment: environment)
            let created = try await post(client, "http://127.0.0.1:\(try await before.port())/api/users", body: #"{"username":"dave","email":"dave@example.com","password":"password-dave"}"#)
            let id = try #require(try json(created.body)["id"] as? Int)
            #expect(try await before.terminate() == 0)
            // The database as the service left it before the column existed.
            try SQLiteCLI.run(
                dataDir.appendingPathComponent("users.db").path, ".timeout 2000", "ALTER TABLE users DROP COLUMN password_version;",
                "DELETE FROM grdb_migrations WHERE identifier = 'v2-password-version';"
            )

            let after = try ServiceProcess("user-service", environment: environment)
            let base = "http://127.0.0.1:\(try await after.port())"
            let authenticated = try await post(client, "\(base)/internal/users/authenticate", body: #"{"username":"dave","password":"password-dave"}"#)
            #expect(authenticated.status == .ok)
            #expect(try json(authenticated.body)["password_version"] as? Int == 0)
            let version = try await get(client, "\(base)/internal/users/\(id)/password-version")
            #expect(try json(version.body)["password_version"] as? Int == 0)
            #expect(try await get(client, "\(base)/internal/users/\(id + 1)/password-version").status == .notFound)
            #expect(try await after.terminate() == 0)
        }
    }
}
