import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import JWTKit
import NIOCore
import TestSupport
import Testing
import TitaniumAuth
import TitaniumHTTP

@testable import BlogService

/// blog-service's router in this process: a real SQLite file, tokens from a local issuer, and a
/// stand-in user-service that says whose password changed.
@Suite struct PostControllerTests {
    struct Page: Decodable {
        var posts: [Post]
        var total: Int
        var limit: Int
        var offset: Int
    }

    /// user-service's `/internal/users/{id}/password-version`: users 1 and 2 never changed their
    /// password, user 3 did once; anyone else does not exist.
    static var userService: Router<BasicRequestContext> {
        let router = Router()
        router.get("/internal/users/{id}/password-version") { _, context -> Response in
            let versions: [Int64: Int] = [1: 0, 2: 0, 3: 1]
            guard let id = context.parameters.get("id").flatMap(Int64.init), let version = versions[id] else {
                return Response(status: .notFound)
            }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: #"{"id":\#(id),"password_version":\#(version)}"#)))
        }
        return router
    }

    /// Runs `test` against blog-service's router (user-service at `userServicePort`) and the
    /// kit's operational routes; `tokens` signs a token for a user id.
    static func withBlogService(
        userServicePort: Int,
        _ test: @escaping @Sendable (_ client: any TestClientProtocol, _ token: @escaping @Sendable (Int64, String) async throws -> String) async throws -> Void
    ) async throws {
        let directory = try temporaryDirectory("blog-service-tests")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("blog.db").path
        let kit = try makeTestKit(service: "blog-service")
        let client = kit.makeHTTPClient()
        let issuer = try await TokenIssuer(key: ES256PrivateKey(), policy: TokenPolicy(), lifetime: .seconds(60))
        let router = buildRouter(
            kit: kit, store: try SQLitePostStore(path: path), pages: PageCache(), verifier: .local(issuer),
            passwords: PasswordVersions(client: client, userServiceURL: "http://127.0.0.1:\(userServicePort)")
        )
        try await kit.makeApplication(router: router, services: [client]).test(.router) { testClient in
            try await test(testClient) { id, name in try await issuer.issue(userID: id, username: name).token }
        }
    }

    static func send(
        _ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, token: String? = nil, json: String? = nil
    ) async throws -> TestResponse {
        try await client.execute(uri: uri, method: method, headers: .json(token: token), body: json.map { ByteBuffer(string: $0) })
    }

    @Test func onlyTheAuthorChangesAPostAndTheListFollows() async throws {
        try await withServer(Self.userService) { port in
            try await Self.withBlogService(userServicePort: port) { client, token in
                let alice = try await token(1, "alice")
                let bob = try await token(2, "bob")
                let anonymous = try await Self.send(client, .post, "/api/posts", json: #"{"title":"t","body":"b"}"#)
                #expect(anonymous.status == .unauthorized)
                #expect(try anonymous.apiError().code == "unauthorized")

                let created = try await Self.send(client, .post, "/api/posts", token: alice, json: #"{"title":"Hello","body":"First post"}"#)
                #expect(created.status == .created)
                let post = try created.decode(Post.self)
                #expect(post.author == "alice" && post.author_id == 1)
                #expect(created.headers[.location] == "/api/posts/\(post.id)")

                func titles() async throws -> [String] {
                    try await client.execute(uri: "/api/posts", method: .get).decode(Page.self).posts.map(\.title)
                }
                #expect(try await titles() == ["Hello"])
                #expect(try await titles() == ["Hello"])  // from the page cache

                let hijack = try await Self.send(client, .patch, "/api/posts/\(post.id)", token: bob, json: #"{"title":"Hijacked"}"#)
                #expect(hijack.status == .forbidden)
                #expect(try hijack.apiError().message == "only the author may change this post")
                #expect(try await Self.send(client, .delete, "/api/posts/\(post.id)", token: bob).status == .forbidden)
                #expect(try await titles() == ["Hello"])

                let patched = try await Self.send(client, .patch, "/api/posts/\(post.id)", token: alice, json: #"{"title":"Hello, again"}"#)
                #expect(patched.status == .ok)
                #expect(try patched.decode(Post.self).body == "First post")
                #expect(try await titles() == ["Hello, again"])

                #expect(try await Self.send(client, .delete, "/api/posts/\(post.id)", token: alice).status == .noContent)
                let gone = try await client.execute(uri: "/api/posts/\(post.id)", method: .get)
                #expect(gone.status == .notFound)
                #expect(try gone.apiError().code == "not_found")
                #expect(try await Self.send(client, .delete, "/api/posts/\(post.id)", token: alice).status == .notFound)
                #expect(try await titles() == [])

                let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
                #expect(metrics.contains("posts_created_total 1") && metrics.contains("posts_updated_total 1") && metrics.contains("posts_deleted_total 1"))
            }
        }
    }

    @Test func badInputIsRefusedInTheErrorShape() async throws {
        try await withServer(Self.userService) { port in
            try await Self.withBlogService(userServicePort: port) { client, token in
                let alice = try await token(1, "alice")
                let malformed = try await Self.send(client, .post, "/api/posts", token: alice, json: "{oops")
                #expect(malformed.status == .badRequest)
                #expect(try malformed.apiError().code == "malformed_json")
                let empty = try await Self.send(client, .post, "/api/posts", token: alice, json: #"{"title":"","body":"x"}"#)
                #expect(empty.status == .unprocessableContent)
                #expect(try empty.apiError().fields == ["title": "must be 1 to 200 characters and at most 800 bytes"])
                let nothing = try await Self.send(client, .patch, "/api/posts/1", token: alice, json: "{}")
                #expect(try nothing.apiError().fields == ["title": "title or body is required"])
                let limit = try await client.execute(uri: "/api/posts?limit=abc&offset=-2", method: .get)
                #expect(limit.status == .unprocessableContent)
                #expect(try limit.apiError().fields.map { Set($0.keys) } == ["limit", "offset"])
                let clamped = try await client.execute(uri: "/api/posts?limit=500", method: .get).decode(Page.self)
                #expect(clamped.limit == 100 && clamped.total == 0)
                #expect(try await client.execute(uri: "/api/posts/abc", method: .get).status == .notFound)

                // SQL-looking and non-ASCII text comes back exactly.
                let tricky = "Robert'); DROP TABLE posts;-- 한국어 🚀 \\\" ✓"
                let created = try await Self.send(client, .post, "/api/posts", token: alice, json: #"{"title":"tricky","body":"\#(tricky)"}"#)
                let id = try created.decode(Post.self).id
                let read = try await client.execute(uri: "/api/posts/\(id)", method: .get).decode(Post.self)
                #expect(read.body == "Robert'); DROP TABLE posts;-- 한국어 🚀 \" ✓")
            }
        }
    }

    /// A write's token must still be current, which only user-service can say: a token from
    /// before a password change is 401, and with user-service unreachable the write is 502.
    @Test func aRetiredTokenOrAnUnreachableUserServiceStopsAWrite() async throws {
        try await withServer(Self.userService) { port in
            try await Self.withBlogService(userServicePort: port) { client, token in
                let retired = try await Self.send(client, .post, "/api/posts", token: try await token(3, "carol"), json: #"{"title":"t","body":"b"}"#)
                #expect(retired.status == .unauthorized)
                #expect(retired.headers[.wwwAuthenticate] == #"Bearer error="invalid_token""#)
                let unknown = try await Self.send(client, .post, "/api/posts", token: try await token(9, "ghost"), json: #"{"title":"t","body":"b"}"#)
                #expect(unknown.status == .unauthorized)
            }
        }
        try await Self.withBlogService(userServicePort: try Ports.refused()) { client, token in
            let answer = try await Self.send(client, .post, "/api/posts", token: try await token(1, "alice"), json: #"{"title":"t","body":"b"}"#)
            #expect(answer.status == .badGateway)
            #expect(try answer.apiError().code == "bad_gateway")
        }
    }
}
