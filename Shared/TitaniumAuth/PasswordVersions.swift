import HTTPTypes
import TitaniumHTTP

/// Whether a token is retired: user-service counts each user's password changes and login puts
/// the count into the token, so a token of an older count was issued before the last change.
/// Only user-service knows the current count: it is asked each time (1 s at most). When it cannot
/// say, the answer is 502 or 504, never a token vouched for that may be retired.
public struct PasswordVersions: Sendable {
    let users: UserServiceClient

    public init(client: OutboundHTTPClient, userServiceURL: String) {
        self.users = UserServiceClient(client: client, baseURL: userServiceURL)
    }

    /// 401 unless `claims` carry the user's current password version.
    public func requireCurrent(_ claims: AccessClaims) async throws {
        guard let userID = claims.userID, try await self.users.passwordVersion(of: userID) == claims.passwordVersion else {
            throw APIError(
                .unauthorized, message: "token is no longer valid (the password changed since it was issued); log in again",
                headers: [.wwwAuthenticate: #"Bearer error="invalid_token""#]
            )
        }
    }

    /// The user's current password version; nil when there is no such user.
    public func current(of userID: Int64) async throws -> Int? {
        try await self.users.passwordVersion(of: userID)
    }
}
