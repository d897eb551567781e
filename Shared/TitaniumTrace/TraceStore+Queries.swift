import Foundation
import GRDB
import TitaniumSQLite

/// The aggregate queries behind `/traces/summary` and `/traces/recent`.
extension TraceStore {
    public struct RouteSummary: Codable, Sendable, Equatable {
        public var route: String
        public var method: String
        public var count: Int
        public var mean_latency_ms: Double
        public var p95_latency_ms: Double
        public var error_rate: Double
    }

    public struct UserSummary: Codable, Sendable, Equatable {
        public var user_id: String
        public var calls: Int
    }

    public struct Summary: Codable, Sendable, Equatable {
        public var since: Int64
        public var routes: [RouteSummary]
        public var users: [UserSummary]
    }

    /// Per route: count, mean and p95 latency, error rate (5xx); per user: calls. Since `since`.
    public func summary(since: Int64) async throws -> Summary {
        try await self.database.read { db in
            let routes = try Row.fetchAll(
                db,
                sql: """
                    WITH ranked AS (
                        SELECT route, method, latency_us, status_code,
                               ROW_NUMBER() OVER (PARTITION BY route, method ORDER BY latency_us) AS position,
                               COUNT(*) OVER (PARTITION BY route, method) AS total
                        FROM \(Self.allSteps) WHERE created_at >= ?
                    )
                    SELECT route, method, total AS count, AVG(latency_us) AS mean_us,
                           MIN(CASE WHEN position >= (total * 95 + 99) / 100 THEN latency_us END) AS p95_us,
                           SUM(CASE WHEN status_code >= 500 THEN 1 ELSE 0 END) AS errors
                    FROM ranked GROUP BY route, method ORDER BY count DESC, route
                    """,
                arguments: [since]
            ).map { row in
                let count: Int = row["count"]
                let errors: Int = row["errors"]
                let mean: Double = row["mean_us"]
                let p95: Int64 = row["p95_us"]
                return RouteSummary(
                    route: row["route"], method: row["method"], count: count, mean_latency_ms: (mean / 10).rounded() / 100,
                    p95_latency_ms: Double(p95) / 1000, error_rate: Double(errors) / Double(max(count, 1))
                )
            }
            let users = try Row.fetchAll(
                db,
                sql: """
                    SELECT user_id, COUNT(*) AS calls FROM \(Self.allSteps)
                    WHERE created_at >= ? AND user_id IS NOT NULL
                    GROUP BY user_id ORDER BY calls DESC, user_id LIMIT 100
                    """,
                arguments: [since]
            ).map { UserSummary(user_id: $0["user_id"], calls: $0["calls"]) }
            return Summary(since: since, routes: routes, users: users)
        }
    }

    public struct TraceHeadline: Codable, Sendable, Equatable {
        public var trace_id: String
        public var started_at: Int64
        public var ended_at: Int64
        public var steps: Int
        public var services: [String]
        public var root_route: String
        /// The root's path, which says more than a catch-all route (`/api/**`).
        public var root_path: String
        public var root_method: String
        /// The root step's own span and its caller's (outside this store), so that headlines
        /// of one trace from several stores can be put in call order.
        public var root_span_id: String
        public var root_parent_span_id: String?
        public var status_code: Int
        public var user_id: String?
    }

    /// The latest traces, newest first: when they started and ended, how many steps, which services.
    public func recentTraces(limit: Int) async throws -> [TraceHeadline] {
        try await self.database.read { db in
            let ids = try String.fetchAll(
                db,
                sql: """
                    SELECT trace_id FROM (
                        SELECT * FROM (SELECT trace_id, created_at FROM trace_steps ORDER BY created_at DESC LIMIT ?)
                        UNION ALL SELECT * FROM (SELECT trace_id, created_at FROM \(Self.pendingInbox) ORDER BY created_at DESC LIMIT ?)
                    )
                    GROUP BY trace_id ORDER BY MAX(created_at) DESC LIMIT ?
                    """,
                // The newest steps are enough to find the newest traces.
                arguments: [limit * 50, limit * 50, limit]
            )
            return try ids.compactMap { id in
                Self.headline(try Self.fetch(db, sql: "SELECT * FROM \(Self.allSteps) WHERE trace_id = ? ORDER BY created_at", arguments: [id]))
            }
        }
    }

    /// A trace's summary line from its steps: the root is the step whose parent is not among them.
    public static func headline(_ steps: [TraceStep]) -> TraceHeadline? {
        guard let first = steps.min(by: { $0.created_at < $1.created_at }) else { return nil }
        let tree = TraceTree(traceID: first.trace_id, steps: steps)
        let root = tree.spans.first?.step ?? first
        // In call order (parents before children), not by clock: starts a millisecond apart tie.
        var services: [String] = []
        for span in tree.spans where !services.contains(span.step.service) {
            services.append(span.step.service)
        }
        let ends: [Int64] = steps.map { step in step.created_at + (step.latency_us + 999) / 1000 }
        let userID: String? = steps.first { $0.user_id != nil }?.user_id
        return TraceHeadline(
            trace_id: first.trace_id, started_at: first.created_at, ended_at: ends.max() ?? first.created_at,
            steps: steps.count, services: services, root_route: root.route, root_path: root.path, root_method: root.method,
            root_span_id: root.span_id, root_parent_span_id: root.parent_span_id, status_code: root.status_code, user_id: userID
        )
    }
}
