import NIOCore

/// The time limits of one client connection, from accept (nginx's `client_header_timeout`,
/// `client_body_timeout`, `keepalive_timeout`, `send_timeout`).
public struct ConnectionLimits: Sendable {
    /// From accept, or from the first byte of a later request, to the end of its head.
    public var headerTimeout: TimeAmount
    /// The longest a request body may stop moving, and a response wait for a client that does not read.
    public var bodyIdleTimeout: TimeAmount
    /// An idle keep-alive connection is closed after this.
    public var idleTimeout: TimeAmount
    /// From a request's head to the end of its answer; nil: no limit.
    public var writeTimeout: TimeAmount?

    public init(headerTimeout: TimeAmount, bodyIdleTimeout: TimeAmount, idleTimeout: TimeAmount, writeTimeout: TimeAmount? = nil) {
        self.headerTimeout = headerTimeout
        self.bodyIdleTimeout = bodyIdleTimeout
        self.idleTimeout = idleTimeout
        self.writeTimeout = writeTimeout
    }

    /// The timer's longest sleep: no deadline set later can come before the timer fires.
    var tick: TimeAmount {
        min(self.headerTimeout, self.bodyIdleTimeout, self.idleTimeout, self.writeTimeout ?? self.idleTimeout, ConnectionGuard.drainAfterAnswer)
    }
}

/// Why a connection was cut, the label of `http_connections_cut_total`.
public enum ConnectionCut: String, Sendable, CaseIterable {
    case headerTimeout = "header_timeout"
    case bodyTimeout = "body_timeout"
    case idleTimeout = "idle_timeout"
    case writeTimeout = "write_timeout"
    case slowReader = "slow_reader"
    case badRequest = "bad_request"
}
