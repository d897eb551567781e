import Foundation

/// A real PostgreSQL (Debian's `postgresql`) on a free 127.0.0.1 port, with its data in a
/// temporary directory: initialised, started, stopped and restarted by the test, removed with it.
///
/// PostgreSQL refuses to run as root, and the tests run as root on CI: then `initdb` and
/// `postgres` run as the `postgres` user (through `setpriv`, which executes the server in its
/// place, so that a signal sent to the process reaches the server itself) in a directory
/// owned by that user. Authentication is `trust`; the superuser is `postgres`.
public final class PostgresServer: @unchecked Sendable {
    public let port: Int
    /// Holds `data/` (the cluster), the Unix socket and `postgres.log`.
    public let directory: URL
    private var process: ChildProcess?

    public var dataDirectory: URL { self.directory.appendingPathComponent("data") }
    public var logFile: URL { self.directory.appendingPathComponent("postgres.log") }

    /// A new cluster in a new temporary directory, started.
    public init(port: Int? = nil) async throws {
        let binaries = try PostgresCLI.binaries()
        self.port = try port ?? Ports.free()
        self.directory = try temporaryDirectory("titanium-postgres")
        do {
            try PostgresCLI.handToServerUser(self.directory)
            let initdb = try PostgresCLI.run(
                binaries.appendingPathComponent("initdb"),
                ["-D", self.dataDirectory.path, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
                asServerUser: true, workingDirectory: self.directory, timeout: .seconds(60)
            )
            guard initdb.status == 0 else { throw PostgresServerError("initdb failed (\(initdb.status)): \(initdb.output)\n\(initdb.errors)") }
            try await self.start()
        } catch {
            try? FileManager.default.removeItem(at: self.directory)
            throw error
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/NAME`
    public func url(database: String = "postgres") -> String {
        "postgres://postgres@127.0.0.1:\(self.port)/\(database)"
    }

    /// Starts the server (again, after ``stop(_:)``: same port, same data) and returns once it
    /// accepts queries.
    public func start() async throws {
        guard self.process == nil else { return }
        let binaries = try PostgresCLI.binaries()
        let server = [
            binaries.appendingPathComponent("postgres").path, "-D", self.dataDirectory.path, "-p", String(self.port),
            "-k", self.directory.path, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=300",
        ]
        // The log is opened (appending) before setpriv drops to the postgres user.
        let process = try ChildProcess(PostgresCLI.asServerUser(server), workingDirectory: self.directory.path, output: self.logFile.path)
        self.process = process
        // Accepting connections is not enough: a starting server answers "the database system is
        // starting up". pg_isready says when it takes queries.
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if process.exitStatus != nil {
                self.process = nil
                throw PostgresServerError("postgres exited at start; its log:\n\(self.logTail())")
            }
            let ready = try PostgresCLI.run(
                binaries.appendingPathComponent("pg_isready"), ["-q", "-h", "127.0.0.1", "-p", String(self.port), "-U", "postgres"],
                timeout: .seconds(5)
            )
            if ready.status == 0 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw PostgresServerError("postgres did not accept queries on \(self.port) within 30 s; its log:\n\(self.logTail())")
    }

    public enum StopMode: Sendable {
        /// SIGINT: PostgreSQL's fast shutdown (connections are cut, no waiting for clients).
        case fast
        /// SIGKILL, as a crash would.
        case kill
    }

    /// Stops the server and waits until it has exited and its port refuses connections.
    /// The data stays: ``start()`` brings it back on the same port.
    public func stop(_ mode: StopMode = .fast) async throws {
        guard let process = self.process else { return }
        process.signal(mode == .fast ? SIGINT : SIGKILL)
        let deadline = ContinuousClock.now + .seconds(30)
        while process.isRunning || Ports.accepts(self.port) {
            if ContinuousClock.now > deadline {
                process.signal(SIGKILL)
                throw PostgresServerError("postgres (pid \(process.pid)) did not stop within 30 s")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        self.process = nil
        // After SIGKILL the lock file stays, and a new postmaster checks the shared memory it
        // names, which the killed server's backends may hold for a moment more.
        if mode == .kill {
            try? FileManager.default.removeItem(at: self.dataDirectory.appendingPathComponent("postmaster.pid"))
        }
    }

    /// Runs `sql` through `psql` against `database` and returns its unaligned output, or throws
    /// with psql's error.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") throws -> String {
        try PostgresCLI.psql(url: self.url(database: database), sql)
    }

    /// A new, empty database.
    public func createDatabase(_ name: String) throws {
        try PostgresCLI.createDatabase(name, serverURL: self.url())
    }

    /// Stops the server (SIGKILL: nothing in it is kept) and deletes its directory.
    public func remove() async {
        try? await self.stop(.kill)
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// The last lines of the server's log, for a failure message.
    public func logTail(lines: Int = 20) -> String {
        let text = (try? String(contentsOf: self.logFile, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    deinit {
        self.process?.signal(SIGKILL)
        try? FileManager.default.removeItem(at: self.directory)
    }
}

/// A new PostgreSQL for `body`, removed after it (data directory included). `body` may stop
/// and restart it.
public func withPostgresServer<T>(_ body: (PostgresServer) async throws -> T) async throws -> T {
    let server = try await PostgresServer()
    return try await withTearDown { try await body(server) } tearDown: { await server.remove() }
}

public struct PostgresServerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Debian's PostgreSQL programs (`/usr/lib/postgresql/<version>/bin`), run as the `postgres`
/// user when the tests run as root.
public enum PostgresCLI {
    /// The newest installed version's `bin` directory.
    public static func binaries() throws -> URL {
        let root = URL(fileURLWithPath: "/usr/lib/postgresql")
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? [])
            .compactMap(Int.init).sorted(by: >)
        for version in versions {
            let bin = root.appendingPathComponent("\(version)/bin")
            if FileManager.default.isExecutableFile(atPath: bin.appendingPathComponent("postgres").path) { return bin }
        }
        throw PostgresServerError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): scripts/install-deps.sh test installs Debian's postgresql")
    }

    static var runsAsRoot: Bool { getuid() == 0 }

    /// `command` as it is run: prefixed with `setpriv` to the `postgres` user when root. setpriv
    /// executes the command in its own place (runuser would stay as its parent), so the pid
    /// started is the server's.
    static func asServerUser(_ command: [String]) -> [String] {
        guard Self.runsAsRoot else { return command }
        return ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + command
    }

    /// Gives `directory` to the `postgres` user when root (initdb and the server write there).
    static func handToServerUser(_ directory: URL) throws {
        guard Self.runsAsRoot else { return }
        guard let user = getpwnam("postgres") else {
            throw PostgresServerError("no postgres user: scripts/install-deps.sh test installs Debian's postgresql, which makes it")
        }
        guard chown(directory.path, user.pointee.pw_uid, user.pointee.pw_gid) == 0 else {
            throw PostgresServerError("chown \(directory.path) to postgres: errno \(errno)")
        }
    }

    /// Runs a program to its end, as the `postgres` user when asked (see ``asServerUser(_:)``).
    public static func run(
        _ executable: URL, _ arguments: [String], asServerUser: Bool = false, workingDirectory: URL? = nil, timeout: Duration = .seconds(30)
    ) throws -> ChildProcess.Outcome {
        let command = [executable.path] + arguments
        return try ChildProcess.run(asServerUser ? Self.asServerUser(command) : command, workingDirectory: workingDirectory?.path, timeout: timeout)
    }

    /// `psql` with `url` as its connection: `sql` in one transaction, unaligned tuples only.
    @discardableResult
    public static func psql(url: String, _ sql: String) throws -> String {
        let result = try Self.run(
            Self.binaries().appendingPathComponent("psql"),
            ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]
        )
        guard result.status == 0 else { throw PostgresServerError("psql \(sql): \(result.errors)") }
        return result.output
    }

    /// `CREATE DATABASE name` on the server at `serverURL` (a URL of any of its databases).
    /// `name` is limited to lower-case letters, digits and underscores, so needs no quoting.
    public static func createDatabase(_ name: String, serverURL: String) throws {
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }) else {
            throw PostgresServerError("not a plain database name: \(name)")
        }
        try Self.psql(url: serverURL, "CREATE DATABASE \(name)")
    }
}
