import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOConcurrencyHelpers
import NIOCore
import TestSupport
import Testing
import TitaniumHTTP

@testable import LoadBalancer

/// The load balancer's router in this process: `/stats` and the merged `/traces*`, with
/// stand-in services on free ports.
@Suite struct LoadBalancerRouterTests {
    static func withLoadBalancer(
        _ environment: [String: String], _ test: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let kit = try makeTestKit(service: "load-balancer", environment: environment)
        let refused = "http://127.0.0.1:\(try Ports.refused())"
        let settings = Settings.fromEnvironment(
            ["GATEWAY_URLS": refused, "STATS_TARGETS": "auth-service=\(refused)", "DASHBOARD_DIR": "/nonexistent"].merging(environment) { $1 }
        )
        let configuration = try LoadBalancerConfiguration(common: kit.configuration, settings: settings)
        let client = kit.makeHTTPClient()
        let pool = BackendPool(urls: configuration.gatewayURLs, client: client.client, logger: kit.logger, settings: configuration.backends)
        let router = buildRouter(kit: kit, configuration: configuration, client: client, backends: pool, heartbeat: Heartbeat())
        try await kit.makeApplication(router: router, services: [client]).test(.router, test)
    }

    @Test func statsGathersEveryTargetAndEveryPollerSharesOneFanOut() async throws {
        let blogCalls = NIOLockedValueBox(0)
        let users = StatsAggregatorTests.service("user-service", ["database": "ONLINE", "cache": "OFFLINE"])
        try await withServer(users) { userPort in
            try await withServer(StatsAggregatorTests.service("blog-service", ["database": "ONLINE"], calls: blogCalls)) { blogPort in
                let refused = try Ports.refused()
                let targets = "user-service=http://127.0.0.1:\(userPort),blog-service=http://127.0.0.1:\(blogPort),auth-service=http://127.0.0.1:\(refused)"
                try await Self.withLoadBalancer(["STATS_TARGETS": targets, "GATEWAY_URLS": "http://127.0.0.1:\(refused)"]) { client in
                    let answer = try await client.execute(uri: "/stats", method: .get)
                    #expect(answer.status == .ok)
                    #expect(answer.headers[.cacheControl] == "no-store")
                    let stats = try answer.jsonObject
                    func status(_ key: String) -> String? { (stats[key] as? [String: Any])?["status"] as? String }
                    #expect(stats["service"] as? String == "load-balancer")
                    let services = try #require(stats["services"] as? [[String: Any]])
                    #expect(services.map { $0["name"] as? String } == ["user-service", "blog-service", "auth-service"])
                    #expect(services.map { $0["status"] as? String } == ["ONLINE", "ONLINE", "OFFLINE"])
                    // A cache OFFLINE anywhere is a degraded system even with every service up.
                    #expect(status("system") == "degraded")
                    #expect(status("database") == "ONLINE" && status("cache") == "OFFLINE")
                    #expect(stats["active_services"] as? Int == 3 && stats["total_services"] as? Int == 4)
                    #expect((stats["backends"] as? [[String: Any]])?.map { $0["url"] as? String } == ["http://127.0.0.1:\(refused)"])

                    // Within a second, however many ask at once, the targets are asked once.
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for _ in 0..<8 {
                            group.addTask {
                                let answer = try await client.execute(uri: "/stats", method: .get)
                                #expect(answer.status == .ok)
                            }
                        }
                        try await group.waitForAll()
                    }
                    #expect(blogCalls.withLockedValue { $0 } == 1)
                    try await Task.sleep(for: .milliseconds(1100))
                    _ = try await client.execute(uri: "/stats", method: .get)
                    #expect(blogCalls.withLockedValue { $0 } == 2)
                }
            }
        }
    }

    @Test func theTraceRoutesAskForTheAdminTokenAndReportEverySource() async throws {
        try await Self.withLoadBalancer(["ADMIN_TOKEN": "s3cret"]) { client in
            let anonymous = try await client.execute(uri: "/traces/recent", method: .get)
            #expect(anonymous.status == .unauthorized)
            #expect(try anonymous.apiError().code == "unauthorized")
            let admin: HTTPFields = [.authorization: "Bearer s3cret"]
            let recent = try await client.execute(uri: "/traces/recent", method: .get, headers: admin)
            #expect(recent.status == .ok)
            let sources = try #require(try recent.jsonObject["sources"] as? [[String: Any]])
            #expect(sources.map { $0["name"] as? String } == ["auth-service"])
            #expect(sources.first?["status"] as? String == "OFFLINE")
            #expect(try recent.jsonObject["traces"] as? [Any] != nil)
            // No source has it: 404 rather than an empty tree.
            let missing = try await client.execute(uri: "/traces/4bf92f3577b34da6a3ce929d0e0e4736", method: .get, headers: admin)
            #expect(missing.status == .notFound)
            #expect(try missing.apiError().message == "no service has recorded trace 4bf92f3577b34da6a3ce929d0e0e4736")
            #expect(try await client.execute(uri: "/traces/recent?limit=0", method: .get, headers: admin).status == .badRequest)
        }
    }
}
