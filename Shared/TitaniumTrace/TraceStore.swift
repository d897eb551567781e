import Foundation
import GRDB
import GRDBSQLite
import TitaniumSQLite

/// The `trace_steps` table in SQLite: batched inserts in one transaction through one prepared
/// statement, the queries behind `/traces*`, and retention.
///
/// Batches land in `trace_inbox`, a table without indexes in a file of its own
/// (`<TRACE_DB_PATH>-inbox`), so a batch appends to a few pages instead of touching one page of
/// the trace-id index per row (trace ids from clients are random; those Titanium starts begin with
/// the time, ``TraceID/timeOrdered(using:unixMilliseconds:)``). About once a second ``compact()`` moves
/// the inbox into `trace_steps` in trace-id order, touching each index page once for thousands
/// of rows. Two files, two write locks: a compaction never holds up the batches. Queries read
/// both (the inbox is attached to every connection of the main file as `inbox`).
public final class TraceStore: Sendable {
    /// `trace_steps`, with the inbox attached.
    public let database: DatabasePool
    /// `trace_inbox` alone: where batches are written.
    public let inbox: DatabasePool

    static let columns = [
        "trace_id", "span_id", "parent_span_id", "service", "instance", "user_id", "route", "path", "method",
        "status_code", "latency_us", "ip", "user_agent", "created_at",
    ]
    static let insertSQL =
        "INSERT INTO trace_inbox (\(columns.joined(separator: ", "))) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))"

    /// The columns of a step, in both tables.
    static let columnDefinitions = """
        trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, service TEXT NOT NULL, instance TEXT NOT NULL,
        user_id TEXT, route TEXT NOT NULL, path TEXT NOT NULL, method TEXT NOT NULL, status_code INTEGER NOT NULL,
        latency_us INTEGER NOT NULL, ip TEXT NOT NULL, user_agent TEXT NOT NULL, created_at INTEGER NOT NULL
        """

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("create trace_steps") { db in
            try db.execute(
                sql: """
                    CREATE TABLE trace_steps (
                        id INTEGER PRIMARY KEY,
                        \(Self.columnDefinitions)
                    );
                    CREATE INDEX trace_steps_trace_id ON trace_steps (trace_id);
                    CREATE INDEX trace_steps_user_id ON trace_steps (user_id);
                    CREATE INDEX trace_steps_created_at ON trace_steps (created_at);
                    """
            )
        }
        migrator.registerMigration("create compaction_state") { db in
            // The last inbox row copied into trace_steps: copying and deleting from the inbox are
            // two transactions (two files), and this keeps a row from being copied twice.
            try db.execute(
                sql: """
                    CREATE TABLE compaction_state (id INTEGER PRIMARY KEY CHECK (id = 1), last_inbox_id INTEGER NOT NULL);
                    INSERT INTO compaction_state VALUES (1, 0);
                    """
            )
        }
        return migrator
    }

    static var inboxMigrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("create trace_inbox") { db in
            try db.execute(
                sql: """
                    CREATE TABLE trace_inbox (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        \(Self.columnDefinitions)
                    )
                    """
            )
        }
        return migrator
    }

    /// The inbox is compacted once it holds this many rows, or after a second.
    public static let compactionRows = 20_000

    /// Both tables, for queries: what has been compacted and what has not yet.
    static let allSteps = "(SELECT \(columns.joined(separator: ", ")) FROM trace_steps UNION ALL SELECT \(columns.joined(separator: ", ")) FROM \(pendingInbox))"

    /// The inbox rows not yet copied into trace_steps.
    static let pendingInbox = "(SELECT * FROM inbox.trace_inbox WHERE id > (SELECT last_inbox_id FROM main.compaction_state))"

    /// Copies up to `limit` of the oldest pending inbox rows into `trace_steps`, in trace-id
    /// order, and records how far it got, in one transaction of the main file (the inbox is only
    /// read); returns how many rows and the last inbox id copied.
    public static func copyInbox(in db: Database, limit: Int) throws -> (rows: Int, lastID: Int64) {
        let names = Self.columns.joined(separator: ", ")
        let done = try Int64.fetchOne(db, sql: "SELECT last_inbox_id FROM main.compaction_state") ?? 0
        guard let last = try Int64.fetchOne(
            db, sql: "SELECT id FROM (SELECT id FROM inbox.trace_inbox WHERE id > ? ORDER BY id LIMIT ?) ORDER BY id DESC LIMIT 1",
            arguments: [done, limit]
        ) else { return (0, done) }
        try db.execute(
            sql: "INSERT INTO main.trace_steps (\(names)) SELECT \(names) FROM inbox.trace_inbox WHERE id > ? AND id <= ? ORDER BY trace_id",
            arguments: [done, last]
        )
        let copied = db.changesCount
        try db.execute(sql: "UPDATE main.compaction_state SET last_inbox_id = ?", arguments: [last])
        return (copied, last)
    }

    /// Deletes inbox rows already copied (a short transaction of the inbox file).
    public static func trimInbox(in db: Database, through lastID: Int64) throws {
        try db.execute(sql: "DELETE FROM trace_inbox WHERE id <= ?", arguments: [lastID])
    }

    /// A write transaction on `trace_steps` that leaves the inbox free for the batch writer.
    /// GRDB begins writes IMMEDIATE, and SQLite's BEGIN IMMEDIATE takes the write lock of every
    /// attached file: a compaction (tens of milliseconds) would then hold up every batch, and a
    /// full buffer would drop records. DEFERRED locks only what the transaction writes (main);
    /// the inbox is only read. Writes to `database` come from one connection (GRDB's writer),
    /// so a deferred transaction cannot lose a race to upgrade its lock.
    public func writeSteps<T>(_ body: (Database) throws -> T) throws -> T {
        try self.database.writeWithoutTransaction { db in
            var result: T?
            try db.inTransaction(.deferred) {
                result = try body(db)
                return .commit
            }
            return result!
        }
    }

    /// Moves the whole inbox.
    public func compact() throws -> Int {
        let (rows, last) = try self.writeSteps { db in try Self.copyInbox(in: db, limit: Int.max) }
        try self.inbox.write { db in try Self.trimInbox(in: db, through: last) }
        try self.checkpointInbox()
        return rows
    }

    /// Copies the inbox's WAL back into its file. The inbox's own connection never does (a
    /// checkpoint of a few megabytes, fsync included, took up to 100 ms and held up the batches
    /// behind it): this runs on the main file's writer, through the attached inbox, and PASSIVE
    /// takes no lock a batch waits for. Once all of it is copied, the next batch starts the WAL
    /// over, so it stays about one compaction long.
    public func checkpointInbox() throws {
        try self.database.writeWithoutTransaction { db in _ = try db.checkpoint(.passive, on: "inbox") }
    }

    /// Opens (creating if needed) the store. `busyTimeout` is short: the writer retries a busy
    /// database itself, with back-off, rather than waiting inside SQLite. Commits do not wait
    /// for fsync (WAL with `synchronous = NORMAL`): a power cut may lose the last batches,
    /// never corrupt the file.
    public init(path: String, busyTimeout: TimeInterval = 0.25) throws {
        let inboxPath = path + "-inbox"
        self.inbox = try SQLiteDatabase.open(
            path: inboxPath, label: "trace-inbox", migrator: Self.inboxMigrator, busyTimeout: busyTimeout, synchronousNormal: true,
            checkpointPages: 0
        )
        self.database = try SQLiteDatabase.open(
            path: path, label: "traces", migrator: Self.migrator, busyTimeout: busyTimeout, synchronousNormal: true,
            checkpointPages: 10000, attach: ["inbox": inboxPath]
        )
    }

    /// Writes `steps` in one transaction through one prepared statement.
    public func insert(_ steps: [TraceStep]) throws {
        try self.inbox.write { db in try Self.insert(steps, into: db) }
    }

    /// Inserts `steps` through the cached prepared statement, inside the caller's transaction.
    /// Values are bound with the SQLite C API: GRDB's `StatementArguments` cost more per row
    /// (dynamic casts and boxing) than SQLite does to insert it.
    public static func insert(_ steps: [TraceStep], into db: Database) throws {
        let statement = try db.cachedStatement(sql: Self.insertSQL)
        let raw = statement.sqliteStatement
        defer { sqlite3_reset(raw) }
        for step in steps {
            sqlite3_reset(raw)
            bind(raw, 1, step.trace_id)
            bind(raw, 2, step.span_id)
            bind(raw, 3, step.parent_span_id)
            bind(raw, 4, step.service)
            bind(raw, 5, step.instance)
            bind(raw, 6, step.user_id)
            bind(raw, 7, step.route)
            bind(raw, 8, step.path)
            bind(raw, 9, step.method)
            sqlite3_bind_int64(raw, 10, Int64(step.status_code))
            sqlite3_bind_int64(raw, 11, step.latency_us)
            bind(raw, 12, step.ip)
            bind(raw, 13, step.user_agent)
            sqlite3_bind_int64(raw, 14, step.created_at)
            let code = sqlite3_step(raw)
            guard code == SQLITE_DONE else {
                throw DatabaseError(
                    resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)), sql: Self.insertSQL
                )
            }
        }
    }

    private static func bind(_ statement: SQLiteStatement, _ index: Int32, _ text: String?) {
        guard var text else {
            sqlite3_bind_null(statement, index)
            return
        }
        text.withUTF8 { bytes in
            _ = bytes.withMemoryRebound(to: CChar.self) { chars in
                sqlite3_bind_text(statement, index, chars.baseAddress, Int32(chars.count), sqliteTransient)
            }
        }
    }

    /// `SQLITE_TRANSIENT`: SQLite copies the bytes before the call returns.
    private static let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    /// Every step of one trace, oldest first.
    public func steps(traceID: String) async throws -> [TraceStep] {
        try await self.database.read { db in
            try Self.fetch(db, sql: "SELECT * FROM \(Self.allSteps) WHERE trace_id = ? ORDER BY created_at", arguments: [traceID])
        }
    }

    public struct Filter: Sendable {
        public var userID: String?
        public var route: String?
        public var since: Int64?
        public var limit = 100
        public init() {}
    }

    /// Steps matching `filter`, newest first.
    public func steps(matching filter: Filter) async throws -> [TraceStep] {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let userID = filter.userID {
            conditions.append("user_id = ?")
            arguments += [userID]
        }
        if let route = filter.route {
            conditions.append("route = ?")
            arguments += [route]
        }
        if let since = filter.since {
            conditions.append("created_at >= ?")
            arguments += [since]
        }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        arguments += [filter.limit]
        // Each table's newest first (by index for trace_steps), then the newest of both.
        let names = Self.columns.joined(separator: ", ")
        let sql = """
            SELECT * FROM (SELECT \(names) FROM trace_steps \(whereClause) ORDER BY created_at DESC LIMIT ?)
            UNION ALL SELECT * FROM (SELECT \(names) FROM \(Self.pendingInbox) \(whereClause) ORDER BY created_at DESC LIMIT ?)
            ORDER BY created_at DESC LIMIT ?
            """
        let bound = arguments + arguments + [filter.limit]
        return try await self.database.read { db in try Self.fetch(db, sql: sql, arguments: bound) }
    }

    public func count() async throws -> Int {
        try await self.database.read { db in
            try Int.fetchOne(db, sql: "SELECT (SELECT COUNT(*) FROM trace_steps) + (SELECT COUNT(*) FROM \(Self.pendingInbox))") ?? 0
        }
    }

    /// Deletes up to `batch` rows older than `cutoff` (ms since the epoch); returns how many.
    public func deleteOlder(than cutoff: Int64, batch: Int = 1000) async throws -> Int {
        try self.writeSteps { db in try Self.deleteOlder(than: cutoff, batch: batch, in: db) }
    }

    public static func deleteOlder(than cutoff: Int64, batch: Int, in db: Database) throws -> Int {
        // Inbox rows are at most seconds old: only trace_steps holds rows to expire.
        try db.execute(
            sql: "DELETE FROM main.trace_steps WHERE id IN (SELECT id FROM main.trace_steps WHERE created_at < ? ORDER BY created_at LIMIT ?)",
            arguments: [cutoff, batch]
        )
        return db.changesCount
    }

    static func fetch(_ db: Database, sql: String, arguments: StatementArguments) throws -> [TraceStep] {
        try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
            TraceStep(
                trace_id: row["trace_id"], span_id: row["span_id"], parent_span_id: row["parent_span_id"], service: row["service"],
                instance: row["instance"], user_id: row["user_id"], route: row["route"], path: row["path"], method: row["method"],
                status_code: row["status_code"], latency_us: row["latency_us"], ip: row["ip"], user_agent: row["user_agent"],
                created_at: row["created_at"]
            )
        }
    }
}
