import HTTPTypes
import Hummingbird

/// `PUT`, `GET` and `DELETE /admin/faults`: set, show and remove this service's fault
/// (``Faults``), behind `ADMIN_TOKEN` as the trace routes are.
public struct FaultRoutes<Context: IdentifiedRequestContext>: Sendable {
    let faults: Faults
    let adminToken: AdminToken

    /// What a 401 names (the load balancer's `/admin/faults/{service}` too).
    public static var guarded: String { "the fault routes" }

    /// `{"fault": ...}`, with `null` when there is none.
    struct Answer: Encodable, Sendable {
        var fault: Faults.Active?
        var removed: Bool?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(self.fault, forKey: .fault)
            try container.encodeIfPresent(self.removed, forKey: .removed)
        }

        enum Keys: String, CodingKey { case fault, removed }
    }

    func register(on router: Router<Context>) {
        router.put("/admin/faults") { request, context in
            try self.adminToken.authorize(request, routes: Self.guarded)
            let body = try await request.decodeJSON(as: [String: JSONValue].self, context: context)
            let spec = try FaultSpec(json: body, dependencies: self.faults.dependencies)
            return try JSONResponse(Answer(fault: self.faults.apply(spec))).response(status: .ok)
        }
        router.get("/admin/faults") { request, _ in
            try self.adminToken.authorize(request, routes: Self.guarded)
            return try JSONResponse(Answer(fault: self.faults.current)).response(status: .ok)
        }
        router.delete("/admin/faults") { request, _ in
            try self.adminToken.authorize(request, routes: Self.guarded)
            return try JSONResponse(Answer(fault: nil, removed: self.faults.remove())).response(status: .ok)
        }
    }
}

/// Applies the fault in force to each request it matches: the delay first, then the error or the
/// hang. It runs inside the observability middleware, so what it does is measured, logged and
/// traced as any answer is: `/stats` shows an injected failure as it shows an organic one, and
/// names the fault beside it.
public struct FaultMiddleware<Context: IdentifiedRequestContext>: RouterMiddleware {
    let faults: Faults
    let drain: DrainState

    public init(faults: Faults, drain: DrainState) {
        self.faults = faults
        self.drain = drain
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let (spec, generation) = self.faults.affecting(path: request.uri.path) else {
            return try await next(request, context)
        }
        if spec.latencyMilliseconds > 0 {
            let jitter = spec.jitterMilliseconds > 0 ? Int.random(in: -spec.jitterMilliseconds...spec.jitterMilliseconds) : 0
            try await Task.sleep(for: .milliseconds(max(0, spec.latencyMilliseconds + jitter)))
        }
        if spec.hang {
            // Until the fault ends (removed, replaced or expired, at most an hour) or the process
            // drains: a hung request must not hold a shutdown.
            while self.faults.isInForce(generation: generation), !self.drain.isDraining {
                try await Task.sleep(for: .milliseconds(100))
            }
            throw APIError(.serviceUnavailable, code: "injected_fault", message: "the request hung on an injected fault until it ended")
        }
        if spec.errorRate > 0, Double.random(in: 0..<1) < spec.errorRate {
            throw APIError(HTTPResponse.Status(code: spec.errorStatus), code: "injected_fault", message: "an injected fault answered this request")
        }
        return try await next(request, context)
    }
}
