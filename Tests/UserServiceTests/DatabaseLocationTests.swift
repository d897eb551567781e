import Foundation
import TestSupport
import TitaniumHTTP
import TitaniumPostgres
import Testing

/// `DATABASE_URL` read into SQLite or PostgreSQL, and what a wrong one says.
@Suite struct DatabaseLocationTests {
    static func location(_ variables: [String: String]) throws(ConfigurationError) -> DatabaseLocation {
        try DatabaseLocation(settings: .fromEnvironment(variables), defaultSQLitePath: "/data/users.db")
    }

    @Test func unsetOrEmptyIsTheDefaultSQLiteFile() throws {
        #expect(try Self.location([:]) == .sqlite(path: "/data/users.db"))
        #expect(try Self.location(["DATABASE_URL": ""]) == .sqlite(path: "/data/users.db"))
    }

    @Test func aPathOrASQLiteURLIsSQLite() throws {
        #expect(try Self.location(["DATABASE_URL": "/var/lib/t/users.db"]) == .sqlite(path: "/var/lib/t/users.db"))
        #expect(try Self.location(["DATABASE_URL": "sqlite:///var/lib/t/users.db"]) == .sqlite(path: "/var/lib/t/users.db"))
        #expect(try Self.location(["DATABASE_URL": "sqlite:users.db"]) == .sqlite(path: "users.db"))
    }

    @Test func aPostgresURLWithItsPoolSettings() throws {
        let location = try Self.location([
            "DATABASE_URL": "postgresql://ti%40tan:p%3Ass@db.internal:6543/titanium?sslmode=require",
            "DATABASE_POOL_SIZE": "4", "DATABASE_QUERY_TIMEOUT_MS": "1500",
        ])
        guard case .postgres(let settings) = location else {
            Issue.record("expected PostgreSQL, got \(location)")
            return
        }
        #expect(settings.host == "db.internal" && settings.port == 6543 && settings.database == "titanium")
        #expect(settings.username == "ti@tan" && settings.password == "p:ss" && settings.requireTLS)
        #expect(settings.poolSize == 4 && settings.queryTimeout == .milliseconds(1500) && settings.connectTimeout == .seconds(3))
        #expect(location.description == "postgres://db.internal:6543/titanium")
        #expect(!"\(settings)".contains("p:ss") && !String(reflecting: location).contains("p:ss"))

        // Decoded once: %2541 is "%41", not "A".
        let literal = try Self.location(["DATABASE_URL": "postgres://u:a%2541@h/db"])
        #expect(literal == .postgres(PostgresSettings(host: "h", username: "u", password: "a%41", database: "db")))

        let plain = try Self.location(["DATABASE_URL": "postgres://titanium@127.0.0.1/titanium"])
        #expect(plain == .postgres(PostgresSettings(host: "127.0.0.1", username: "titanium", database: "titanium")))
    }

    @Test func sslrootcertNamesTheCertificatesTrustedInsteadOfTheSystems() throws {
        let directory = try temporaryDirectory("titanium-sslrootcert")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("ca.pem")
        try Data("-----BEGIN CERTIFICATE-----\n".utf8).write(to: file)
        let location = try Self.location(["DATABASE_URL": "postgres://u@h/db?sslmode=verify-full&sslrootcert=\(file.path)"])
        #expect(location == .postgres(PostgresSettings(host: "h", username: "u", database: "db", requireTLS: true, rootCertificatePath: file.path)))
        // libpq's spelling of the default.
        let system = try Self.location(["DATABASE_URL": "postgres://u@h/db?sslrootcert=system&sslmode=require"])
        #expect(system == .postgres(PostgresSettings(host: "h", username: "u", database: "db", requireTLS: true)))
        // A file that is not there stops the service at start, not at its first query.
        #expect(throws: ConfigurationError.self) {
            try Self.location(["DATABASE_URL": "postgres://u@h/db?sslmode=require&sslrootcert=\(file.path).missing"])
        }
    }

    @Test func aWrongURLIsRefusedWithoutItsPassword() {
        for url in [
            "postgres://user:secret@host:5432/", "postgres://:secret@host/db", "postgres://user:secret@host/db?sslmode=maybe",
            "mysql://user:secret@host/db",
            // A CA file without TLS would be ignored, and an empty one names nothing.
            "postgres://user:secret@host/db?sslrootcert=/etc/ssl/ca.pem", "postgres://user:secret@host/db?sslmode=require&sslrootcert=",
            "postgres://user:secret@host/db?sslrootcert=system", "postgres://user:secret@host/db?sslmode=disable&sslrootcert=system",
        ] {
            do {
                _ = try Self.location(["DATABASE_URL": url])
                Issue.record("\(url) was accepted")
            } catch {
                #expect(error.variable == "DATABASE_URL")
                #expect(!error.description.contains("secret"), "\(error.description)")
            }
        }
        // Foundation's parser takes a space or a stray % in a password literally; redacted all the same.
        for (url, password) in [("postgres://user:sec ret@host/db", "sec ret"), ("postgres://user:100%secret@host/db", "100%secret")] {
            #expect(PostgresSettings(url: url)?.password == password, "\(url)")
            #expect(!PostgresSettings.redacted(url).contains(password), "\(PostgresSettings.redacted(url))")
        }
        #expect(throws: ConfigurationError.self) {
            try Self.location(["DATABASE_URL": "postgres://u@h/db", "DATABASE_POOL_SIZE": "0"])
        }
    }
}
