import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import NIOWebSocket
import Synchronization
import TitaniumMetrics
import TitaniumProxy

/// `GET /api/ws-heartbeat`: a WebSocket the dashboard keeps open with `"hb"` every 5 s. Every
/// message counts as activity for `has_real_traffic`; `"ping"` (or any text) is answered; the
/// socket is closed after `silence` without a message.
final class Heartbeat: Sendable {
    let silence: Duration
    private let lastMessageNanos = Atomic<UInt64>(0)

    init(silence: Duration = .seconds(60)) {
        self.silence = silence
    }

    /// Whether a heartbeat message arrived within `window`.
    func isActive(within window: Duration, now: UInt64 = TrafficWindow.monotonicNanos()) -> Bool {
        let last = self.lastMessageNanos.load(ordering: .relaxed)
        return last != 0 && now &- last < UInt64(window.components.seconds) * 1_000_000_000
    }

    func makeRouter() -> Router<WebSocketRelayContext> {
        let router = Router(context: WebSocketRelayContext.self)
        router.ws("/api/ws-heartbeat") { inbound, outbound, _ in
            let lastSeen = Clock()
            let silence = self.silence
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Closes the socket once nothing has arrived for `silence`.
                group.addTask {
                    let limit = UInt64(silence.components.seconds) * 1_000_000_000
                    while true {
                        try await Task.sleep(for: .milliseconds(250))
                        if TrafficWindow.monotonicNanos() &- lastSeen.nanos.load(ordering: .relaxed) >= limit {
                            try await outbound.close(.normalClosure, reason: "no heartbeat for \(silence)")
                            return
                        }
                    }
                }
                for try await message in inbound.messages(maxSize: 1 << 14) {
                    let now = TrafficWindow.monotonicNanos()
                    lastSeen.nanos.store(now, ordering: .relaxed)
                    self.lastMessageNanos.store(now, ordering: .relaxed)
                    if case .text(let text) = message {
                        try await outbound.write(.text(text == "ping" ? "pong" : "ok"))
                    }
                }
                group.cancelAll()
            }
        }
        return router
    }
}

/// The last time one connection heard from its client.
private final class Clock: Sendable {
    let nanos = Atomic<UInt64>(TrafficWindow.monotonicNanos())
}
