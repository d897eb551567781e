import Foundation
import Testing
import TestSupport
import TitaniumRedis

@Suite(.serialized) struct RedisClientTests {
    @Test func parsesRedisURLs() {
        #expect(RedisConfiguration(url: "redis://127.0.0.1:6380") == RedisConfiguration(host: "127.0.0.1", port: 6380))
        #expect(RedisConfiguration(url: "redis://cache") == RedisConfiguration(host: "cache", port: 6379))
        #expect(RedisConfiguration(url: "redis://:s3cret@cache:7000/2") == RedisConfiguration(host: "cache", port: 7000, password: "s3cret", database: 2))
        #expect(RedisConfiguration(url: "http://cache") == nil)
        #expect(RedisConfiguration(url: "redis://cache:99999") == nil)
    }

    @Test func commandsAgainstARealServer() async throws {
        let server = try await RedisServer()
        let client = RedisClient(configuration: RedisConfiguration(url: server.url)!)
        try await client.set("greeting", "héllo \"wörld\"\n")
        #expect(try await client.get("greeting") == "héllo \"wörld\"\n")
        #expect(try await client.get("missing") == nil)
        try await client.set("short", "x", ttlSeconds: 100)
        let ttl = try await client.send(["TTL", "short"]).integer ?? -1
        #expect(ttl > 90 && ttl <= 100)
        #expect(try await client.delete("greeting", "short") == 2)
        let counted = try await client.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", keys: ["n"], arguments: ["5"])
        #expect(counted == .integer(5))
        await #expect(throws: RedisError.self) { try await client.send(["LPUSH", "n", "x"]) }  // WRONGTYPE
        // An error reply does not break the connection.
        #expect(await client.ping())
        #expect(client.isOnline)
        await server.stop()
    }

    @Test func failsFastWhileDownAndRecoversByItself() async throws {
        let server = try await RedisServer()
        var configuration = RedisConfiguration(url: server.url)!
        configuration.reconnectInterval = .seconds(1)
        let client = RedisClient(configuration: configuration)
        #expect(await client.ping())

        await server.stop()
        await #expect(throws: RedisError.self) { try await client.get("k") }
        #expect(!client.isOnline)
        // Within the back-off, calls fail without trying to connect (a machine under load took
        // 221 ms for these 20 once, so the back-off is 1 s and the bound below it).
        let start = ContinuousClock.now
        for _ in 0..<20 { _ = try? await client.get("k") }
        #expect(start.duration(to: .now) < .milliseconds(800))

        try await server.start()
        try await Task.sleep(for: .milliseconds(1050))
        #expect(await client.ping())
        #expect(client.isOnline)
        try await client.set("k", "back")
        #expect(try await client.get("k") == "back")
        await server.stop()
    }

    @Test func unreachableServerAnswersWithinTheConnectTimeout() async throws {
        let port = try Ports.refused()  // nothing listens there
        let client = RedisClient(configuration: RedisConfiguration(port: port))
        let start = ContinuousClock.now
        await #expect(throws: RedisError.self) { try await client.get("k") }
        #expect(start.duration(to: .now) < .seconds(1))
        #expect(!client.isOnline)
    }
}
