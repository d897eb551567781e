import Foundation
import GRDB
import TitaniumSQLite

/// Posts in SQLite (GRDB, WAL, busy timeout). A change and its ownership check run in one transaction.
struct SQLitePostStore: PostStore {
    let pool: DatabasePool
    /// A read-only connection of its own, for `PRAGMA data_version`: it changes whenever any
    /// other connection commits (this service's writer, or another process: the sqlite3 CLI, a
    /// restore).
    private let versionProbe: DatabaseQueue

    init(path: String) throws {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-posts") { db in
            try db.create(table: "posts") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("author_id", .integer).notNull()
                table.column("author", .text).notNull()
                table.column("title", .text).notNull()
                table.column("body", .text).notNull()
                table.column("created_at", .integer).notNull()
                table.column("updated_at", .integer).notNull()
            }
            try db.create(index: "posts_author", on: "posts", columns: ["author_id"])
        }
        self.pool = try SQLiteDatabase.open(path: path, label: "posts", migrator: migrator)
        var configuration = Configuration()
        configuration.readonly = true
        configuration.label = "posts-version"
        self.versionProbe = try DatabaseQueue(path: path, configuration: configuration)
    }

    /// A read of SQLite's WAL index: microseconds.
    func changeVersion() async throws -> Int64 {
        try self.versionProbe.inDatabase { db in try Int64.fetchOne(db, sql: "PRAGMA data_version") ?? 0 }
    }

    func ping() async throws {
        try await self.pool.ping()
    }

    func list(limit: Int, offset: Int) async throws -> (posts: [Post], total: Int) {
        try await self.pool.read { db in
            let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM posts") ?? 0
            let posts = try Row.fetchAll(
                db, sql: "SELECT * FROM posts ORDER BY id DESC LIMIT ? OFFSET ?", arguments: [limit, offset]
            ).map(Self.post)
            return (posts, total)
        }
    }

    func post(id: Int64) async throws -> Post? {
        try await self.pool.read { db in try Row.fetchOne(db, sql: "SELECT * FROM posts WHERE id = ?", arguments: [id]).map(Self.post) }
    }

    func create(authorID: Int64, author: String, title: String, body: String) async throws -> Post {
        let now = SQLiteDatabase.now()
        return try await self.pool.write { db in
            try db.execute(
                sql: "INSERT INTO posts (author_id, author, title, body, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [authorID, author, title, body, now, now]
            )
            return Post(
                id: db.lastInsertedRowID, author_id: authorID, author: author, title: title, body: body,
                created_at: SQLiteDatabase.timestamp(now), updated_at: SQLiteDatabase.timestamp(now)
            )
        }
    }

    func update(id: Int64, authorID: Int64, title: String?, body: String?) async throws -> PostChangeResult {
        let now = SQLiteDatabase.now()
        return try await self.pool.write { db in
            guard let owner = try Int64.fetchOne(db, sql: "SELECT author_id FROM posts WHERE id = ?", arguments: [id]) else { return .notFound }
            guard owner == authorID else { return .forbidden }
            try db.execute(
                sql: "UPDATE posts SET title = COALESCE(?, title), body = COALESCE(?, body), updated_at = ? WHERE id = ?",
                arguments: [title, body, now, id]
            )
            return .done(try Row.fetchOne(db, sql: "SELECT * FROM posts WHERE id = ?", arguments: [id]).map(Self.post))
        }
    }

    func delete(id: Int64, authorID: Int64) async throws -> PostChangeResult {
        try await self.pool.write { db in
            guard let owner = try Int64.fetchOne(db, sql: "SELECT author_id FROM posts WHERE id = ?", arguments: [id]) else { return .notFound }
            guard owner == authorID else { return .forbidden }
            try db.execute(sql: "DELETE FROM posts WHERE id = ?", arguments: [id])
            return .done(nil)
        }
    }

    func count() async throws -> Int {
        try await self.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM posts") ?? 0 }
    }

    private static func post(_ row: Row) -> Post {
        Post(
            id: row["id"], author_id: row["author_id"], author: row["author"], title: row["title"], body: row["body"],
            created_at: SQLiteDatabase.timestamp(row["created_at"]), updated_at: SQLiteDatabase.timestamp(row["updated_at"])
        )
    }

}
