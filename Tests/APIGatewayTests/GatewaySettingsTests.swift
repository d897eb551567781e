import HTTPTypes
import Testing
import TitaniumHTTP
import TitaniumProxy

@testable import APIGateway

/// The gateway's rate-limit rules and trusted proxies, as read from the environment.
@Suite struct GatewaySettingsTests {
    @Test func aRateIsCountSlashSeconds() throws {
        let (count, window) = try RateLimitRule.parse("5/60", key: "rate.limit.login")
        #expect(count == 5 && window == .seconds(60))
        #expect(try RateLimitRule.parse("1200/1", key: "k") == (1200, .seconds(1)))
        for bad in ["", "5", "5/", "/60", "0/60", "5/0", "-1/60", "a/b", "5/60/1", " 5/60", "5.5/60"] {
            #expect(throws: ConfigurationError(key: "rate.limit.login", value: bad, expected: "COUNT/SECONDS, e.g. 5/60"), "\(bad)") {
                try RateLimitRule.parse(bad, key: "rate.limit.login")
            }
        }
    }

    @Test func theDefaultRulesAndWhatTheyMatch() throws {
        let configuration = try GatewayConfiguration(settings: .fromEnvironment([:]))
        let rules = configuration.rateLimits
        #expect(rules.map(\.group) == ["login-ip", "login", "register", "post-writes"])
        #expect(rules.map(\.limit) == [20, 5, 3, 1200])
        #expect(rules.allSatisfy { $0.window == .seconds(60) })
        #expect(rules.map(\.key) == [.clientIP, .username, .clientIP, .tokenSubject])
        let byGroup = Dictionary(uniqueKeysWithValues: rules.map { ($0.group, $0) })
        let login = try #require(byGroup["login"])
        #expect(login.matches(.post, "/api/auth/login"))
        #expect(!login.matches(.get, "/api/auth/login") && !login.matches(.post, "/api/auth/login/x"))
        let register = try #require(byGroup["register"])
        #expect(register.matches(.post, "/api/users") && !register.matches(.post, "/api/users/me"))
        let writes = try #require(byGroup["post-writes"])
        for (method, path) in [(HTTPRequest.Method.post, "/api/posts"), (.patch, "/api/posts/3"), (.delete, "/api/posts/3")] {
            #expect(writes.matches(method, path), "\(method) \(path)")
        }
        for (method, path) in [(HTTPRequest.Method.get, "/api/posts"), (.post, "/api/postsX"), (.put, "/api/posts/3")] {
            #expect(!writes.matches(method, path), "\(method) \(path)")
        }
    }

    @Test func rulesAreReadFromTheEnvironmentOrTurnedOff() throws {
        let custom = try GatewayConfiguration(settings: .fromEnvironment(["RATE_LIMIT_LOGIN": "2/10", "RATE_LIMIT_POST_WRITES": "9/30"]))
        #expect(custom.rateLimits.map(\.limit) == [20, 2, 3, 9])
        #expect(custom.rateLimits.map(\.window) == [.seconds(60), .seconds(10), .seconds(60), .seconds(30)])
        #expect(try GatewayConfiguration(settings: .fromEnvironment(["RATE_LIMIT_ENABLED": "false"])).rateLimits.isEmpty)
        #expect(throws: ConfigurationError(key: "rate.limit.register", value: "3 per minute", expected: "COUNT/SECONDS, e.g. 5/60")) {
            try GatewayConfiguration(settings: .fromEnvironment(["RATE_LIMIT_REGISTER": "3 per minute"]))
        }
    }

    @Test func trustedProxiesAreCIDRsOrAddresses() throws {
        #expect(try GatewayConfiguration(settings: .fromEnvironment([:])).trustedProxies.isEmpty)
        let trusted = try GatewayConfiguration(settings: .fromEnvironment(["TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1,::1"])).trustedProxies
        #expect(trusted == ["10.0.0.0/8", "127.0.0.1", "::1"].compactMap { CIDR($0) } && trusted.count == 3)
        for bad in ["10.0.0.0/33", "10.0.0/8", "proxy.internal", "::1/128"] {
            #expect(throws: ConfigurationError(key: "trusted.proxies", value: bad, expected: "comma-separated CIDRs such as 10.0.0.0/8"), "\(bad)") {
                try GatewayConfiguration(settings: .fromEnvironment(["TRUSTED_PROXIES": "127.0.0.1,\(bad)"]))
            }
        }
    }

    @Test func aCIDRContainsItsNetworkOnly() throws {
        let network = try #require(CIDR("10.0.0.0/8"))
        #expect(network.contains("10.0.0.1") && network.contains("10.255.255.255"))
        #expect(!network.contains("11.0.0.1") && !network.contains("9.255.255.255") && !network.contains("not an address"))
        // The host bits of the written network do not matter.
        #expect(try #require(CIDR("192.168.1.77/24")).contains("192.168.1.1"))
        let single = try #require(CIDR("127.0.0.1"))
        #expect(single.contains("127.0.0.1") && !single.contains("127.0.0.2"))
        #expect(try #require(CIDR("0.0.0.0/0")).contains("203.0.113.9"))
        // IPv6 is matched as one exact address, in any case.
        let ipv6 = try #require(CIDR("FE80::1"))
        #expect(ipv6.contains("fe80::1") && !ipv6.contains("fe80::2") && !ipv6.contains("127.0.0.1"))
        for bad in ["", "256.0.0.1", "1.2.3", "1.2.3.4.5", "10.0.0.0/x", "10.0.0.0/-1", "::1/128"] {
            #expect(CIDR(bad) == nil, "\(bad)")
        }
    }

    /// The client's address is the peer's unless the peer is a trusted proxy; then the right-most
    /// `X-Forwarded-For` hop that is not itself trusted: a client cannot choose its own address.
    @Test func theClientAddressIsBelievedOnlyFromTrustedProxies() throws {
        let resolver = ClientIPResolver(trusted: [try #require(CIDR("10.0.0.0/8"))])
        #expect(resolver.resolve(peer: "203.0.113.9", forwardedFor: "198.51.100.1") == "203.0.113.9")
        #expect(resolver.resolve(peer: "10.0.0.2", forwardedFor: nil) == "10.0.0.2")
        #expect(resolver.resolve(peer: "10.0.0.2", forwardedFor: "198.51.100.1") == "198.51.100.1")
        // A spoofed first hop is passed over: the right-most untrusted hop is the client.
        #expect(resolver.resolve(peer: "10.0.0.2", forwardedFor: "1.2.3.4, 198.51.100.1, 10.0.0.3") == "198.51.100.1")
        #expect(resolver.resolve(peer: "10.0.0.2", forwardedFor: " , 10.0.0.4 ,10.0.0.3") == "10.0.0.4")
        #expect(resolver.isTrusted("10.9.9.9") && !resolver.isTrusted("11.0.0.1"))
    }
}
