/// Where Redis is and how long to wait for it.
public struct RedisConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var password: String?
    public var database: Int
    /// Connecting gives up after this long.
    public var connectTimeout: Duration
    /// A command (send and reply) gives up after this long.
    public var commandTimeout: Duration
    /// After a failure, no new connection is tried for this long: calls fail fast instead of
    /// each waiting for the connect timeout while Redis is down.
    public var reconnectInterval: Duration
    /// Connections kept open, and threads running the blocking hiredis calls.
    public var poolSize: Int

    public init(
        host: String = "127.0.0.1", port: Int = 6379, password: String? = nil, database: Int = 0,
        connectTimeout: Duration = .milliseconds(250), commandTimeout: Duration = .milliseconds(250),
        reconnectInterval: Duration = .seconds(1), poolSize: Int = 4
    ) {
        self.host = host
        self.port = port
        self.password = password
        self.database = database
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.reconnectInterval = reconnectInterval
        self.poolSize = poolSize
    }

    /// The form ``init(url:)`` reads, as a configuration error states it.
    public static let urlForm = "redis://[:password@]host[:port][/db]"

    /// Parses `redis://[:password@]host[:port][/database]`.
    public init?(url: String) {
        guard url.hasPrefix("redis://") else { return nil }
        var rest = Substring(url.dropFirst("redis://".count))
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            password = credentials.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).last.map(String.init)
            if password?.isEmpty == true { password = nil }
            rest = rest[rest.index(after: at)...]
        }
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            if !path.isEmpty {
                guard let number = Int(path), number >= 0 else { return nil }
                database = number
            }
            rest = rest[..<slash]
        }
        var port = 6379
        if let colon = rest.lastIndex(of: ":") {
            guard let number = Int(rest[rest.index(after: colon)...]), (1...65535).contains(number) else { return nil }
            port = number
            rest = rest[..<colon]
        }
        guard !rest.isEmpty else { return nil }
        self.init(host: String(rest), port: port, password: password, database: database)
    }
}
