import Foundation

/// The `sqlite3` command-line shell, to look into a service's database from outside the process.
public enum SQLiteCLI {
    static let executable = "/usr/bin/sqlite3"

    /// Runs `commands` against `path`; returns stdout trimmed, or throws with stderr.
    @discardableResult
    public static func run(_ path: String, _ commands: String...) throws -> String {
        let result = try ChildProcess.run([Self.executable, path] + commands)
        guard result.status == 0, result.errors.isEmpty else {
            throw ProcessFailure("sqlite3 \(commands.joined(separator: " ")): \(result.errors)")
        }
        return result.output
    }

    /// Another connection holding the write lock of `path` for `seconds`, as a backup or a
    /// migration would: returns once the lock is held; the process releases it by itself, or
    /// when the returned object goes.
    public static func holdWriteLock(_ path: String, seconds: Int) async throws -> ChildProcess {
        // The holder waits out a batch write already in progress rather than failing.
        let process = try ChildProcess([Self.executable, path, ".timeout 2000", "BEGIN IMMEDIATE;", ".shell sleep \(seconds)", "COMMIT;"])
        // Held once a second writer can no longer begin.
        _ = try await poll(timeout: .seconds(5), interval: .milliseconds(20)) { () -> Bool? in
            (try? Self.run(path, ".timeout 0", "BEGIN IMMEDIATE;", "ROLLBACK;")) == nil ? true : nil
        }
        return process
    }
}
