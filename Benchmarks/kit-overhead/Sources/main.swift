import Foundation
import Hummingbird
import TitaniumHTTP
import TitaniumLogging
import Logging

// Serves GET /bench two ways for a side-by-side wrk run:
//   kit-overhead-server bare PORT   Hummingbird router, no middleware
//   kit-overhead-server kit  PORT   the Titanium kit: metrics, JSON access log, tracing, request id
let arguments = CommandLine.arguments
if arguments.count > 1 && arguments[1] == "micro" {
    func time(_ name: String, _ n: Int = 1_000_000, _ body: () -> Void) {
        let start = ContinuousClock.now
        for _ in 0..<n { body() }
        let elapsed = start.duration(to: .now)
        print(name, Double(elapsed.components.attoseconds) / 1e9 / Double(n) + Double(elapsed.components.seconds) * 1e9 / Double(n), "ns")
    }
    var sinkCount = 0
    time("rfc3339") { sinkCount &+= RFC3339.now().utf8.count }
    let entry = AccessLog.Entry(requestID: "0123456789abcdef0123456789abcdef", traceID: "0123456789abcdef0123456789abcdef", spanID: "0123456789abcdef", method: "GET", route: "/bench", path: "/bench", status: 200, durationMicroseconds: 1234, bytes: 2, clientIP: "127.0.0.1", userAgent: "wrk")
    nonisolated(unsafe) var discarded = 0
    let discard = AccessLog(service: "kit-bench", level: .info, sink: LogSink(write: { discarded &+= $0.count }))
    time("accesslog-discard") { discard.write(entry) }
    let buffered = BufferedLogWriter(fileDescriptor: open("/dev/null", O_WRONLY))
    let toNull = AccessLog(service: "kit-bench", level: .info, sink: LogSink(write: { buffered.append($0) }))
    time("accesslog-buffered") { toNull.write(entry) }
    time("requestid") { sinkCount &+= RequestID.make().utf8.count }
    print(sinkCount)
    exit(0)
}
guard arguments.count == 3, let port = Int(arguments[2]), ["bare", "noop", "kit"].contains(arguments[1]) else {
    print("usage: kit-overhead-server bare|noop|kit PORT")
    exit(2)
}

if arguments[1] == "bare" {
    let router = Router()
    router.get("/bench") { _, _ in "ok" }
    let app = Application(
        router: router,
        server: .http1(configuration: .init(idleTimeout: .seconds(60))),
        configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "bare")
    )
    try await app.runService()
} else if arguments[1] == "noop" {
    // The kit's request context and one pass-through middleware: the floor any middleware pays.
    struct PassThrough<Context: RequestContext>: RouterMiddleware {
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            try await next(request, context)
        }
    }
    let router = Router(context: TitaniumRequestContext.self)
    router.add(middleware: PassThrough())
    router.get("/bench") { _, _ in "ok" }
    let app = Application(
        router: router,
        server: .http1(configuration: .init(idleTimeout: .seconds(60))),
        configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "noop")
    )
    try await app.runService()
} else {
    setenv("HTTP_PORT", String(port), 1)
    await ServiceMain.run(service: "kit-bench", defaultPort: port) { kit, _ in
        let router = kit.makeRouter()
        router.get("/bench") { _, _ in "ok" }
        return kit.makeApplication(router: router)
    }
}
