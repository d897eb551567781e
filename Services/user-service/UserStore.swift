import Foundation
import GRDB
import TitaniumHTTP
import TitaniumSQLite

/// A user without its password hash: what the store returns and the cache holds. The email is
/// its owner's business only, so answers go out as ``PublicUser``.
struct UserRecord: Codable, Sendable, Equatable {
    var id: Int64
    var username: String
    var email: String
    var created_at: String
}

/// A user as a response shows it: never the password hash, and the email only to its owner.
struct PublicUser: Encodable, Sendable, Equatable {
    var id: Int64
    var username: String
    /// Left out of the JSON when nil.
    var email: String?
    var created_at: String

    init(_ user: UserRecord, showingEmail: Bool) {
        self.id = user.id
        self.username = user.username
        self.email = showingEmail ? user.email : nil
        self.created_at = user.created_at
    }
}

/// Users in SQLite (GRDB, WAL, busy timeout). Every write is one transaction.
struct UserStore: Sendable {
    let pool: DatabasePool

    init(path: String) throws {
        self.pool = try SQLiteDatabase.open(path: path, label: "users", migrator: Self.migrator)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-users") { db in
            try db.create(table: "users") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("username", .text).notNull().collate(.nocase)
                table.column("email", .text).notNull().collate(.nocase)
                table.column("password_hash", .text).notNull()
                table.column("created_at", .integer).notNull()
            }
            try db.create(index: "users_username_unique", on: "users", columns: ["username"], options: .unique)
            try db.create(index: "users_email_unique", on: "users", columns: ["email"], options: .unique)
        }
        // Counts password changes: tokens carry the version they were issued at, and a change
        // retires every token with an older one (exactly, whatever the clocks say).
        migrator.registerMigration("v2-password-version") { db in
            try db.alter(table: "users") { table in
                table.add(column: "password_version", .integer).notNull().defaults(to: 0)
            }
        }
        return migrator
    }

    enum CreateError: Error {
        case taken(field: String)
    }

    func create(username: String, email: String, passwordHash: String) async throws -> UserRecord {
        let createdAt = SQLiteDatabase.now()
        do {
            return try await self.pool.write { db in
                try db.execute(
                    sql: "INSERT INTO users (username, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
                    arguments: [username, email, passwordHash, createdAt]
                )
                return UserRecord(id: db.lastInsertedRowID, username: username, email: email, created_at: SQLiteDatabase.timestamp(createdAt))
            }
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw CreateError.taken(field: (error.message ?? "").contains("email") ? "email" : "username")
        }
    }

    enum UpdateResult: Sendable {
        case updated(UserRecord)
        /// The password changed since the token was issued (or the user is gone): nothing written.
        case retired
    }

    /// Changes email and/or password hash in one transaction, only while the password version is
    /// still `passwordVersion` (the token's), so a change racing another password change fails
    /// instead of overwriting it. A new hash bumps the version.
    func update(id: Int64, passwordVersion: Int, email: String?, passwordHash: String?) async throws -> UpdateResult {
        do {
            return try await self.pool.write { db in
                try db.execute(
                    sql: """
                        UPDATE users SET email = COALESCE(?, email), password_hash = COALESCE(?, password_hash),
                            password_version = password_version + ?
                        WHERE id = ? AND password_version = ?
                        """,
                    arguments: [email, passwordHash, passwordHash == nil ? 0 : 1, id, passwordVersion]
                )
                guard db.changesCount > 0,
                    let user = try Row.fetchOne(db, sql: "SELECT id, username, email, created_at FROM users WHERE id = ?", arguments: [id])
                else { return .retired }
                return .updated(Self.record(user))
            }
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw CreateError.taken(field: "email")
        }
    }

    /// The user's password version (see the `v2-password-version` migration); nil when there is no such user.
    func passwordVersion(id: Int64) async throws -> Int? {
        try await self.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT password_version FROM users WHERE id = ?", arguments: [id])
        }
    }

    /// The user's password hash, to check a current password; nil when there is no such user.
    func passwordHash(id: Int64) async throws -> String? {
        try await self.pool.read { db in
            try String.fetchOne(db, sql: "SELECT password_hash FROM users WHERE id = ?", arguments: [id])
        }
    }

    func user(id: Int64) async throws -> UserRecord? {
        try await self.pool.read { db in
            try Row.fetchOne(db, sql: "SELECT id, username, email, created_at FROM users WHERE id = ?", arguments: [id])
                .map(Self.record)
        }
    }

    /// The user, its password hash and password version, for authentication only.
    func credentials(username: String) async throws -> (user: UserRecord, passwordHash: String, passwordVersion: Int)? {
        try await self.pool.read { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT id, username, email, created_at, password_hash, password_version FROM users WHERE username = ?",
                arguments: [username]
            ) else { return nil }
            return (Self.record(row), row["password_hash"], row["password_version"])
        }
    }

    func count() async throws -> Int {
        try await self.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users") ?? 0 }
    }

    private static func record(_ row: Row) -> UserRecord {
        UserRecord(id: row["id"], username: row["username"], email: row["email"], created_at: SQLiteDatabase.timestamp(row["created_at"]))
    }

}
