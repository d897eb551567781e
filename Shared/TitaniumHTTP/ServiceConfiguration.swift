import Foundation
import NIOCore
import Logging
import TitaniumLogging

/// The settings every Titanium service reads at start-up. Each service's own configuration
/// struct embeds this one and adds its own variables.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `HTTP_HOST` | 127.0.0.1 | address to listen on |
/// | `HTTP_PORT` | per service | port to listen on (0 picks a free port) |
/// | `LOG_LEVEL` | info | trace, debug, info, notice, warning, error, critical |
/// | `DATA_DIR` | ./var/data | where the service keeps its files |
/// | `INSTANCE_ID` | host name:port | this replica's name in `/stats` and logs |
/// | `HTTP_MAX_BODY_BYTES` | 1048576 | larger request bodies get 413 |
/// | `HTTP_IDLE_TIMEOUT_SECONDS` | 60 | idle keep-alive connections are closed after this |
/// | `HTTP_HEADER_TIMEOUT_SECONDS` | 10 (api-gateway 2) | a request head must arrive within this, from accept or its first byte (408) |
/// | `HTTP_BODY_IDLE_TIMEOUT_SECONDS` | 30 | a request body that stops moving this long (408), or a client not reading an answer |
/// | `HTTP_WRITE_TIMEOUT_SECONDS` | 60 (api-gateway 10); 0: none | from a request's head to the end of its answer |
/// | `HTTP_MAX_CONNECTIONS` | 4096 | open client connections at most; more wait in the listen backlog |
/// | `SHUTDOWN_DELAY_SECONDS` | 5 | after SIGTERM, `/health/ready` answers 503 `draining` and the service keeps serving this long |
/// | `SHUTDOWN_GRACE_SECONDS` | 25 | then in-flight requests are answered; the process exits within this |
/// | `HTTP_EVENT_LOOPS` | number of cores | NIO event-loop threads (server and outbound client) |
/// | `HTTP_CLIENT_CONNECT_TIMEOUT_MS` | 1000 | outbound connect timeout |
/// | `HTTP_CLIENT_READ_TIMEOUT_MS` | 2000 | outbound read timeout (no bytes for this long) |
/// | `HTTP_CLIENT_IDLE_TIMEOUT_SECONDS` | 30 | idle pooled outbound connections are closed after this |
/// | `TRACE_SAMPLE_RATIO` | 1.0 | 0 … 1: the share of new traces (a request with no `traceparent`) sampled; the decision travels in the `traceparent` sampled flag and every hop follows it (the trace store keeps 5xx and slow requests whatever it says: `TRACE_KEEP_SLOWER_THAN_MS`) |
/// | `ADMIN_TOKEN` | (none) | guards `/traces*` and `/admin/faults` (``AdminToken``); required unless `HTTP_HOST` is a loopback address |
public struct ServiceConfiguration: Sendable {
    public static let version = "0.1.0"

    public var service: String
    public var host: String
    public var port: Int
    public var logLevel: Logger.Level
    public var dataDirectory: String
    public var instance: String
    public var maxBodyBytes: Int
    public var idleTimeout: Duration
    public var limits: ConnectionLimits
    public var maxConnections: Int
    public var shutdownDelay: Duration
    public var shutdownGrace: Duration
    public var eventLoops: Int
    public var client: OutboundClientConfiguration
    public var adminToken: AdminToken
    /// `TRACE_SAMPLE_RATIO`: read here because the tracer is made before anything else.
    public var traceSampleRatio: Double

    public init(
        service: String, defaultPort: Int, settings: Settings, defaults: ServerDefaults = ServerDefaults()
    ) throws(ConfigurationError) {
        self.service = service
        self.host = settings.string("http.host", default: "127.0.0.1")
        self.port = try settings.int("http.port", default: defaultPort, range: 0...65535)
        self.logLevel = try settings.choice(
            "log.level", default: .info,
            expected: "one of trace, debug, info, notice, warning, error, critical",
            parse: Logger.Level.init(configValue:)
        )
        self.dataDirectory = settings.string("data.dir", default: "./var/data")
        self.instance = settings.string("instance.id", default: "\(ProcessInfo.processInfo.hostName):\(self.port)")
        self.maxBodyBytes = try settings.int("http.max.body.bytes", default: 1 << 20, range: 1...(1 << 30))
        self.idleTimeout = .seconds(try settings.int("http.idle.timeout.seconds", default: 60, range: 1...3600))
        func seconds(_ key: String, _ value: Int, _ range: ClosedRange<Int>) throws(ConfigurationError) -> TimeAmount {
            .seconds(Int64(try settings.int(key, default: value, range: range)))
        }
        let write = try seconds("http.write.timeout.seconds", defaults.writeTimeoutSeconds, 0...3600)
        self.limits = ConnectionLimits(
            headerTimeout: try seconds("http.header.timeout.seconds", defaults.headerTimeoutSeconds, 1...3600),
            bodyIdleTimeout: try seconds("http.body.idle.timeout.seconds", 30, 1...3600),
            idleTimeout: .nanoseconds(self.idleTimeout.nanoseconds),
            writeTimeout: write == .zero ? nil : write
        )
        self.maxConnections = try settings.int("http.max.connections", default: 4096, range: 1...1_000_000)
        self.shutdownDelay = .seconds(try settings.int("shutdown.delay.seconds", default: 5, range: 0...300))
        self.shutdownGrace = .seconds(try settings.int("shutdown.grace.seconds", default: 25, range: 1...3600))
        self.eventLoops = try settings.int("http.event.loops", default: System.coreCount, range: 1...256)
        self.client = OutboundClientConfiguration(
            connectTimeout: .milliseconds(try settings.int("http.client.connect.timeout.ms", default: 1000, range: 1...60_000)),
            readTimeout: .milliseconds(try settings.int("http.client.read.timeout.ms", default: 2000, range: 1...300_000)),
            idleTimeout: .seconds(try settings.int("http.client.idle.timeout.seconds", default: 30, range: 1...3600))
        )
        self.adminToken = try AdminToken(settings: settings, listenHost: self.host)
        self.traceSampleRatio = try settings.double("trace.sample.ratio", default: 1, range: 0...1)
    }
}

/// A service's own defaults for the server's limits (the gateway's are stricter).
public struct ServerDefaults: Sendable {
    public var headerTimeoutSeconds: Int
    /// 0: no write timeout.
    public var writeTimeoutSeconds: Int

    public init(headerTimeoutSeconds: Int = 10, writeTimeoutSeconds: Int = 60) {
        self.headerTimeoutSeconds = headerTimeoutSeconds
        self.writeTimeoutSeconds = writeTimeoutSeconds
    }
}

/// Timeouts of the pooled outbound HTTP client.
public struct OutboundClientConfiguration: Sendable {
    public var connectTimeout: Duration
    public var readTimeout: Duration
    public var idleTimeout: Duration

    public init(connectTimeout: Duration = .seconds(1), readTimeout: Duration = .seconds(2), idleTimeout: Duration = .seconds(30)) {
        self.connectTimeout = connectTimeout
        self.readTimeout = readTimeout
        self.idleTimeout = idleTimeout
    }
}
