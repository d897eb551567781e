import Testing
import TestSupport
import TitaniumHTTP

@testable import LoadBalancer

/// The load balancer's settings: the gateway pool's checks and ejection keep their old values by
/// default, and a bad value is refused naming its variable.
@Suite struct LoadBalancerConfigurationTests {
    static func configuration(_ environment: [String: String]) throws -> LoadBalancerConfiguration {
        let kit = try makeTestKit(service: "load-balancer")
        return try LoadBalancerConfiguration(common: kit.configuration, settings: .fromEnvironment(environment))
    }

    @Test func defaults() throws {
        let configuration = try Self.configuration([:])
        #expect(configuration.gatewayURLs == ["http://127.0.0.1:7200"])
        #expect(configuration.statsTargets.map(\.name) == ["api-gateway", "auth-service", "user-service", "blog-service"])
        #expect(configuration.chartJSPath == "/usr/share/javascript/chart.js/chart.min.js")
        #expect(configuration.heartbeatSilence == .seconds(60))
        let backends = configuration.backends
        #expect(backends.interval == .seconds(2) && backends.checkTimeout == .seconds(1))
        #expect(backends.rise == 2 && backends.fall == 3 && backends.ejectAfter == 5 && backends.ejectFor == .seconds(30))
    }

    @Test func settingsAreRead() throws {
        let configuration = try Self.configuration([
            "BACKEND_CHECK_INTERVAL_MS": "500", "BACKEND_CHECK_TIMEOUT_MS": "250", "BACKEND_RISE": "1", "BACKEND_FALL": "4",
            "BACKEND_EJECT_AFTER": "7", "BACKEND_EJECT_SECONDS": "9", "CHARTJS_PATH": "/srv/chart.js", "HEARTBEAT_SILENCE_SECONDS": "5",
        ])
        let backends = configuration.backends
        #expect(backends.interval == .milliseconds(500) && backends.checkTimeout == .milliseconds(250))
        #expect(backends.rise == 1 && backends.fall == 4 && backends.ejectAfter == 7 && backends.ejectFor == .seconds(9))
        #expect(configuration.chartJSPath == "/srv/chart.js")
        #expect(configuration.heartbeatSilence == .seconds(5))
    }

    @Test(arguments: [
        ("BACKEND_RISE", "0"), ("BACKEND_CHECK_INTERVAL_MS", "fast"), ("BACKEND_EJECT_SECONDS", "99999"),
        ("STATS_TARGETS", "blog-service"), ("GATEWAY_URLS", "ftp://x"),
    ])
    func aBadValueIsRefusedByName(variable: String, value: String) throws {
        let error = try #require(throws: ConfigurationError.self) { try Self.configuration([variable: value]) }
        #expect(error.description.contains(variable), "\(error.description)")
    }
}
