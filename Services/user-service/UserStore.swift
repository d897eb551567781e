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

    /// Changes email and/or password hash in one transaction; nil when the user does not exist.
    func update(id: Int64, email: String?, passwordHash: String?) async throws -> UserRecord? {
        do {
            return try await self.pool.write { db in
                try db.execute(
                    sql: "UPDATE users SET email = COALESCE(?, email), password_hash = COALESCE(?, password_hash) WHERE id = ?",
                    arguments: [email, passwordHash, id]
                )
                guard db.changesCount > 0 else { return nil }
                return try Row.fetchOne(db, sql: "SELECT id, username, email, created_at FROM users WHERE id = ?", arguments: [id])
                    .map(Self.record)
            }
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw CreateError.taken(field: "email")
        }
    }

    func user(id: Int64) async throws -> UserRecord? {
        try await self.pool.read { db in
            try Row.fetchOne(db, sql: "SELECT id, username, email, created_at FROM users WHERE id = ?", arguments: [id])
                .map(Self.record)
        }
    }

    /// The user and its password hash, for authentication only.
    func credentials(username: String) async throws -> (user: UserRecord, passwordHash: String)? {
        try await self.pool.read { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT id, username, email, created_at, password_hash FROM users WHERE username = ?", arguments: [username]
            ) else { return nil }
            return (Self.record(row), row["password_hash"])
        }
    }

    func count() async throws -> Int {
        try await self.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users") ?? 0 }
    }

    private static func record(_ row: Row) -> UserRecord {
        UserRecord(id: row["id"], username: row["username"], email: row["email"], created_at: SQLiteDatabase.timestamp(row["created_at"]))
    }

}
