// The least an HTTP/1 proxy on SwiftNIO does, to measure the floor under the load balancer's
// forwarder (`PARTS=floor` in Benchmarks/proxy/run.sh). Not a component of Titanium.
//
// Each client connection gets one keep-alive upstream connection of its own, on the same event
// loop, opened when the client connects (like nginx's `keepalive 64` in front of wrk's 64
// connections, but with no pool to look in). Request and response parts are relayed as NIOHTTP1
// decodes them: `Connection` dropped from the request, nothing else looked at. No routing,
// balancing, timeouts, metrics, logs or traces; no error answers (a failed upstream closes the
// client connection).
//
// With `tcp` it relays bytes instead, parsing nothing: what SwiftNIO's channels and the kernel
// cost alone, below any HTTP proxy.
//
//   proxy-floor http|tcp LISTEN_PORT UPSTREAM_PORT [EVENT_LOOPS]     (127.0.0.1 both)
import NIOCore
import NIOHTTP1
import NIOPosix

final class ClientSide: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let upstreamAddress: SocketAddress
    private var upstream: (any Channel)?
    private var waiting: [HTTPClientRequestPart] = []
    fileprivate var context: ChannelHandlerContext?

    init(upstreamAddress: SocketAddress) { self.upstreamAddress = upstreamAddress }

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        ClientBootstrap(group: context.eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(enableOutboundHeaderValidation: false)
                    try channel.pipeline.syncOperations.addHandler(UpstreamSide(client: self))
                }
            }
            .connect(to: self.upstreamAddress)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    // The client left while this connected.
                    guard self.context != nil else { return channel.close(promise: nil) }
                    self.upstream = channel
                    for part in self.waiting { channel.write(part, promise: nil) }
                    self.waiting.removeAll()
                    channel.flush()
                case .failure:
                    self.context?.close(promise: nil)
                }
            }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.upstream?.close(promise: nil)
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(var head):
            head.headers.remove(name: "connection")
            self.send(.head(head), flush: false)
        case .body(let bytes):
            self.send(.body(.byteBuffer(bytes)), flush: false)
        case .end(let trailers):
            self.send(.end(trailers), flush: true)
        }
    }

    private func send(_ part: HTTPClientRequestPart, flush: Bool) {
        guard let upstream = self.upstream else {
            self.waiting.append(part)
            return
        }
        if flush { upstream.writeAndFlush(part, promise: nil) } else { upstream.write(part, promise: nil) }
    }
}

final class UpstreamSide: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    let client: ClientSide

    init(client: ClientSide) { self.client = client }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let out = self.client.context else { return }
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            out.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        case .body(let bytes):
            out.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(bytes))), promise: nil)
        case .end(let trailers):
            out.writeAndFlush(NIOAny(HTTPServerResponsePart.end(trailers)), promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.client.context?.close(promise: nil)
        context.fireChannelInactive()
    }
}

/// Bytes from one channel written to its peer as they come, flushed once per read burst.
final class Relay: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    var peer: (any Channel)?
    private var waiting: [ByteBuffer] = []
    private var open = true

    func connected(to peer: any Channel) {
        guard self.open else { return peer.close(promise: nil) }  // the client left while this connected
        self.peer = peer
        for bytes in self.waiting { peer.write(bytes, promise: nil) }
        self.waiting.removeAll()
        peer.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = self.unwrapInboundIn(data)
        if let peer = self.peer { peer.write(bytes, promise: nil) } else { self.waiting.append(bytes) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.peer?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.open = false
        self.peer?.close(promise: nil)
        context.fireChannelInactive()
    }
}

final class TCPClientSide: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    let upstreamAddress: SocketAddress
    let relay = Relay()

    init(upstreamAddress: SocketAddress) { self.upstreamAddress = upstreamAddress }

    func handlerAdded(context: ChannelHandlerContext) {
        let client = context.channel
        let back = Relay()
        back.peer = client
        ClientBootstrap(group: context.eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(back) }
            }
            .connect(to: self.upstreamAddress)
            .whenComplete { result in
                switch result {
                case .success(let upstream): self.relay.connected(to: upstream)
                case .failure: client.close(promise: nil)
                }
            }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { self.relay.channelRead(context: context, data: data) }
    func channelReadComplete(context: ChannelHandlerContext) { self.relay.channelReadComplete(context: context) }
    func channelInactive(context: ChannelHandlerContext) { self.relay.channelInactive(context: context) }
}

let arguments = CommandLine.arguments
guard arguments.count >= 4, ["http", "tcp"].contains(arguments[1]), let listenPort = Int(arguments[2]),
    let upstreamPort = Int(arguments[3])
else {
    print("usage: proxy-floor http|tcp LISTEN_PORT UPSTREAM_PORT [EVENT_LOOPS]")
    exit(2)
}
let relayBytes = arguments[1] == "tcp"
let loops = arguments.count > 4 ? Int(arguments[4]) ?? System.coreCount : System.coreCount
let upstreamAddress = try SocketAddress(ipAddress: "127.0.0.1", port: upstreamPort)
let group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
let server = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 256)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            if relayBytes {
                try channel.pipeline.syncOperations.addHandler(TCPClientSide(upstreamAddress: upstreamAddress))
            } else {
                // As lean as Hummingbird's own HTTP/1 setup (which the load balancer's forwarder
                // sits in): no pipelining assistance (wrk never pipelines), no error handler, no
                // outbound header validation.
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                    withPipeliningAssistance: false, withErrorHandling: false, withOutboundHeaderValidation: false
                )
                try channel.pipeline.syncOperations.addHandler(ClientSide(upstreamAddress: upstreamAddress))
            }
        }
    }
    .bind(host: "127.0.0.1", port: listenPort)
    .wait()
print("proxy-floor (\(arguments[1])) on 127.0.0.1:\(listenPort) → 127.0.0.1:\(upstreamPort), \(loops) event loops")
try server.closeFuture.wait()
