import Foundation
import HTTPTypes
import Hummingbird
import TitaniumHTTP
import TitaniumSQLite

/// The trace store's query routes on every service:
/// - `GET /traces/{trace_id}`: this store's steps of one trace, oldest first;
/// - `GET /traces?user_id=&route=&since=&limit=`: steps, newest first (limit 100, at most 1,000);
/// - `GET /traces/summary?since=`: per route count, mean and p95 latency, error rate; per user calls
///   (since defaults to the last hour);
/// - `GET /traces/recent?limit=`: the latest traces (limit 20, at most 200).
/// `since` is milliseconds since the epoch or an RFC 3339 time. With `ADMIN_TOKEN` set, every
/// route requires `Authorization: Bearer <token>` (they expose user ids and client IPs: ``AdminToken``).
public struct TraceRoutes: Sendable {
    let recorder: TraceRecorder
    let adminToken: AdminToken

    public init(recorder: TraceRecorder, adminToken: AdminToken) {
        self.recorder = recorder
        self.adminToken = adminToken
    }

    public struct StepList: Encodable, Sendable {
        public var trace_id: String?
        public var steps: [TraceStep]
    }

    public struct RecentList: Encodable, Sendable {
        public var traces: [TraceStore.TraceHeadline]
    }

    /// Registers the local routes, except a path the router serves already (the load balancer's
    /// merged `/traces/{trace_id}` and `/traces/recent`).
    public func register<Context: IdentifiedRequestContext>(on router: Router<Context>) {
        let store = self.recorder.store
        let adminToken = self.adminToken
        router.get("/traces") { request, _ in
            try adminToken.authorize(request, routes: Self.guarded)
            var filter = TraceStore.Filter()
            filter.userID = request.uri.queryParameters["user_id"].map(String.init)
            filter.route = request.uri.queryParameters["route"].map(String.init)
            filter.since = try Self.since(request, default: nil)
            filter.limit = try Self.limit(request, default: 100, maximum: 1000)
            return try JSONResponse(StepList(steps: try await store.steps(matching: filter))).response(status: .ok)
        }
        router.get("/traces/summary") { request, _ in
            try adminToken.authorize(request, routes: Self.guarded)
            let since = try Self.since(request, default: SQLiteDatabase.now() - 3_600_000)!
            return try JSONResponse(try await store.summary(since: since)).response(status: .ok)
        }
        if !router.hasRoute(.get, "/traces/recent") {
            router.get("/traces/recent") { request, _ in
                try adminToken.authorize(request, routes: Self.guarded)
                let limit = try Self.limit(request, default: 20, maximum: 200)
                return try JSONResponse(RecentList(traces: try await store.recentTraces(limit: limit))).response(status: .ok)
            }
        }
        if !router.hasRoute(.get, "/traces/{trace_id}") {
            router.get("/traces/{trace_id}") { request, context in
                try adminToken.authorize(request, routes: Self.guarded)
                let id = try Self.traceID(context)
                return try JSONResponse(StepList(trace_id: id, steps: try await store.steps(traceID: id))).response(status: .ok)
            }
        }
    }

    /// What a 401 names.
    public static let guarded = "the trace routes"

    /// The `{trace_id}` parameter: 1–64 characters of `[A-Za-z0-9._:-]`, else 400.
    public static func traceID(_ context: some RequestContext) throws -> String {
        let id = context.parameters.get("trace_id") ?? ""
        guard RequestID.accept(id) != nil, id.utf8.count <= 64 else {
            throw APIError(.badRequest, message: "trace_id must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'")
        }
        return id
    }

    public static func limit(_ request: Request, default defaultValue: Int, maximum: Int) throws -> Int {
        guard let raw = request.uri.queryParameters["limit"] else { return defaultValue }
        guard let value = Int(String(raw)), (1...maximum).contains(value) else {
            throw APIError(.badRequest, message: "limit must be an integer from 1 to \(maximum)")
        }
        return value
    }

    /// `since`: milliseconds since the epoch, or an RFC 3339 time.
    static func since(_ request: Request, default defaultValue: Int64?) throws -> Int64? {
        guard let raw = request.uri.queryParameters["since"].map(String.init) else { return defaultValue }
        if let milliseconds = Int64(raw), milliseconds >= 0 { return milliseconds }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let plain = ISO8601DateFormatter()
        if let date = formatter.date(from: raw) ?? plain.date(from: raw) { return Int64(date.timeIntervalSince1970 * 1000) }
        throw APIError(.badRequest, message: "since must be milliseconds since the epoch or an RFC 3339 time")
    }
}

/// One trace's steps from every service, merged into one tree: parents before children (depth
/// first, siblings by start time), each with its offset from the trace's start and its duration.
public struct TraceTree: Encodable, Sendable, Equatable {
    public struct Span: Encodable, Sendable, Equatable {
        public var step: TraceStep
        public var depth: Int
        public var offset_ms: Double
        public var duration_ms: Double

        public func encode(to encoder: any Encoder) throws {
            try self.step.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(self.depth, forKey: .depth)
            try container.encode(self.offset_ms, forKey: .offset_ms)
            try container.encode(self.duration_ms, forKey: .duration_ms)
        }

        enum Keys: String, CodingKey { case depth, offset_ms, duration_ms }
    }

    public var trace_id: String
    public var started_at: Int64
    public var duration_ms: Double
    public var spans: [Span]

    public init(traceID: String, steps: [TraceStep]) {
        // The same span reported twice (a retried fan-out) counts once.
        var unique: [String: TraceStep] = [:]
        for step in steps where unique[step.span_id] == nil { unique[step.span_id] = step }
        let all = unique.values.sorted { ($0.created_at, $0.span_id) < ($1.created_at, $1.span_id) }
        let start = all.first?.created_at ?? 0
        var children: [String: [TraceStep]] = [:]
        var roots: [TraceStep] = []
        for step in all {
            if let parent = step.parent_span_id, unique[parent] != nil {
                children[parent, default: []].append(step)
            } else {
                roots.append(step)
            }
        }
        var spans: [Span] = []
        func visit(_ step: TraceStep, depth: Int) {
            spans.append(Span(step: step, depth: depth, offset_ms: Double(step.created_at - start), duration_ms: Double(step.latency_us) / 1000))
            for child in children[step.span_id] ?? [] { visit(child, depth: depth + 1) }
        }
        for root in roots { visit(root, depth: 0) }
        self.trace_id = traceID
        self.started_at = start
        self.duration_ms = spans.map { $0.offset_ms + $0.duration_ms }.max() ?? 0
        self.spans = spans
    }
}
