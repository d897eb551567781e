import Foundation
import NIOCore
import NIOPosix

/// A real `redis-server` on a free 127.0.0.1 port, started and stopped by the test.
public final class RedisServer: @unchecked Sendable {
    public let port: Int
    private var process: Process?

    static var executable: String? {
        ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    public init(port: Int? = nil) async throws {
        self.port = try port ?? Self.freePort()
        try await self.start()
    }

    public var url: String { "redis://127.0.0.1:\(self.port)" }

    public func start() async throws {
        guard let executable = Self.executable else { throw RedisServerError("redis-server is not installed") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--port", String(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        // Ready when it accepts connections.
        for _ in 0..<200 {
            if Self.accepts(port: self.port) { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw RedisServerError("redis-server did not start on \(self.port)")
    }

    /// Kills the server (SIGKILL, as a crash would) and waits until the port refuses connections.
    public func stop() async {
        guard let process = self.process else { return }
        kill(process.processIdentifier, SIGKILL)
        for _ in 0..<400 where Self.accepts(port: self.port) {
            try? await Task.sleep(for: .milliseconds(10))
        }
        self.process = nil
    }

    deinit {
        if let process = self.process { kill(process.processIdentifier, SIGKILL) }
    }

    public static func freePort() throws -> Int {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
        }
        guard bound else { throw RedisServerError("no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    public static func accepts(port: Int) -> Bool {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

public struct RedisServerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
