import Foundation
import GRDB
import TitaniumSQLite

/// Users in SQLite (GRDB, WAL, busy timeout). Every write is one transaction; usernames and
/// emails are `COLLATE NOCASE` (ASCII case).
struct SQLiteUserStore: UserStore {
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
            throw UserStoreError.taken(field: (error.message ?? "").contains("email") ? "email" : "username")
        }
    }

    func update(id: Int64, passwordVersion: Int, email: String?, passwordHash: String?) async throws -> UserUpdateResult {
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
            throw UserStoreError.taken(field: "email")
        }
    }

    func passwordVersion(id: Int64) async throws -> Int? {
        try await self.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT password_version FROM users WHERE id = ?", arguments: [id])
        }
    }

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

    func credentials(username: String) async throws -> (user: UserRecord, passwordHash: String, passwordVersion: Int)? {
        try await self.pool.read { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT id, username, email, created_at, password_hash, password_version FROM users WHERE username = ?",
                arguments: [username]
            ) else { return nil }
            return (Self.record(row), row["password_hash"], row["password_version"])
        }
    }

    func ping() async throws {
        try await self.pool.ping()
    }

    func count() async throws -> Int {
        try await self.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM users") ?? 0 }
    }

    private static func record(_ row: Row) -> UserRecord {
        UserRecord(id: row["id"], username: row["username"], email: row["email"], created_at: SQLiteDatabase.timestamp(row["created_at"]))
    }

}
