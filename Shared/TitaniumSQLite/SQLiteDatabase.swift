import Foundation
import GRDB
import TitaniumLogging

/// How every service opens its SQLite database: a GRDB pool (WAL), a busy timeout so writers
/// wait for each other instead of failing, and the service's migrations.
public enum SQLiteDatabase {
    /// - Parameter synchronousNormal: `PRAGMA synchronous = NORMAL`: in WAL mode a commit no
    ///   longer waits for fsync (the database stays consistent; a power cut may lose the last
    ///   commits). For data that may lose its last second, such as the trace store. It also gives
    ///   each connection a 32 MiB page cache and keeps temporary b-trees in memory.
    /// - Parameter checkpointPages: `PRAGMA wal_autocheckpoint` (SQLite's default is 1,000
    ///   pages). More pages means fewer checkpoints: an index written at random places (trace
    ///   ids) re-dirties the same pages, and fewer checkpoints copy them fewer times. 0 leaves
    ///   checkpoints to the caller, off the path of the connection that writes.
    public static func open(
        path: String, label: String, migrator: DatabaseMigrator, busyTimeout: TimeInterval = 5, synchronousNormal: Bool = false,
        checkpointPages: Int? = nil, attach: [String: String] = [:]
    ) throws -> DatabasePool {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(busyTimeout)
        configuration.label = label
        if !attach.isEmpty {
            configuration.prepareDatabase { db in
                for (alias, file) in attach.sorted(by: { $0.key < $1.key }) {
                    try db.execute(sql: "ATTACH DATABASE ? AS \(alias)", arguments: [file])
                }
            }
        }
        if synchronousNormal {
            configuration.prepareDatabase { db in
                try db.execute(sql: "PRAGMA synchronous = NORMAL")
                try db.execute(sql: "PRAGMA cache_size = -32768")
                try db.execute(sql: "PRAGMA temp_store = MEMORY")
            }
        }
        if let checkpointPages {
            configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA wal_autocheckpoint = \(checkpointPages)") }
        }
        let pool = try DatabasePool(path: path, configuration: configuration)
        try migrator.migrate(pool)
        return pool
    }

    /// Milliseconds since the epoch, as stored in the tables.
    public static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// A stored millisecond time as RFC 3339 text.
    public static func timestamp(_ milliseconds: Int64) -> String {
        RFC3339.format(seconds: Int(milliseconds / 1000), milliseconds: Int(milliseconds % 1000))
    }
}

extension DatabasePool {
    /// A trivial read: throws when the database cannot be read (the health checks' probe).
    public func ping() async throws {
        _ = try await self.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }
}
