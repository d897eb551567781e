import Foundation

/// The `sqlite3` command-line shell, to look into a service's database from outside the process.
public enum SQLiteCLI {
    static let executable = URL(fileURLWithPath: "/usr/bin/sqlite3")

    /// Runs `commands` against `path`; returns stdout trimmed, or throws with stderr.
    @discardableResult
    public static func run(_ path: String, _ commands: String...) throws -> String {
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = [path] + commands
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let failure = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0, failure.isEmpty else {
            throw ProcessFailure("sqlite3 \(commands.joined(separator: " ")): \(failure)")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Another connection holding the write lock of `path` for `seconds`, as a backup or a
    /// migration would: returns once the lock is held; the process releases it by itself.
    public static func holdWriteLock(_ path: String, seconds: Int) async throws -> Process {
        let process = Process()
        process.executableURL = Self.executable
        // The holder waits out a batch write already in progress rather than failing.
        process.arguments = [path, ".timeout 2000", "BEGIN IMMEDIATE;", ".shell sleep \(seconds)", "COMMIT;"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // Held once a second writer can no longer begin.
        _ = try await poll(timeout: .seconds(5), interval: .milliseconds(20)) { () -> Bool? in
            (try? Self.run(path, ".timeout 0", "BEGIN IMMEDIATE;", "ROLLBACK;")) == nil ? true : nil
        }
        return process
    }
}
