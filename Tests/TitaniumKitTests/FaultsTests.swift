import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
import TestSupport
import TitaniumHTTP
import TitaniumMetrics
import TitaniumRedis

@Suite struct AdminTokenTests {
    @Test func theAdminTokenIsRequiredOffLoopback() throws {
        let none = Settings.fromEnvironment([:])
        for host in ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "0:0:0:0:0:0:0:1", "localhost", "LocalHost"] {
            #expect(try AdminToken(settings: none, listenHost: host).value == nil, "\(host)")
        }
        for host in ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "example.com", "titanium.local"] {
            #expect(throws: ConfigurationError.self, "\(host)") { try AdminToken(settings: none, listenHost: host) }
            #expect(throws: ConfigurationError.self, "\(host)") {
                try AdminToken(settings: .fromEnvironment(["ADMIN_TOKEN": ""]), listenHost: host)
            }
            #expect(try AdminToken(settings: .fromEnvironment(["ADMIN_TOKEN": "s3cret"]), listenHost: host).value == "s3cret")
        }
        // Read with the service's configuration: a bad one stops the process naming the variable.
        let error = #expect(throws: ConfigurationError.self) {
            try ServiceConfiguration(service: "test-service", defaultPort: 0, settings: .fromEnvironment(["HTTP_HOST": "0.0.0.0"]))
        }
        #expect(error?.variable == "ADMIN_TOKEN")
    }
}

@Suite struct FaultSpecTests {
    func spec(_ json: String, dependencies: Set<String> = ["cache"]) throws -> FaultSpec {
        let object = try JSONDecoder().decode([String: JSONValue].self, from: Data(json.utf8))
        return try FaultSpec(json: object, dependencies: dependencies)
    }

    func problems(_ json: String, dependencies: Set<String> = ["cache"]) throws -> [String: String] {
        do {
            _ = try self.spec(json, dependencies: dependencies)
        } catch let error as APIError {
            #expect(error.status == .unprocessableContent)
            return error.fields ?? [:]
        }
        Issue.record("accepted: \(json)")
        return [:]
    }

    @Test func theIssuesExampleIsReadWithItsDefaults() throws {
        let spec = try self.spec(#"{"latency_ms": 300, "jitter_ms": 50, "error_rate": 0.2, "error_status": 503, "hang": false, "routes": ["/api/posts*"], "dependency": "cache", "duration_s": 120}"#)
        #expect(spec.kinds == [.latency, .error, .dependency])
        #expect(spec.routes == ["/api/posts*"])
        #expect(spec.durationSeconds == 120)
        let defaults = try self.spec(#"{"error_rate": 1}"#)
        #expect(defaults.errorStatus == 503)
        #expect(defaults.durationSeconds == 300)
        #expect(defaults.routes.isEmpty)
    }

    @Test func everyProblemIsNamedByField() throws {
        #expect(try self.problems(#"{"latency_ms": 100, "latency": 5}"#).keys.sorted() == ["latency"])
        #expect(try self.problems(#"{"latency_ms": -1}"#).keys.sorted() == ["latency_ms"])
        #expect(try self.problems(#"{"latency_ms": 60001}"#).keys.sorted() == ["latency_ms"])
        #expect(try self.problems(#"{"latency_ms": 1.5}"#).keys.sorted() == ["latency_ms"])
        #expect(try self.problems(#"{"latency_ms": "300"}"#).keys.sorted() == ["latency_ms"])
        #expect(try self.problems(#"{"error_rate": 1.01}"#).keys.sorted() == ["error_rate"])
        #expect(try self.problems(#"{"error_rate": 0.5, "error_status": 200}"#).keys.sorted() == ["error_status"])
        #expect(try self.problems(#"{"hang": "yes"}"#).keys.sorted() == ["hang"])
        #expect(try self.problems(#"{"hang": true, "duration_s": 0}"#).keys.sorted() == ["duration_s"])
        #expect(try self.problems(#"{"hang": true, "duration_s": 3601}"#).keys.sorted() == ["duration_s"])
        #expect(try self.problems(#"{"hang": true, "routes": []}"#).keys.sorted() == ["routes"])
        #expect(try self.problems(#"{"hang": true, "routes": ["api/posts"]}"#).keys.sorted() == ["routes"])
        #expect(try self.problems(#"{"hang": true, "routes": ["/api/*/x"]}"#).keys.sorted() == ["routes"])
        #expect(try self.problems(#"{"dependency": "database"}"#).keys.sorted() == ["dependency"])
        #expect(try self.problems(#"{"dependency": "cache"}"#, dependencies: []).keys.sorted() == ["dependency"])
        // Nothing to inject is refused rather than armed to do nothing.
        #expect(try self.problems(#"{}"#).keys.sorted() == ["fault"])
        #expect(try self.problems(#"{"latency_ms": 0, "hang": false, "duration_s": 10}"#).keys.sorted() == ["fault"])
    }

    @Test func routesMatchWholePathsOrPrefixesButNeverTheOperationalOnes() throws {
        let all = try self.spec(#"{"hang": true}"#)
        #expect(all.matches(path: "/api/posts/3"))
        #expect(all.matches(path: "/.well-known/jwks.json"))
        for path in ["/health/ready", "/health/live", "/metrics", "/stats", "/admin/faults", "/traces", "/traces/recent"] {
            #expect(!all.matches(path: path), "\(path)")
        }
        let some = try self.spec(#"{"hang": true, "routes": ["/api/auth/*", "/api/posts"]}"#)
        #expect(some.matches(path: "/api/auth/login"))
        #expect(some.matches(path: "/api/posts"))
        #expect(!some.matches(path: "/api/posts/3"))
        #expect(!some.matches(path: "/api/users"))
    }
}

/// The fault routes and middleware on a kit's application, in process.
@Suite struct FaultRoutesTests {
    static let token = "fault-admin"

    func withApplication(_ body: @escaping @Sendable (any TestClientProtocol, ServiceKit) async throws -> Void) async throws {
        let kit = try makeKit(["ADMIN_TOKEN": Self.token])
        let router = kit.makeRouter()
        router.get("/api/posts") { _, _ in "posts" }
        router.get("/api/users/{id}") { _, _ in "user" }
        try await kit.makeApplication(router: router).test(.live) { client in try await body(client, kit) }
    }

    func put(_ client: any TestClientProtocol, _ json: String, token: String? = Self.token) async throws -> TestResponse {
        try await client.execute(uri: "/admin/faults", method: .put, headers: .json(token: token), body: ByteBuffer(string: json))
    }

    func metric(_ kit: ServiceKit, _ line: String) -> Bool {
        String(decoding: kit.exposition.render(), as: UTF8.self).split(separator: "\n").contains { $0 == line }
    }

    @Test func theRoutesNeedTheAdminTokenAndRefuseBadFaultsByField() async throws {
        try await self.withApplication { client, kit in
            for token in [nil, "wrong"] as [String?] {
                let response = try await self.put(client, #"{"error_rate": 1}"#, token: token)
                #expect(response.status == .unauthorized)
                #expect(response.headers[.wwwAuthenticate] == "Bearer")
            }
            #expect(try await client.execute(uri: "/admin/faults", method: .get).status == .unauthorized)
            #expect(try await client.execute(uri: "/admin/faults", method: .delete).status == .unauthorized)
            let unknown = try await self.put(client, #"{"error_rate": 1, "colour": "red"}"#)
            #expect(unknown.status == .unprocessableContent)
            #expect(try jsonObject(unknown.body)["error"].flatMap { ($0 as? [String: Any])?["fields"] as? [String: String] }?.keys.sorted() == ["colour"])
            #expect(try await self.put(client, #"{"error_rate": 7}"#).status == .unprocessableContent)
            #expect(try await self.put(client, #"[1]"#).status == .badRequest)
            #expect(try await client.execute(uri: "/admin/faults", method: .put, headers: [.authorization: "Bearer \(Self.token)"],
                                             body: ByteBuffer(string: "{}")).status == .unsupportedMediaType)
            // Nothing was applied by any of them.
            #expect(kit.faults.current == nil)
            #expect(self.metric(kit, #"fault_injections_total{kind="error"} 0"#))
        }
    }

    @Test func anErrorFaultAnswersItsStatusOnItsRoutesOnlyAndShowsEverywhere() async throws {
        try await self.withApplication { client, kit in
            let applied = try await self.put(client, #"{"error_rate": 1, "error_status": 502, "routes": ["/api/posts*"], "duration_s": 60}"#)
            #expect(applied.status == .ok)
            let fault = try #require(try jsonObject(applied.body)["fault"] as? [String: Any])
            #expect(fault["kinds"] as? [String] == ["error"])
            #expect(fault["duration_s"] as? Int == 60)
            #expect((fault["remaining_s"] as? Double).map { $0 > 58 && $0 <= 60 } == true)

            let failed = try await client.execute(uri: "/api/posts", method: .get)
            #expect(failed.status == .badGateway)
            #expect(try jsonObject(failed.body)["error"].flatMap { ($0 as? [String: Any])?["code"] as? String } == "injected_fault")
            #expect(try await client.execute(uri: "/api/users/1", method: .get).status == .ok)
            // Never the operational routes: the fault is seen and removed through them.
            #expect(try await client.execute(uri: "/health/ready", method: .get).status == .ok)
            let stats = try await client.execute(uri: "/stats", method: .get)
            #expect((try jsonObject(stats.body)["faults"] as? [String: Any])?["error_status"] as? Int == 502)
            #expect(self.metric(kit, #"faults_active{kind="error"} 1.0"#))
            #expect(self.metric(kit, #"faults_active{kind="latency"} 0.0"#))
            #expect(self.metric(kit, #"fault_injections_total{kind="error"} 1"#))
            // The injected answers are counted as any answer is.
            #expect(self.metric(kit, #"http_requests_total{method="GET",route="/api/posts",status="502"} 1"#))

            let removed = try await client.execute(uri: "/admin/faults", method: .delete, headers: [.authorization: "Bearer \(Self.token)"])
            #expect(try jsonObject(removed.body)["removed"] as? Bool == true)
            #expect(try jsonObject(removed.body)["fault"] is NSNull)
            #expect(try await client.execute(uri: "/api/posts", method: .get).status == .ok)
            #expect(try jsonObject(try await client.execute(uri: "/stats", method: .get).body)["faults"] == nil)
            #expect(self.metric(kit, #"faults_active{kind="error"} 0.0"#))
        }
    }

    @Test func latencyIsAddedAndAFaultExpiresOnTimeLeavingNothingBehind() async throws {
        try await self.withApplication { client, kit in
            // 800 ms: a request on a loaded machine can take a few hundred without any fault.
            #expect(try await self.put(client, #"{"latency_ms": 800, "duration_s": 2}"#).status == .ok)
            let start = ContinuousClock.now
            #expect(try await client.execute(uri: "/api/posts", method: .get).status == .ok)
            #expect(start.duration(to: .now) >= .milliseconds(800))
            #expect(self.metric(kit, #"faults_active{kind="latency"} 1.0"#))
            try await Task.sleep(for: .milliseconds(2000))
            let shown = try await client.execute(uri: "/admin/faults", method: .get, headers: [.authorization: "Bearer \(Self.token)"])
            #expect(try jsonObject(shown.body)["fault"] is NSNull)
            #expect(self.metric(kit, #"faults_active{kind="latency"} 0.0"#))
            let again = ContinuousClock.now
            #expect(try await client.execute(uri: "/api/posts", method: .get).status == .ok)
            #expect(again.duration(to: .now) < .milliseconds(800))
        }
    }

    @Test func aHungRequestIsAnsweredWhenItsFaultIsRemoved() async throws {
        try await self.withApplication { client, kit in
            #expect(try await self.put(client, #"{"hang": true, "routes": ["/api/posts"]}"#).status == .ok)
            let start = ContinuousClock.now
            async let hung = client.execute(uri: "/api/posts", method: .get)
            try await Task.sleep(for: .milliseconds(500))
            #expect(kit.faults.remove())
            let response = try await hung
            #expect(response.status == .serviceUnavailable)
            #expect(start.duration(to: .now) >= .milliseconds(500))
        }
    }

    @Test func aDependencyFaultSeversItsClient() async throws {
        let kit = try makeKit()
        // A port nothing listens on would fail too: the fault must fail it before any connection.
        let redis = RedisClient(configuration: RedisConfiguration(host: "127.0.0.1", port: 1), severed: kit.faults.severance(of: "cache"))
        #expect(kit.faults.dependencies == ["cache"])
        kit.faults.apply(try FaultSpec(json: ["dependency": .string("cache")], dependencies: kit.faults.dependencies))
        await #expect(throws: RedisError.self) { try await redis.get("key") }
        #expect(redis.lastError == "injected fault: cache is down")
        #expect(kit.faults.remove())
        #expect(!kit.faults.remove())
    }
}
