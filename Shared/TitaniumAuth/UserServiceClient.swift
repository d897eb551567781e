import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import TitaniumHTTP

/// user-service's internal API as auth- and blog-service call it. The bodies are declared here
/// once: user-service answers with these same types.
public struct UserServiceClient: Sendable {
    /// `POST /internal/users/authenticate`'s body (fields optional: a missing one is a 422).
    public struct LoginCredentials: Codable, Sendable {
        public var username: String?
        public var password: String?

        public init(username: String?, password: String?) {
            self.username = username
            self.password = password
        }
    }

    /// Its answer for credentials that match.
    public struct AuthenticatedUser: Codable, Sendable, Equatable {
        public var id: Int64
        public var username: String
        /// Absent from a user-service older than the claim: version 0.
        public var password_version: Int?

        public init(id: Int64, username: String, password_version: Int?) {
            self.id = id
            self.username = username
            self.password_version = password_version
        }
    }

    /// `GET /internal/users/{id}/password-version`'s answer.
    public struct PasswordVersion: Codable, Sendable, Equatable {
        public var id: Int64
        public var password_version: Int

        public init(id: Int64, password_version: Int) {
            self.id = id
            self.password_version = password_version
        }
    }

    let client: OutboundHTTPClient
    let baseURL: String

    public init(client: OutboundHTTPClient, baseURL: String) {
        self.client = client
        self.baseURL = baseURL
    }

    /// The user these credentials belong to, or nil when user-service refuses them (401, 422).
    /// 502 or 504 when user-service cannot say.
    public func authenticate(_ credentials: LoginCredentials) async throws -> AuthenticatedUser? {
        var request = HTTPClientRequest(url: self.baseURL + "/internal/users/authenticate")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(credentials)))
        let (status, body) = try await self.send(request, timeout: nil)
        switch status {
        case 200: return try Self.decode(AuthenticatedUser.self, from: body)
        case 401, 422: return nil
        default: throw APIError(.badGateway, message: "user-service answered \(status)")
        }
    }

    /// The user's current password version, or nil when there is no such user (within 1 s).
    public func passwordVersion(of userID: Int64) async throws -> Int? {
        let request = HTTPClientRequest(url: self.baseURL + "/internal/users/\(userID)/password-version")
        let (status, body) = try await self.send(request, timeout: .seconds(1))
        switch status {
        case 200: return try Self.decode(PasswordVersion.self, from: body).password_version
        case 404: return nil
        default: throw APIError(.badGateway, message: "user-service answered \(status)")
        }
    }

    private func send(_ request: HTTPClientRequest, timeout: Duration?) async throws -> (status: UInt, body: ByteBuffer) {
        do {
            let response = try await self.client.execute(request, timeout: timeout)
            return (response.status.code, try await response.body.collect(upTo: 1 << 16))
        } catch {
            throw APIError.upstream(error, service: "user-service")
        }
    }

    private static func decode<Body: Decodable>(_ type: Body.Type, from body: ByteBuffer) throws -> Body {
        do {
            return try JSONDecoder().decode(type, from: Data(body.readableBytesView))
        } catch {
            throw APIError(.badGateway, message: "user-service answered an unreadable body")
        }
    }
}
