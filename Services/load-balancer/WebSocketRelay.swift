import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWSClient
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import TitaniumHTTP

/// WebSocket upgrades under `/api/*` (other than the heartbeat, which the load balancer answers
/// itself) are relayed to a gateway from the pool: the client's socket is accepted, a socket
/// to the same path on the backend is opened, and messages are copied both ways until either
/// side closes, which closes the other. A backend that cannot be reached closes the client's
/// socket with 1014 (bad gateway).
struct WebSocketRelay: Sendable {
    let pool: BackendPool
    let logger: Logger
    var maxMessageBytes = 1 << 20

    /// Headers the relay never copies: hop-by-hop, and the handshake the client makes anew.
    static let notCopied: Set<String> = [
        "connection", "upgrade", "host", "keep-alive", "te", "trailer", "transfer-encoding", "content-length",
        "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-accept",
    ]

    func register(on router: Router<BasicWebSocketRequestContext>) {
        router.ws("/api/**") { inbound, outbound, context in
            guard let (index, base) = self.pool.acquireBackend() else {
                try await outbound.close(.unknown(1013), reason: "no healthy api-gateway")
                return
            }
            let request = context.request
            let url = (base.hasPrefix("https://") ? "wss://" + base.dropFirst(8) : "ws://" + base.dropFirst(7)) + request.uri.string
            var configuration = WebSocketClientConfiguration(maxFrameSize: self.maxMessageBytes)
            for field in request.headers where !Self.notCopied.contains(field.name.canonicalName) {
                configuration.additionalHeaders.append(field)
            }
            var failed = false
            do {
                try await WebSocketClient.connect(url: url, configuration: configuration, logger: self.logger) { upstreamIn, upstreamOut, _ in
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for try await message in upstreamIn.messages(maxSize: self.maxMessageBytes) {
                                try await outbound.write(message.frame)
                            }
                            try? await outbound.close(.normalClosure, reason: "backend closed")
                        }
                        group.addTask {
                            for try await message in inbound.messages(maxSize: self.maxMessageBytes) {
                                try await upstreamOut.write(message.frame)
                            }
                            try? await upstreamOut.close(.normalClosure, reason: "client closed")
                        }
                        try await group.waitForAll()
                    }
                }
            } catch {
                failed = true
                self.logger.warning("websocket relay failed", metadata: ["url": .string(url), "error": .string("\(error)")])
                try? await outbound.close(.unknown(1014), reason: "api-gateway unreachable")
            }
            self.pool.release(index, failed: failed)
        }
    }
}

extension WebSocketMessage {
    /// The same message, to write to the other side.
    var frame: WebSocketOutboundWriter.OutboundFrame {
        switch self {
        case .text(let text): .text(text)
        case .binary(let bytes): .binary(bytes)
        }
    }
}
