import Foundation
import Logging
import TitaniumHTTP
import TitaniumPostgres

struct Post: Codable, Sendable, Equatable {
    var id: Int64
    var author_id: Int64
    var author: String
    var title: String
    var body: String
    var created_at: String
    var updated_at: String
}

/// Where posts are kept: SQLite (``SQLitePostStore``, the default) or PostgreSQL
/// (``PostgresPostStore``), chosen by `DATABASE_URL`. A change and its ownership check run in one
/// transaction; a database that cannot answer is a 503 ``APIError``.
protocol PostStore: Sendable {
    func list(limit: Int, offset: Int) async throws -> (posts: [Post], total: Int)
    func post(id: Int64) async throws -> Post?
    func create(authorID: Int64, author: String, title: String, body: String) async throws -> Post
    func update(id: Int64, authorID: Int64, title: String?, body: String?) async throws -> PostChangeResult
    func delete(id: Int64, authorID: Int64) async throws -> PostChangeResult
    func count() async throws -> Int
    /// A number that grows whenever posts change, whoever changed them (this process, another
    /// replica, a restore): the ``PageCache`` keeps pages until it moves.
    func changeVersion() async throws -> Int64
    /// A trivial read: throws when the database cannot answer (the health check's probe).
    func ping() async throws
}

enum PostChangeResult: Sendable {
    case done(Post?)
    case notFound
    case forbidden
}

/// The store `location` names, migrated; with PostgreSQL, also the pool to run as a service.
func openPostStore(_ location: DatabaseLocation, logger: Logger) async throws -> (store: any PostStore, pool: PostgresPool?) {
    switch location {
    case .sqlite(let path):
        return (try SQLitePostStore(path: path), nil)
    case .postgres(let settings):
        let database = try await PostgresPool.open(settings: settings, migrations: PostgresPostStore.migrations, logger: logger)
        return (PostgresPostStore(database: database), database)
    }
}
