import HTTPTypes
import Hummingbird
import NIOCore

/// `ADMIN_TOKEN`: what guards the operator routes on every service (`/traces*`, `/admin/faults`).
/// When set, those routes require `Authorization: Bearer <token>`. It may be left unset only on a
/// loopback `HTTP_HOST`: off loopback the routes would show user ids and client addresses, and
/// let anyone break the service, to whoever can reach the port.
public struct AdminToken: Sendable, Equatable {
    public var value: String?

    public init(_ value: String?) {
        self.value = value.flatMap { $0.isEmpty ? nil : $0 }
    }

    public init(settings: Settings, listenHost: String) throws(ConfigurationError) {
        self.init(settings.optionalString("admin.token"))
        if self.value == nil, !Self.isLoopback(listenHost) {
            throw ConfigurationError(
                key: "admin.token", value: "",
                expected: "a token, because HTTP_HOST=\"\(listenHost)\" is not a loopback address (the /traces and /admin routes show user ids and client addresses, and inject faults)"
            )
        }
    }

    /// The header an outbound call to another service's guarded routes carries.
    public var authorizationHeader: [(String, String)] {
        self.value.map { [("Authorization", "Bearer \($0)")] } ?? []
    }

    /// 401 unless the request carries `Bearer <token>` (when one is configured).
    /// - Parameter routes: what the message names, e.g. "the trace routes".
    public func authorize(_ request: Request, routes: String) throws {
        guard let token = self.value else { return }
        let presented = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil } ?? ""
        // Compared in time independent of where the first difference is.
        let a = Array(presented.utf8), b = Array(token.utf8)
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<min(a.count, b.count) { difference |= a[index] ^ b[index] }
        guard difference == 0 else {
            throw APIError(.unauthorized, message: "\(routes) require the admin token (Authorization: Bearer ...)",
                           headers: [.wwwAuthenticate: "Bearer"])
        }
    }

    /// `localhost`, 127.0.0.0/8 or `::1` (in any spelling, bracketed or not).
    static func isLoopback(_ host: String) -> Bool {
        if host.lowercased() == "localhost" { return true }
        let literal = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        guard let address = try? SocketAddress(ipAddress: literal, port: 0), let text = address.ipAddress else { return false }
        switch address.protocol {
        case .inet: return text.hasPrefix("127.")
        case .inet6: return text == "::1"
        default: return false
        }
    }
}
