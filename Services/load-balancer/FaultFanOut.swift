import Foundation
import Hummingbird
import NIOHTTP1
import TitaniumHTTP

/// `PUT`, `GET` and `DELETE /admin/faults/{service}`: one fault for a whole service, set on every
/// instance the `/stats` fan-out knows (each pod of a headless Service), behind `ADMIN_TOKEN`.
/// The answer lists each instance's; it is 200 when every instance answered 200, the instances'
/// own 4xx when they refused the fault (a 422 names the field), else 502.
struct FaultFanOut: Sendable {
    let fanOut: InstanceFanOut
    let adminToken: AdminToken

    struct Instance: Encodable, Sendable {
        var url: String
        var status: Int
        var fault: JSONValue?
        var error: String?
    }

    struct Summary: Encodable, Sendable {
        var service: String
        var instances: [Instance]
    }

    func register(on router: Router<TitaniumRequestContext>) {
        router.put("/admin/faults/{service}") { request, context in
            try self.adminToken.authorize(request, routes: FaultRoutes<TitaniumRequestContext>.guarded)
            let service = try self.service(context)
            let fault = try await request.decodeJSON(as: [String: JSONValue].self, context: context)
            return try await self.relay(.PUT, service: service, body: ByteBuffer(bytes: try JSONEncoder().encode(fault)))
        }
        router.get("/admin/faults/{service}") { request, context in
            try self.adminToken.authorize(request, routes: FaultRoutes<TitaniumRequestContext>.guarded)
            return try await self.relay(.GET, service: try self.service(context))
        }
        router.delete("/admin/faults/{service}") { request, context in
            try self.adminToken.authorize(request, routes: FaultRoutes<TitaniumRequestContext>.guarded)
            return try await self.relay(.DELETE, service: try self.service(context))
        }
    }

    /// The `{service}` parameter: a `STATS_TARGETS` name, else 404.
    private func service(_ context: TitaniumRequestContext) throws -> String {
        let names = Set(self.fanOut.targets.map(\.name))
        guard let name = context.parameters.get("service"), names.contains(name) else {
            throw APIError(.notFound, message: "no such service; known: \(names.sorted().joined(separator: ", "))")
        }
        return name
    }

    private func relay(_ method: HTTPMethod, service: String, body: ByteBuffer? = nil) async throws -> Response {
        let answers = await self.fanOut.call(method, "/admin/faults", body: body, headers: self.adminToken.authorizationHeader, name: service)
        var instances: [Instance] = []
        for answer in answers {
            switch answer.result {
            case .success(let reply):
                // A refusal (422 naming the field, 401) is the same on every instance: passed on as it came.
                if (400..<500).contains(reply.status) {
                    return Response(
                        status: .init(code: reply.status), headers: [.contentType: "application/json; charset=utf-8"],
                        body: .init(byteBuffer: reply.body)
                    )
                }
                let decoded = try? JSONDecoder().decode([String: JSONValue].self, from: Data(reply.body.readableBytesView))
                instances.append(Instance(
                    url: answer.target.url, status: reply.status, fault: decoded?["fault"],
                    error: reply.status == 200 ? nil : "answered \(reply.status)"
                ))
            case .failure(let error):
                instances.append(Instance(url: answer.target.url, status: 0, error: "\(error)"))
            }
        }
        let allApplied = !instances.isEmpty && instances.allSatisfy { $0.status == 200 }
        return try JSONResponse(Summary(service: service, instances: instances)).response(status: allApplied ? .ok : .badGateway)
    }
}
