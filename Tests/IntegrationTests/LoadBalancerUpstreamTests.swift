import AsyncHTTPClient
import Glibc
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdWSClient
import HummingbirdWebSocket
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOWebSocket
import ServiceLifecycle
import TestSupport
import Testing

/// The load balancer in front of a real upstream (a Hummingbird app in this process): WebSocket
/// upgrades under `/api/*` relayed to the gateway pool, and `/` proxied to a `UI_URLS` pool.
@Suite(.serialized) struct LoadBalancerUpstreamTests {
    /// An upstream standing in for a gateway replica, blog-service and a dashboard-ui pod:
    /// `/api/echo` and `/api/posts/live` echo WebSocket text with the request's `X-Request-ID`
    /// prefixed, `/` is an HTML page. It runs for `body`, which gets its port.
    static func withUpstream<T>(_ body: (Int) async throws -> T) async throws -> T {
        let webSockets = Router(context: BasicWebSocketRequestContext.self)
        for path: RouterPath in ["/api/echo", "/api/posts/live"] {
            webSockets.ws(path) { inbound, outbound, context in
                let id = context.request.headers[.init("X-Request-ID")!] ?? "-"
                for try await message in inbound.messages(maxSize: 1 << 16) {
                    guard case .text(let text) = message else { continue }
                    if text == "bye" {
                        try await outbound.close(.normalClosure, reason: "bye")
                        return
                    }
                    try await outbound.write(.text("\(id) \(text)"))
                }
            }
        }
        let router = Router()
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html"], body: .init(byteBuffer: ByteBuffer(string: "<h1>ui pod</h1>")))
        }
        router.get("/app.js") { _, _ in "console.log(1)" }
        return try await withServer(router, server: .http1WebSocketUpgrade(webSocketRouter: webSockets), body)
    }

    @Test func theGatewayRelaysWebSocketUpgradesToTheRoutesService() async throws {
        try await Self.withUpstream { upstreamPort in
            let refused = "http://127.0.0.1:\(try Ports.refused())"
            let gateway = try ServiceProcess("api-gateway", environment: [
                "BLOG_SERVICE_URL": "http://127.0.0.1:\(upstreamPort)", "AUTH_SERVICE_URL": refused, "USER_SERVICE_URL": refused,
                "RATE_LIMIT_ENABLED": "false",
            ])
            let port = try await gateway.port()
            let replies = NIOLockedValueBox<[String]>([])
            var configuration = WebSocketClientConfiguration()
            configuration.additionalHeaders[.init("X-Request-ID")!] = "gateway-relay-1"
            let settings = configuration
            _ = try await withDeadline(.seconds(20), "websocket") { try await WebSocketClient.connect(
                url: "ws://127.0.0.1:\(port)/api/posts/live", configuration: settings, logger: Logger(label: "ws-test")
            ) { inbound, outbound, _ in
                try await outbound.write(.text("hello"))
                try await outbound.write(.text("bye"))
                for try await message in inbound.messages(maxSize: 1 << 16) {
                    if case .text(let text) = message { replies.withLockedValue { $0.append(text) } }
                }
            } }
            #expect(replies.withLockedValue { $0 } == ["gateway-relay-1 hello"])
            #expect(try await gateway.terminate() == 0)
        }
    }

    @Test func webSocketUpgradesAreRelayedToTheGatewayPool() async throws {
        try await Self.withUpstream { upstreamPort in
            let refused = "http://127.0.0.1:\(try Ports.refused())"
            let balancer = try ServiceProcess("load-balancer", environment: [
                "GATEWAY_URLS": "http://127.0.0.1:\(upstreamPort)", "STATS_TARGETS": "blog-service=\(refused)",
            ])
            let port = try await balancer.port()
            let replies = NIOLockedValueBox<[String]>([])
            var headers = WebSocketClientConfiguration()
            headers.additionalHeaders[.init("X-Request-ID")!] = "relay-test-1"
            let configuration = headers
            let close = try await withDeadline(.seconds(20), "websocket") { try await WebSocketClient.connect(
                url: "ws://127.0.0.1:\(port)/api/echo", configuration: configuration, logger: Logger(label: "ws-test")
            ) { inbound, outbound, _ in
                try await outbound.write(.text("one"))
                try await outbound.write(.text("two"))
                try await outbound.write(.text("bye"))  // the upstream closes; the relay closes us
                for try await message in inbound.messages(maxSize: 1 << 16) {
                    if case .text(let text) = message { replies.withLockedValue { $0.append(text) } }
                }
            } }
            #expect(replies.withLockedValue { $0 } == ["relay-test-1 one", "relay-test-1 two"])
            #expect(close?.closeCode == .normalClosure)

            // The heartbeat is still answered by the load balancer itself, not relayed.
            let heartbeat = NIOLockedValueBox<[String]>([])
            _ = try await withDeadline(.seconds(20), "websocket") { try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/api/ws-heartbeat", logger: Logger(label: "ws-test")) { inbound, outbound, _ in
                try await outbound.write(.text("ping"))
                for try await message in inbound.messages(maxSize: 1 << 14) {
                    if case .text(let text) = message { heartbeat.withLockedValue { $0.append(text) } }
                    try await outbound.close(.normalClosure, reason: nil)
                }
            } }
            #expect(heartbeat.withLockedValue { $0 } == ["pong"])
            #expect(try await balancer.terminate() == 0)
        }
    }

    @Test func unreachableGatewayClosesTheClientSocket() async throws {
        let refused = "http://127.0.0.1:\(try Ports.refused())"
        let balancer = try ServiceProcess("load-balancer", environment: ["GATEWAY_URLS": refused, "STATS_TARGETS": "blog-service=\(refused)"])
        let port = try await balancer.port()
        let close = try await withDeadline(.seconds(20), "websocket") { try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/api/echo", logger: Logger(label: "ws-test")) { inbound, _, _ in
            for try await _ in inbound.messages(maxSize: 1 << 14) {}
        } }
        #expect(close?.closeCode == .unknown(1014) || close?.closeCode == .unknown(1013), "\(String(describing: close))")
        #expect(try await balancer.terminate() == 0)
    }

    @Test func dashboardIsProxiedToTheUIPoolWhenSet() async throws {
        try await Self.withUpstream { upstreamPort in
            let refused = "http://127.0.0.1:\(try Ports.refused())"
            let balancer = try ServiceProcess("load-balancer", environment: [
                "GATEWAY_URLS": refused, "STATS_TARGETS": "blog-service=\(refused)", "UI_URLS": "http://127.0.0.1:\(upstreamPort)",
            ])
            let base = "http://127.0.0.1:\(try await balancer.port())"
            try await withHTTPClient { client in
                let index = try await get(client, "\(base)/")
                #expect(index.status == HTTPResponseStatus.ok)
                #expect(index.body == "<h1>ui pod</h1>")
                #expect(try await get(client, "\(base)/app.js").body == "console.log(1)")
                // The load balancer's own routes are not proxied.
                let stats = try await get(client, "\(base)/stats")
                #expect(try json(stats.body)["service"] as? String == "load-balancer")
                #expect(try await get(client, "\(base)/health/live").status == HTTPResponseStatus.ok)
            }
            #expect(try await balancer.terminate() == 0)
        }
    }

    /// The forwarder's own answers: a gateway that accepts and never answers → 504 after the
    /// response deadline (connect 1 s + read 2 s), a declared body over the limit → 413, both in
    /// the shared error shape with the request id.
    @Test func forwarderTimesOutAHangingGatewayAndRejectsLargeBodies() async throws {
        let silent = try SilentServer()
        let balancer = try ServiceProcess("load-balancer", environment: [
            "GATEWAY_URLS": "http://127.0.0.1:\(silent.port)", "STATS_TARGETS": "blog-service=http://127.0.0.1:\(silent.port)",
            "HTTP_MAX_BODY_BYTES": "1000",
        ])
        let base = "http://127.0.0.1:\(try await balancer.port())"
        try await withHTTPClient { client in
            let start = ContinuousClock.now
            let hung = try await get(client, "\(base)/api/posts", headers: ["X-Request-ID": "fwd-504"])
            let elapsed = start.duration(to: .now)
            #expect(hung.status == .gatewayTimeout)
            #expect((try json(hung.body)["error"] as? [String: Any])?["request_id"] as? String == "fwd-504")
            #expect(elapsed >= .milliseconds(2900) && elapsed < .milliseconds(3500), "504 after \(elapsed)")

            let large = try await post(client, "\(base)/api/posts", body: String(repeating: "x", count: 2000))
            #expect(large.status.code == 413)
            #expect((try json(large.body)["error"] as? [String: Any])?["code"] != nil)
        }
        _ = silent
        #expect(try await balancer.terminate() == 0)
    }

    /// The response timeout is one timer per upstream connection, re-armed when it fires: a
    /// request on a reused connection is timed from when it was sent, not from the connection's
    /// first request. The upstream answers its first request at once and hangs on the next; the
    /// hanging one is sent 1.5 s after the first on the same connection, so a timer still armed
    /// for the first would cut it off after ≈ 1.5 s instead of the whole ≈ 3 s. Also: the trace
    /// the load balancer starts for a request without `traceparent` has a time-ordered id.
    @Test func aReusedUpstreamConnectionTimesEachRequestFromItsOwnStart() async throws {
        let peers = NIOLockedValueBox<[Int]>([])
        let router = Router(context: PeerContext.self)
        router.get("/api/once") { _, context -> String in
            let call = peers.withLockedValue { $0.append(context.peerPort ?? -1); return $0.count }
            if call > 1 { try await Task.sleep(for: .seconds(10)) }
            return "first"
        }
        router.get("/health/ready") { _, _ in "ready" }
        try await withServer(router) { upstreamPort in
            // The response deadline is connect + read timeout: 3 s.
            let balancer = try ServiceProcess("load-balancer", environment: [
                "GATEWAY_URLS": "http://127.0.0.1:\(upstreamPort)", "STATS_TARGETS": "x=http://127.0.0.1:\(upstreamPort)",
                "HTTP_CLIENT_CONNECT_TIMEOUT_MS": "1000", "HTTP_CLIENT_READ_TIMEOUT_MS": "2000",
            ])
            let connection = try RawConnection(port: try await balancer.port())
            let sentAt = UInt64(Date().timeIntervalSince1970 * 1000)
            connection.send("GET /api/once HTTP/1.1\r\nHost: lb\r\n\r\n")
            let first = connection.receive()
            #expect(first.hasPrefix("HTTP/1.1 200"))
            // A request without traceparent starts a trace here: its id begins with the time in ms.
            let traceparent = try #require(first.split(separator: "\r\n").first { $0.lowercased().hasPrefix("traceparent:") })
            let traceID = try #require(traceparent.split(separator: "-").dropFirst().first)
            let stamped = try #require(UInt64(traceID.prefix(12), radix: 16))
            #expect(stamped >= sentAt && stamped <= sentAt + 2000, "trace id \(traceID) vs \(sentAt)")
            try await Task.sleep(for: .milliseconds(1500))
            let start = ContinuousClock.now
            connection.send("GET /api/once HTTP/1.1\r\nHost: lb\r\n\r\n")
            let answer = connection.receive()
            let elapsed = start.duration(to: .now)
            #expect(answer.hasPrefix("HTTP/1.1 504"), "\(answer)")
            #expect(elapsed >= .milliseconds(2900) && elapsed < .milliseconds(3500), "504 after \(elapsed)")
            // Both requests came over one upstream connection (one peer port).
            let ports = peers.withLockedValue { $0 }
            #expect(ports.count == 2 && ports[0] == ports[1], "upstream peers \(ports)")
            #expect(try await balancer.terminate() == 0)
        }
    }

    /// The forwarder's idle timeout: a keep-alive connection stays open while it is used and is
    /// closed by the load balancer once it has been idle for `HTTP_IDLE_TIMEOUT_SECONDS`.
    @Test func forwardedConnectionsCloseAfterTheIdleTimeout() async throws {
        try await Self.withUpstream { port in
            let balancer = try ServiceProcess("load-balancer", environment: [
                "GATEWAY_URLS": "http://127.0.0.1:\(port)", "STATS_TARGETS": "x=http://127.0.0.1:\(port)", "HTTP_IDLE_TIMEOUT_SECONDS": "1",
            ])
            let connection = try RawConnection(port: try await balancer.port())
            // Three requests 0.6 s apart: 1.8 s on one connection, never idle for a whole second.
            for _ in 0..<3 {
                connection.send("GET /api/anything HTTP/1.1\r\nHost: lb\r\n\r\n")
                #expect(connection.receive().hasPrefix("HTTP/1.1 "))
                try await Task.sleep(for: .milliseconds(600))
            }
            connection.send("GET /api/anything HTTP/1.1\r\nHost: lb\r\n\r\n")
            #expect(connection.receive().hasPrefix("HTTP/1.1 "))
            let idleFrom = ContinuousClock.now
            let rest = connection.receiveUntilClosed()  // the load balancer closes the connection
            let idle = idleFrom.duration(to: .now)
            #expect(rest.closed && rest.text.isEmpty)
            #expect(idle >= .milliseconds(900) && idle < .milliseconds(2500), "closed after \(idle) idle")
            #expect(try await balancer.terminate() == 0)
        }
    }

    /// Pipelined requests on one connection, forwarded (`/api/*`) and Hummingbird's own mixed,
    /// one with a body: every one is answered, in order.
    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await Self.withUpstream { port in
            let balancer = try ServiceProcess("load-balancer", environment: [
                "GATEWAY_URLS": "http://127.0.0.1:\(port)", "STATS_TARGETS": "x=http://127.0.0.1:\(port)",
            ])
            let connection = try RawConnection(port: try await balancer.port())
            connection.send(
                "GET /api/a HTTP/1.1\r\nHost: lb\r\nX-Request-ID: p1\r\n\r\n"
                    + "GET /health/live HTTP/1.1\r\nHost: lb\r\nX-Request-ID: p2\r\n\r\n"
                    + "POST /api/b HTTP/1.1\r\nHost: lb\r\nContent-Length: 5\r\nX-Request-ID: p3\r\n\r\nhello"
                    + "GET /api/c HTTP/1.1\r\nHost: lb\r\nX-Request-ID: p4\r\n\r\n"
                    + "GET /metrics HTTP/1.1\r\nHost: lb\r\nX-Request-ID: p5\r\nConnection: close\r\n\r\n"
            )
            let answer = connection.receiveUntilClosed()
            #expect(answer.closed)
            let ids = answer.text.matches(of: /(?i)x-request-id: (p\d)/).map { String($0.1) }
            #expect(ids == ["p1", "p2", "p3", "p4", "p5"], "\(answer.text.prefix(2000))")
            #expect(answer.text.matches(of: /HTTP\/1\.1 \d{3}/).count == 5)
            #expect(try await balancer.terminate() == 0)
        }
    }
}

extension LoadBalancerUpstreamTests {
    /// An HTTP/1.0 client without keep-alive gets its forwarded answer and then the connection
    /// closes, as HTTP/1.0 expects.
    @Test func anHTTP10ClientIsClosedAfterItsAnswer() async throws {
        try await Self.withUpstream { port in
            let balancer = try ServiceProcess("load-balancer", environment: [
                "GATEWAY_URLS": "http://127.0.0.1:\(port)", "STATS_TARGETS": "x=http://127.0.0.1:\(port)",
            ])
            let connection = try RawConnection(port: try await balancer.port())
            connection.send("GET /api/old HTTP/1.0\r\nX-Request-ID: old-1\r\n\r\n")
            let answer = connection.receiveUntilClosed()
            #expect(answer.closed, "still open after: \(answer.text)")
            #expect(answer.text.hasPrefix("HTTP/1.1 404"))
            #expect(answer.text.lowercased().contains("x-request-id: old-1"))
            #expect(answer.text.lowercased().contains("connection: close"))
            #expect(try await balancer.terminate() == 0)
        }
    }
}

extension LoadBalancerUpstreamTests {
    /// The forwarder's header rules, both ways, with names in mixed case: hop-by-hop fields and
    /// those the client's `Connection` names stay behind; `X-Forwarded-For` gets the peer
    /// appended, `X-Forwarded-Proto` and `X-Forwarded-Host` are set, `Host` is the upstream's;
    /// the upstream's hop-by-hop answer fields do not reach the client (checked against what the
    /// upstream sends when asked directly, so the test cannot pass by their never being sent).
    @Test func hopByHopFieldsStayBehindAndForwardedFieldsAreSet() async throws {
        let router = Router()
        router.get("/api/headers") { request, _ -> Response in
            var seen: [String: String] = [:]
            for field in request.headers { seen[field.name.canonicalName, default: ""] += (seen[field.name.canonicalName] == nil ? "" : ",") + field.value }
            seen["host"] = request.head.authority
            let body = try JSONSerialization.data(withJSONObject: seen, options: [.sortedKeys])
            return Response(
                status: .ok,
                headers: [.contentType: "application/json", .init("Keep-Alive")!: "timeout=9", .init("Proxy-Authenticate")!: "Basic", .init("X-Visible")!: "1"],
                body: .init(byteBuffer: ByteBuffer(bytes: body))
            )
        }
        try await withServer(router) { upstreamPort in
            let balancer = try ServiceProcess("load-balancer", environment: [
                "GATEWAY_URLS": "http://127.0.0.1:\(upstreamPort)", "STATS_TARGETS": "x=http://127.0.0.1:\(upstreamPort)",
            ])
            let request = "GET /api/headers HTTP/1.1\r\nHost: front.example\r\nconnection: keep-alive, X-Drop-Me\r\nx-DROP-me: 1\r\n"
                + "Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nX-Forwarded-For: 198.51.100.7\r\n"
                + "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nx-Keep: yes\r\n\r\n"
            let direct = try RawConnection(port: upstreamPort)
            direct.send(request)
            let directAnswer = direct.receive().lowercased()
            #expect(directAnswer.contains("keep-alive: timeout=9") && directAnswer.contains("proxy-authenticate: basic"), "\(directAnswer)")

            let connection = try RawConnection(port: try await balancer.port())
            connection.send(request)
            let answer = connection.receive()
            let (head, body) = try #require(answer.split(separator: "\r\n\r\n", maxSplits: 1).map(String.init).twoParts)
            let lowered = head.lowercased()
            #expect(head.hasPrefix("HTTP/1.1 200"), "\(answer)")
            #expect(!lowered.contains("keep-alive:") && !lowered.contains("proxy-authenticate"), "\(head)")
            #expect(lowered.contains("x-visible: 1"))
            let seen = try json(body)
            // Field names as the upstream's HTTPTypes gives them: lowercase.
            #expect(seen["x-keep"] as? String == "yes", "\(seen)")
            // The load balancer trusts no client: its own X-Forwarded-* are replaced, not passed on.
            #expect(seen["x-forwarded-for"] as? String == "127.0.0.1")
            #expect(seen["x-forwarded-proto"] as? String == "http")
            #expect(seen["x-forwarded-host"] as? String == "front.example")
            #expect(seen["host"] as? String == "127.0.0.1:\(upstreamPort)")
            for dropped in ["connection", "x-drop-me", "keep-alive", "te", "proxy-authorization"] {
                #expect(seen[dropped] == nil, "\(dropped) reached the upstream: \(seen)")
            }
            #expect(try await balancer.terminate() == 0)
        }
    }
}

extension Array where Element == String {
    /// The two elements of a two-element array.
    var twoParts: (String, String)? { self.count == 2 ? (self[0], self[1]) : nil }
}

/// A plain TCP connection to 127.0.0.1, for what an HTTP client library hides (pipelining, who
/// closes the connection and when). Reads time out after 4 s.
final class RawConnection {
    let socket: Int32

    init(port: Int) throws {
        self.socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(self.socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw ProcessFailure("connect to 127.0.0.1:\(port) failed: errno \(errno)") }
        var timeout = timeval(tv_sec: 4, tv_usec: 0)
        setsockopt(self.socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(self.socket) }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(self.socket, $0.baseAddress, $0.count, 0) }
    }

    /// What one read returns ("" when the peer closed or nothing came within the timeout).
    func receive() -> String {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = recv(self.socket, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : ""
    }

    /// Everything until the peer closes (`closed`) or a read times out.
    func receiveUntilClosed() -> (text: String, closed: Bool) {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(self.socket, &buffer, buffer.count, 0)
            if count == 0 { return (String(decoding: data, as: UTF8.self), true) }
            if count < 0 { return (String(decoding: data, as: UTF8.self), false) }
            data.append(contentsOf: buffer[0..<count])
        }
    }
}

/// A request context that knows the peer's address (which upstream connection a request came on).
struct PeerContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let peerPort: Int?

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.peerPort = source.channel.remoteAddress?.port
    }
}
