import Logging
import Testing

@testable import TitaniumProxy

/// The forwarder's "upstream failed" warnings: one per upstream per second, the rest counted.
@Suite struct FailureLogTests {
    @Test func oneLinePerUpstreamPerIntervalAndTheRestCounted() {
        let log = FailureLog(logger: Logger(label: "test"), interval: .seconds(1))
        let start = ContinuousClock.now
        #expect(log.admit("api-gateway", now: start) == 0)
        // 50 more failures within the second: none logged.
        for step in 1...50 {
            #expect(log.admit("api-gateway", now: start + .milliseconds(step * 19)) == nil)
        }
        // Another upstream has its own second.
        #expect(log.admit("blog-service", now: start + .milliseconds(500)) == 0)
        // A second on: one line, saying how many were left out.
        #expect(log.admit("api-gateway", now: start + .milliseconds(1000)) == 50)
        #expect(log.admit("api-gateway", now: start + .milliseconds(1001)) == nil)
        #expect(log.admit("api-gateway", now: start + .milliseconds(2500)) == 1)
    }
}
