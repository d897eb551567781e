import AsyncHTTPClient
import Foundation
import HummingbirdWSClient
import Logging
import NIOConcurrencyHelpers
import NIOWebSocket
import TestSupport
import Testing

/// The load balancer's WebSocket heartbeat: answered, counted as activity, closed after silence.
@Suite(.serialized) struct HeartbeatTests {
    @Test func heartbeatAnswersCountsAndClosesAfterSilence() async throws {
        let refused = "http://127.0.0.1:\(try Ports.refused())"
        let balancer = try ServiceProcess("load-balancer", environment: [
            "GATEWAY_URLS": refused, "STATS_TARGETS": "blog-service=\(refused)", "HEARTBEAT_SILENCE_SECONDS": "2",
        ])
        let port = try await balancer.port()
        try await withHTTPClient { client in
            #expect(try json(try await get(client, "http://127.0.0.1:\(port)/stats").body)["has_real_traffic"] as? Bool == false)

            let replies = NIOLockedValueBox<[String]>([])
            let start = ContinuousClock.now
            let close = try await withDeadline(.seconds(20), "websocket") { try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/api/ws-heartbeat", logger: Logger(label: "ws-test")) { inbound, outbound, _ in
                try await outbound.write(.text("ping"))
                try await outbound.write(.text("hb"))
                for try await message in inbound.messages(maxSize: 1 << 14) {
                    if case .text(let text) = message { replies.withLockedValue { $0.append(text) } }
                }
            } }
            let open = start.duration(to: .now)
            #expect(replies.withLockedValue { $0 } == ["pong", "ok"])
            #expect(close?.closeCode == .normalClosure)
            #expect(open >= .seconds(2) && open < .seconds(4), "closed after \(open)")

            try await Task.sleep(for: .milliseconds(1100))  // past the 1 s reuse of /stats
            #expect(try json(try await get(client, "http://127.0.0.1:\(port)/stats").body)["has_real_traffic"] as? Bool == true)
        }
        #expect(try await balancer.terminate() == 0)
    }
}
