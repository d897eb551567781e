import Foundation

/// One built service executable, started as a real process on 127.0.0.1 with `HTTP_PORT=0`;
/// its output goes to a file of its own, and the port is learned from its "listening" line.
/// In the PostgreSQL pass of the tests, user-service and blog-service get a PostgreSQL
/// database (``TestDatabase``).
public final class ServiceProcess: Sendable {
    public let name: String
    private let child: ChildProcess
    /// Holds `output.log` (standard output and error); removed with the object.
    private let directory: URL

    public static var binaryDirectory: URL {
        if let dir = ProcessInfo.processInfo.environment["TITANIUM_BIN_DIR"], !dir.isEmpty {
            return URL(fileURLWithPath: dir)
        }
        // Tests/TestSupport/ServiceProcess.swift → repository root → .build/debug
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug")
    }

    public init(_ name: String, environment: [String: String] = [:]) throws {
        self.name = name
        var env = ProcessInfo.processInfo.environment
        env["HTTP_HOST"] = "127.0.0.1"
        env["HTTP_PORT"] = "0"
        env["LOG_LEVEL"] = "info"
        env.merge(environment) { _, new in new }
        if let databaseURL = try TestDatabase.databaseURL(service: name, environment: env) {
            env["DATABASE_URL"] = databaseURL
        }
        self.directory = try temporaryDirectory("titanium-\(name)")
        do {
            self.child = try ChildProcess(
                [Self.binaryDirectory.appendingPathComponent(name).path], environment: env,
                output: self.directory.appendingPathComponent("output.log").path
            )
        } catch {
            try? FileManager.default.removeItem(at: self.directory)
            throw error
        }
    }

    /// Everything the process has written so far.
    public var text: String {
        let data = (try? Data(contentsOf: self.directory.appendingPathComponent("output.log"))) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// Every output line that parses as a JSON object.
    public var logObjects: [[String: Any]] {
        self.text.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }

    /// Waits for the "listening" log line and returns its port.
    public func port(timeout: Duration = .seconds(20)) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let line = self.logObjects.first(where: { $0["message"] as? String == "listening" }), let port = line["port"] as? Int {
                return port
            }
            if let status = self.child.exitStatus {
                throw ProcessFailure("\(self.name) exited with \(status): \(self.text)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ProcessFailure("\(self.name) did not report its port: \(self.text)")
    }

    /// SIGKILL, as a crash would.
    public func kill() {
        self.child.signal(SIGKILL)
    }

    /// Sends SIGTERM and waits for the exit status.
    public func terminate(timeout: Duration = .seconds(10)) async throws -> Int32 {
        self.child.signal(SIGTERM)
        return try await self.waitForExit(timeout: timeout)
    }

    /// The exit status (the signal's number for a killed process); after `timeout` the process
    /// is killed and this throws with its last lines.
    public func waitForExit(timeout: Duration = .seconds(10)) async throws -> Int32 {
        do {
            return try await self.child.waitForExit(timeout: timeout)
        } catch let failure as ProcessFailure {
            let tail = self.text.split(separator: "\n").suffix(8).joined(separator: "\n")
            throw ProcessFailure("\(self.name): \(failure.description); its last lines:\n\(tail)")
        }
    }

    deinit {
        self.child.signal(SIGKILL)
        try? FileManager.default.removeItem(at: self.directory)
    }
}

public struct ProcessFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public func temporaryDirectory(_ prefix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
