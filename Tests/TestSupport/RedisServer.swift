import Foundation

/// A real `redis-server` on a free 127.0.0.1 port, started and stopped by the test, killed
/// with the object.
public final class RedisServer: @unchecked Sendable {
    public let port: Int
    private var process: ChildProcess?

    static var executable: String? {
        ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    public init(port: Int? = nil) async throws {
        self.port = try port ?? Ports.free()
        try await self.start()
    }

    public var url: String { "redis://127.0.0.1:\(self.port)" }

    public func start() async throws {
        guard let executable = Self.executable else { throw RedisServerError("redis-server is not installed") }
        self.process = try ChildProcess([executable, "--port", String(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        // Ready when it accepts connections.
        for _ in 0..<200 {
            if Ports.accepts(self.port) { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw RedisServerError("redis-server did not start on \(self.port)")
    }

    /// Kills the server (SIGKILL, as a crash would) and waits until the port refuses connections.
    public func stop() async {
        guard let process = self.process else { return }
        process.signal(SIGKILL)
        _ = try? await process.waitForExit(timeout: .seconds(4))
        for _ in 0..<400 where Ports.accepts(self.port) {
            try? await Task.sleep(for: .milliseconds(10))
        }
        self.process = nil
    }
}

public struct RedisServerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
