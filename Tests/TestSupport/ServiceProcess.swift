import Foundation
import NIOConcurrencyHelpers

/// One built service executable, started as a real process on 127.0.0.1 with `HTTP_PORT=0`;
/// its JSON log lines are collected and the port is learned from its "listening" line.
/// In the PostgreSQL pass of the tests, user-service and blog-service get a PostgreSQL
/// database (``TestDatabase``).
public final class ServiceProcess: Sendable {
    public let name: String
    private let process: Process
    private let output = NIOLockedValueBox<[UInt8]>([])

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
        let process = Process()
        process.executableURL = Self.binaryDirectory.appendingPathComponent(name)
        var env = ProcessInfo.processInfo.environment
        env["HTTP_HOST"] = "127.0.0.1"
        env["HTTP_PORT"] = "0"
        env["LOG_LEVEL"] = "info"
        env.merge(environment) { _, new in new }
        if let databaseURL = try TestDatabase.databaseURL(service: name, environment: env) {
            env["DATABASE_URL"] = databaseURL
        }
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let output = self.output
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if !data.isEmpty { output.withLockedValue { $0.append(contentsOf: data) } }
        }
        self.process = process
        try process.run()
    }

    public var text: String { String(decoding: self.output.withLockedValue { $0 }, as: UTF8.self) }

    /// Every stdout line that parses as a JSON object.
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
            if !self.process.isRunning {
                throw ProcessFailure("\(self.name) exited with \(self.process.terminationStatus): \(self.text)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ProcessFailure("\(self.name) did not report its port: \(self.text)")
    }

    /// SIGKILL, as a crash would.
    public func kill() {
        if self.process.isRunning { Glibc.kill(self.process.processIdentifier, SIGKILL) }
    }

    /// Sends SIGTERM and waits for the exit status.
    public func terminate(timeout: Duration = .seconds(10)) async throws -> Int32 {
        if self.process.isRunning { self.process.terminate() }
        return try await self.waitForExit(timeout: timeout)
    }

    public func waitForExit(timeout: Duration = .seconds(10)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let status = self.exitStatus { return status }
            if ContinuousClock.now > deadline {
                Glibc.kill(self.process.processIdentifier, SIGKILL)
                let tail = self.text.split(separator: "\n").suffix(8).joined(separator: "\n")
                throw ProcessFailure("\(self.name) did not exit within \(timeout); its last lines:\n\(tail)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The exit status (the signal's number for a killed process, as `Process` reports it), or nil
    /// while it runs. `Process` on Linux notices an exit only when a socket it gave the child closes,
    /// and a process another test spawns at the same moment can inherit that socket
    /// (swift-corelibs-foundation#4795): `isRunning` then stays true until that other process ends.
    /// So the kernel is asked too, with `WNOWAIT`, which leaves the child for `Process` to reap.
    private var exitStatus: Int32? {
        if !self.process.isRunning { return self.process.terminationStatus }
        var info = siginfo_t()
        let pid = self.process.processIdentifier
        guard waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0,
              info._sifields._sigchld.si_pid == pid
        else { return nil }
        return info._sifields._sigchld.si_status
    }

    deinit {
        if self.process.isRunning { Glibc.kill(self.process.processIdentifier, SIGKILL) }
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
