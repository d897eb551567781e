import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import TitaniumHTTP

/// Whether a token is retired: user-service counts each user's password changes and login puts
/// the count into the token, so a token of an older count was issued before the last change.
/// Only user-service knows the current count: it is asked each time (1 s at most). When it cannot
/// say, the answer is 502 or 504, never a token vouched for that may be retired.
public struct PasswordVersions: Sendable {
    let client: OutboundHTTPClient
    let userServiceURL: String

    public init(client: OutboundHTTPClient, userServiceURL: String) {
        self.client = client
        self.userServiceURL = userServiceURL
    }

    /// 401 unless `claims` carry the user's current password version.
    public func requireCurrent(_ claims: AccessClaims) async throws {
        guard let userID = claims.userID, try await self.current(of: userID) == claims.passwordVersion else {
            throw APIError(
                .unauthorized, message: "token is no longer valid (the password changed since it was issued); log in again",
                headers: [.wwwAuthenticate: #"Bearer error="invalid_token""#]
            )
        }
    }

    struct Answer: Decodable {
        var password_version: Int
    }

    /// The user's current password version; nil when there is no such user.
    public func current(of userID: Int64) async throws -> Int? {
        let response: HTTPClientResponse
        let payload: ByteBuffer
        do {
            response = try await self.client.execute(
                HTTPClientRequest(url: self.userServiceURL + "/internal/users/\(userID)/password-version"), timeout: .seconds(1)
            )
            payload = try await response.body.collect(upTo: 1 << 16)
        } catch {
            throw APIError.upstream(error, service: "user-service")
        }
        switch response.status.code {
        case 200:
            guard let answer = try? JSONDecoder().decode(Answer.self, from: Data(payload.readableBytesView)) else {
                throw APIError(.badGateway, message: "user-service answered an unreadable password version")
            }
            return answer.password_version
        case 404:
            return nil
        default:
            throw APIError(.badGateway, message: "user-service answered \(response.status.code)")
        }
    }
}
