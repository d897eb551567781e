import Foundation
import Hummingbird
import NIOCore
import Prometheus
import TitaniumAuth
import TitaniumHTTP

/// The post routes. Reads are public; writes need a valid token, and only a post's author may
/// change or delete it.
struct PostController: Sendable {
    let store: any PostStore
    let pages: PageCache
    let verifier: TokenVerifier
    /// Writes refuse a token retired by a password change (user-service is asked).
    let passwords: PasswordVersions
    let created: Counter
    let updated: Counter
    let deleted: Counter

    func register(on router: Router<TitaniumRequestContext>) {
        router.get("/api/posts", use: self.list)
        router.post("/api/posts", use: self.create)
        router.get("/api/posts/{id}", use: self.show)
        router.patch("/api/posts/{id}", use: self.update)
        router.delete("/api/posts/{id}", use: self.delete)
    }

    struct Page: Encodable, Sendable {
        var posts: [Post]
        var total: Int
        var limit: Int
        var offset: Int
    }

    @Sendable func list(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        var problems: [String: String] = [:]
        let limit = Self.integer(request.uri.queryParameters["limit"], default: 20, range: 1...Int.max, field: "limit", problems: &problems)
        let offset = Self.integer(request.uri.queryParameters["offset"], default: 0, range: 0...Int.max, field: "offset", problems: &problems)
        guard problems.isEmpty else { throw APIError.validation(problems) }
        let clamped = min(limit, 100)
        let key = PageCache.Key(limit: clamped, offset: offset)
        let version = try await self.store.changeVersion()
        if let page = self.pages.page(key, version: version) {
            return .json(page)
        }
        let (posts, total) = try await self.store.list(limit: clamped, offset: offset)
        let page = ByteBuffer(bytes: try JSONResponseEncoding.encode(Page(posts: posts, total: total, limit: clamped, offset: offset)))
        self.pages.store(page, for: key, version: version)
        return .json(page)
    }

    @Sendable func show(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        guard let post = try await self.store.post(id: try Self.id(context)) else { throw Self.notFound }
        return try JSONResponse(post).response(status: .ok)
    }

    struct PostInput: Decodable {
        var title: String?
        var body: String?
    }

    /// The verified claims of a write's token, not retired by a password change.
    private func writer(_ request: Request, context: TitaniumRequestContext) async throws -> AccessClaims {
        let claims = try await self.verifier.claims(for: request, context: context)
        try await self.passwords.requireCurrent(claims)
        return claims
    }

    @Sendable func create(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        let claims = try await self.writer(request, context: context)
        let input = try await request.decodeJSON(as: PostInput.self, context: context)
        let problems = Self.problems(input, partial: false)
        guard problems.isEmpty, let title = input.title, let body = input.body, let authorID = claims.userID else {
            throw APIError.validation(problems)
        }
        let post = try await self.store.create(authorID: authorID, author: claims.username, title: title, body: body)
        self.created.increment()
        var response = try JSONResponse(post).response(status: .created)
        response.headers[.location] = "/api/posts/\(post.id)"
        return response
    }

    @Sendable func update(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        let claims = try await self.writer(request, context: context)
        let id = try Self.id(context)
        let input = try await request.decodeJSON(as: PostInput.self, context: context)
        var problems = Self.problems(input, partial: true)
        if input.title == nil && input.body == nil { problems["title"] = "title or body is required" }
        guard problems.isEmpty else { throw APIError.validation(problems) }
        switch try await self.store.update(id: id, authorID: claims.userID ?? -1, title: input.title, body: input.body) {
        case .done(let post?):
            self.updated.increment()
            return try JSONResponse(post).response(status: .ok)
        case .done(nil), .notFound:
            throw Self.notFound
        case .forbidden:
            throw APIError(.forbidden, message: "only the author may change this post")
        }
    }

    @Sendable func delete(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        let claims = try await self.writer(request, context: context)
        switch try await self.store.delete(id: try Self.id(context), authorID: claims.userID ?? -1) {
        case .done:
            self.deleted.increment()
            return Response(status: .noContent)
        case .notFound:
            throw Self.notFound
        case .forbidden:
            throw APIError(.forbidden, message: "only the author may delete this post")
        }
    }

    static let notFound = APIError(.notFound, message: "no such post")

    static func id(_ context: TitaniumRequestContext) throws -> Int64 {
        guard let id = context.parameters.get("id").flatMap(Int64.init), id > 0 else { throw Self.notFound }
        return id
    }

    static func integer(_ raw: Substring?, default value: Int, range: ClosedRange<Int>, field: String, problems: inout [String: String]) -> Int {
        guard let raw else { return value }
        guard let number = Int(raw), range.contains(number) else {
            problems[field] = range.lowerBound == 0 ? "must be a whole number ≥ 0" : "must be a whole number ≥ \(range.lowerBound)"
            return value
        }
        return number
    }

    /// Title 1–200 characters and at most 800 bytes of UTF-8, body 1–20000 characters and at most
    /// 80000 bytes: a character can be any number of bytes (combining marks), and storage and
    /// page sizes are bytes. No NUL character: SQLite is handed text as a C string (GRDB), so
    /// everything after one would be lost. `partial` for PATCH, where each may be absent.
    static func problems(_ input: PostInput, partial: Bool) -> [String: String] {
        var problems: [String: String] = [:]
        if let title = input.title {
            if !(1...200).contains(title.count) || title.utf8.count > 800 || title.allSatisfy(\.isWhitespace) {
                problems["title"] = "must be 1 to 200 characters and at most 800 bytes"
            } else if title.utf8.contains(0) {
                problems["title"] = "must not contain a NUL character"
            }
        } else if !partial {
            problems["title"] = "is required"
        }
        if let body = input.body {
            if !(1...20_000).contains(body.count) || body.utf8.count > 80_000 || body.allSatisfy(\.isWhitespace) {
                problems["body"] = "must be 1 to 20000 characters and at most 80000 bytes"
            } else if body.utf8.contains(0) {
                problems["body"] = "must not contain a NUL character"
            }
        } else if !partial {
            problems["body"] = "is required"
        }
        return problems
    }
}
