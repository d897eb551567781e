import Foundation
import Testing
import TitaniumTrace

@testable import LoadBalancer

/// ``TraceFanOut/merge(_:)``: one trace as several stores saw it, put in call order.
@Suite struct TraceMergeTests {
    static func headline(
        span: String, parent: String?, service: String, started: Int64, ended: Int64, steps: Int = 1, user: String? = nil
    ) throws -> TraceStore.TraceHeadline {
        var object: [String: Any] = [
            "trace_id": "t1", "started_at": started, "ended_at": ended, "steps": steps, "services": [service],
            "root_route": "/route/\(service)", "root_path": "/path/\(service)", "root_method": "GET", "root_span_id": span, "status_code": 200,
        ]
        object["root_parent_span_id"] = parent
        object["user_id"] = user
        return try JSONDecoder().decode(TraceStore.TraceHeadline.self, from: try JSONSerialization.data(withJSONObject: object))
    }

    @Test func nothingMergesToNothingAndOneToItself() throws {
        #expect(TraceFanOut.merge([]) == nil)
        let one = try Self.headline(span: "a", parent: nil, service: "load-balancer", started: 100, ended: 200)
        #expect(TraceFanOut.merge([one]) == one)
    }

    /// The callee's clock may be behind the caller's: call order comes from the parent spans.
    @Test func storesAreMergedInCallOrderWhateverTheirClocksSay() throws {
        let balancer = try Self.headline(span: "a", parent: nil, service: "load-balancer", started: 100, ended: 200)
        let gateway = try Self.headline(span: "b", parent: "a", service: "api-gateway", started: 105, ended: 190, steps: 2)
        let users = try Self.headline(span: "c", parent: "b", service: "user-service", started: 99, ended: 150, user: "42")
        for order in [[users, gateway, balancer], [gateway, users, balancer], [balancer, gateway, users]] {
            let merged = try #require(TraceFanOut.merge(order))
            #expect(merged.root_span_id == "a" && merged.root_parent_span_id == nil)
            #expect(merged.root_route == "/route/load-balancer")
            #expect(merged.services == ["load-balancer", "api-gateway", "user-service"])
            #expect(merged.started_at == 99 && merged.ended_at == 200)
            #expect(merged.steps == 4)
            #expect(merged.user_id == "42")
        }
    }

    /// Roots not called from one another (their callers are outside every store): clock order.
    @Test func unrelatedRootsAreInClockOrder() throws {
        let late = try Self.headline(span: "x", parent: "outside-1", service: "blog-service", started: 300, ended: 310)
        let early = try Self.headline(span: "y", parent: "outside-2", service: "auth-service", started: 200, ended: 210)
        let merged = try #require(TraceFanOut.merge([late, early]))
        #expect(merged.root_span_id == "y")
        #expect(merged.services == ["auth-service", "blog-service"])
        #expect(merged.started_at == 200 && merged.ended_at == 310 && merged.steps == 2)
    }
}
