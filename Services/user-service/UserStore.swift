import Foundation
import Logging
import TitaniumHTTP
import TitaniumPostgres

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

/// Where users are kept: SQLite (``SQLiteUserStore``, the default) or PostgreSQL
/// (``PostgresUserStore``), chosen by `DATABASE_URL`. Both keep usernames and emails unique
/// without regard to case, write each change in one statement or transaction, and answer a 503
/// ``APIError`` when the database cannot answer.
protocol UserStore: Sendable {
    /// ``UserStoreError/taken(field:)`` when the username or email is taken.
    func create(username: String, email: String, passwordHash: String) async throws -> UserRecord
    /// Changes email and/or password hash, only while the password version is still
    /// `passwordVersion` (the token's), so a change racing another password change fails instead
    /// of overwriting it. A new hash bumps the version.
    func update(id: Int64, passwordVersion: Int, email: String?, passwordHash: String?) async throws -> UserUpdateResult
    /// The user's password version (see the `v2-password-version` migration); nil when there is no such user.
    func passwordVersion(id: Int64) async throws -> Int?
    /// The user's password hash, to check a current password; nil when there is no such user.
    func passwordHash(id: Int64) async throws -> String?
    func user(id: Int64) async throws -> UserRecord?
    /// The user, its password hash and password version, for authentication only.
    func credentials(username: String) async throws -> (user: UserRecord, passwordHash: String, passwordVersion: Int)?
    func count() async throws -> Int
    /// A trivial read: throws when the database cannot answer (the health check's probe).
    func ping() async throws
}

enum UserStoreError: Error, Equatable {
    case taken(field: String)
}

enum UserUpdateResult: Sendable {
    case updated(UserRecord)
    /// The password changed since the token was issued (or the user is gone): nothing written.
    case retired
}

/// The store `location` names, migrated; with PostgreSQL, also the pool to run as a service.
func openUserStore(_ location: DatabaseLocation, logger: Logger) async throws -> (store: any UserStore, pool: PostgresPool?) {
    switch location {
    case .sqlite(let path):
        return (try SQLiteUserStore(path: path), nil)
    case .postgres(let settings):
        let database = try await PostgresPool.open(settings: settings, migrations: PostgresUserStore.migrations, logger: logger)
        return (PostgresUserStore(database: database), database)
    }
}
