import Foundation
import Synchronization

/// Ports on 127.0.0.1 for the tests, which run concurrently and start servers on ports of
/// their own.
public enum Ports {
    /// A port nothing was bound to a moment ago, for a server the test starts right away (until
    /// then another test's server may take it).
    public static func free() throws -> Int {
        let (socket, port) = try Self.bindLoopback()
        close(socket)
        return port
    }

    /// A port where every connection is refused, for an upstream, a Redis or a database that is
    /// down: this test process keeps it bound without listening for as long as it runs, so no
    /// other server can take it (a port that is merely free can be, and a test expecting a
    /// refusal then gets some other server's silence).
    public static func refused() throws -> Int {
        try Self.reserved.withLock { reserved in
            if let reserved { return reserved }
            let (_, port) = try Self.bindLoopback()  // the socket stays open on purpose
            reserved = port
            return port
        }
    }

    /// Whether something accepts connections on `port`.
    public static func accepts(_ port: Int) -> Bool {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = Self.loopback(port: 0)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    private static let reserved = Mutex<Int?>(nil)

    private static func bindLoopback() throws -> (socket: Int32, port: Int) {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { throw ProcessFailure("socket: errno \(errno)") }
        var address = Self.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
        }
        guard bound else {
            close(socket)
            throw ProcessFailure("no free port on 127.0.0.1: errno \(errno)")
        }
        return (socket, Int(UInt16(bigEndian: address.sin_port)))
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return address
    }
}
