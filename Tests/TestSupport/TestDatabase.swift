import Foundation
import NIOConcurrencyHelpers

/// Which database the integration tests give user-service and blog-service.
///
/// By default, SQLite (the services' default). With `TITANIUM_TEST_POSTGRES_URL` set to a
/// PostgreSQL server's URL (`postgres://postgres@127.0.0.1:PORT/postgres`, as scripts/test.sh's
/// second pass sets it), every user-service and blog-service that ``ServiceProcess`` starts
/// without a `DATABASE_URL` of its own gets a PostgreSQL database instead: one per SQLite file
/// it would have used (the same `DATA_DIR`, `USER_DB_PATH` or `BLOG_DB_PATH` gives the same
/// database, so a service restarted on its data finds it again), created on first use.
public enum TestDatabase {
    public static let postgresVariable = "TITANIUM_TEST_POSTGRES_URL"

    /// The server of the PostgreSQL pass, or nil on SQLite.
    public static var postgresServerURL: String? {
        guard let url = ProcessInfo.processInfo.environment[Self.postgresVariable], !url.isEmpty else { return nil }
        return url
    }

    /// Whether this run is the PostgreSQL pass: tests that look into the SQLite files are skipped.
    public static var isPostgres: Bool { Self.postgresServerURL != nil }

    private static let created = NIOLockedValueBox<Set<String>>([])

    /// The `DATABASE_URL` to give `service` started with `environment`, creating the database;
    /// nil when the service keeps SQLite (not the PostgreSQL pass, another service, or the caller
    /// chose its own `DATABASE_URL`).
    static func databaseURL(service: String, environment: [String: String]) throws -> String? {
        guard let serverURL = Self.postgresServerURL, environment["DATABASE_URL"] == nil else { return nil }
        let sqliteFile: String?
        switch service {
        case "user-service": sqliteFile = environment["USER_DB_PATH"] ?? environment["DATA_DIR"].map { "\($0)/users.db" }
        case "blog-service": sqliteFile = environment["BLOG_DB_PATH"] ?? environment["DATA_DIR"].map { "\($0)/blog.db" }
        default: return nil
        }
        let key = sqliteFile ?? UUID().uuidString
        let name = "t_" + service.replacingOccurrences(of: "-service", with: "") + "_" + String(Self.fnv1a(key), radix: 16)
        try Self.created.withLockedValue { created in
            guard !created.contains(name) else { return }
            try PostgresCLI.createDatabase(name, serverURL: serverURL)
            created.insert(name)
        }
        guard var components = URLComponents(string: serverURL) else {
            throw PostgresServerError("\(Self.postgresVariable) is not a URL: \(serverURL)")
        }
        components.path = "/\(name)"
        guard let url = components.string else { throw PostgresServerError("cannot make a database URL from \(serverURL)") }
        return url
    }

    /// FNV-1a, 64 bits: a name that stays the same from one run to the next (Hasher's does not).
    static func fnv1a(_ text: String) -> UInt64 {
        text.utf8.reduce(0xcbf2_9ce4_8422_2325 as UInt64) { hash, byte in (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    }
}
