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
/// | `HTTP_EVENT_LOOPS` | number of cores | NIO event-loop threads (server and outbound client) |
/// | `HTTP_CLIENT_CONNECT_TIMEOUT_MS` | 1000 | outbound connect timeout |
/// | `HTTP_CLIENT_READ_TIMEOUT_MS` | 2000 | outbound read timeout (no bytes for this long) |
/// | `HTTP_CLIENT_IDLE_TIMEOUT_SECONDS` | 30 | idle pooled outbound connections are closed after this |
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
    public var eventLoops: Int
    public var client: OutboundClientConfiguration

    public init(service: String, defaultPort: Int, settings: Settings) throws(ConfigurationError) {
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
        self.eventLoops = try settings.int("http.event.loops", default: System.coreCount, range: 1...256)
        self.client = OutboundClientConfiguration(
            connectTimeout: .milliseconds(try settings.int("http.client.connect.timeout.ms", default: 1000, range: 1...60_000)),
            readTimeout: .milliseconds(try settings.int("http.client.read.timeout.ms", default: 2000, range: 1...300_000)),
            idleTimeout: .seconds(try settings.int("http.client.idle.timeout.seconds", default: 30, range: 1...3600))
        )
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
