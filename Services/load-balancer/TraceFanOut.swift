import Foundation
import Hummingbird
import TitaniumHTTP
import TitaniumTrace

/// The load balancer's `/traces/{trace_id}` and `/traces/recent`: every service instance (the
/// `/stats` targets, a multi-address host asked at each address, 1.9 s each) is asked in parallel,
/// its own store is read directly, and the answers are merged: one trace as one tree
/// (``TraceTree``), recent traces as one list by trace id. Each source is reported with its
/// status, so a missing service shows as OFFLINE rather than as a silently shorter trace.
struct TraceFanOut: Sendable {
    let fanOut: InstanceFanOut
    let local: TraceRecorder?
    let adminToken: AdminToken

    struct Source: Encodable, Sendable {
        var name: String
        var url: String
        var status: String
        var error: String?
        var count: Int
    }

    struct MergedTrace: Encodable, Sendable {
        var tree: TraceTree
        var sources: [Source]

        func encode(to encoder: any Encoder) throws {
            try self.tree.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(self.sources, forKey: .sources)
        }

        enum Keys: String, CodingKey { case sources }
    }

    struct MergedRecent: Encodable, Sendable {
        var traces: [TraceStore.TraceHeadline]
        var sources: [Source]
    }

    struct RemoteSteps: Decodable, Sendable { var steps: [TraceStep] }
    struct RemoteRecent: Decodable, Sendable { var traces: [TraceStore.TraceHeadline] }

    func register(on router: Router<TitaniumRequestContext>) {
        router.get("/traces/{trace_id}") { request, context in
            try self.adminToken.authorize(request, routes: TraceRoutes.guarded)
            let merged = await self.trace(id: try TraceRoutes.traceID(context))
            guard !merged.tree.spans.isEmpty else {
                throw APIError(.notFound, message: "no service has recorded trace \(merged.tree.trace_id)")
            }
            return try JSONResponse(merged).response(status: .ok)
        }
        router.get("/traces/recent") { request, _ in
            try self.adminToken.authorize(request, routes: TraceRoutes.guarded)
            let limit = try TraceRoutes.limit(request, default: 20, maximum: 200)
            return try JSONResponse(await self.recent(limit: limit)).response(status: .ok)
        }
    }

    /// Every instance's answer for `path`, in parallel, with this load balancer's own first.
    private func gather<Body: Decodable & Sendable>(
        _ path: String, _ type: Body.Type, local: @Sendable () async throws -> Body?
    ) async -> [(Source, Body?)] {
        let headers = self.adminToken.authorizationHeader
        var results: [(Source, Body?)] = await self.fanOut.gather(path, as: Body.self, headers: headers).map { answer in
            let target = answer.target
            return switch answer.result {
            case .success(let body): (Source(name: target.name, url: target.url, status: "ONLINE", count: 0), body)
            case .failure(let error): (Source(name: target.name, url: target.url, status: "OFFLINE", error: "\(error)", count: 0), nil)
            }
        }
        if self.local != nil {
            let own = Source(name: "load-balancer", url: "local", status: "ONLINE", count: 0)
            do {
                results.insert((own, try await local()), at: 0)
            } catch {
                results.insert((Source(name: own.name, url: own.url, status: "OFFLINE", error: "\(error)", count: 0), nil), at: 0)
            }
        }
        return results
    }

    func trace(id: String) async -> MergedTrace {
        let answers = await self.gather("/traces/\(id)", RemoteSteps.self) { [local] in
            guard let local else { return nil }
            return RemoteSteps(steps: try await local.store.steps(traceID: id))
        }
        var steps: [TraceStep] = []
        var sources: [Source] = []
        for (source, body) in answers {
            var source = source
            source.count = body?.steps.count ?? 0
            steps += body?.steps ?? []
            sources.append(source)
        }
        return MergedTrace(tree: TraceTree(traceID: id, steps: steps), sources: sources)
    }

    func recent(limit: Int) async -> MergedRecent {
        let answers = await self.gather("/traces/recent?limit=\(limit)", RemoteRecent.self) { [local] in
            guard let local else { return nil }
            return RemoteRecent(traces: try await local.store.recentTraces(limit: limit))
        }
        var byID: [String: [TraceStore.TraceHeadline]] = [:]
        var sources: [Source] = []
        for (source, body) in answers {
            var source = source
            source.count = body?.traces.count ?? 0
            sources.append(source)
            for headline in body?.traces ?? [] { byID[headline.trace_id, default: []].append(headline) }
        }
        let traces = byID.values.compactMap(Self.merge).sorted { ($0.started_at, $0.trace_id) > ($1.started_at, $1.trace_id) }.prefix(limit)
        return MergedRecent(traces: Array(traces), sources: sources)
    }

    /// One trace as several stores saw it, in call order: a store's root that was called from
    /// another store's root comes after it (clock order only breaks ties); the first one's root
    /// is the trace's, ends and steps cover all, services are listed as called.
    static func merge(_ headlines: [TraceStore.TraceHeadline]) -> TraceStore.TraceHeadline? {
        var left = headlines.sorted { ($0.started_at, $0.root_span_id) < ($1.started_at, $1.root_span_id) }
        var ordered: [TraceStore.TraceHeadline] = []
        var placed: Set<String> = []
        while !left.isEmpty {
            let spans = Set(left.map(\.root_span_id))
            // Next: one whose caller is not still waiting to be placed.
            let index = left.firstIndex { $0.root_parent_span_id.map { !spans.contains($0) || placed.contains($0) } ?? true } ?? 0
            let next = left.remove(at: index)
            placed.insert(next.root_span_id)
            ordered.append(next)
        }
        guard var merged = ordered.first else { return nil }
        for other in ordered.dropFirst() {
            merged.started_at = min(merged.started_at, other.started_at)
            merged.ended_at = max(merged.ended_at, other.ended_at)
            merged.steps += other.steps
            for service in other.services where !merged.services.contains(service) { merged.services.append(service) }
            merged.user_id = merged.user_id ?? other.user_id
        }
        return merged
    }
}
