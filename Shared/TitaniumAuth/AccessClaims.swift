import Foundation
import JWTKit
import TitaniumHTTP

/// The claims of a Titanium access token.
public struct AccessClaims: JWTPayload, Equatable {
    public var sub: SubjectClaim
    public var username: String
    public var iss: IssuerClaim
    public var aud: AudienceClaim
    public var iat: IssuedAtClaim
    public var nbf: NotBeforeClaim
    public var exp: ExpirationClaim
    /// The user's password version when the token was issued (user-service counts password
    /// changes): a change retires every token carrying an older one. Absent in tokens issued
    /// before the claim existed, which count as version 0.
    public var password_version: Int?

    public init(
        userID: Int64, username: String, passwordVersion: Int = 0, issuer: String, audience: String, issuedAt: Date, lifetime: Duration
    ) {
        self.sub = SubjectClaim(value: String(userID))
        self.username = username
        self.password_version = passwordVersion
        self.iss = IssuerClaim(value: issuer)
        self.aud = AudienceClaim(value: audience)
        self.iat = IssuedAtClaim(value: issuedAt)
        // One second of slack for clocks a little behind the issuer's.
        self.nbf = NotBeforeClaim(value: issuedAt.addingTimeInterval(-1))
        self.exp = ExpirationClaim(value: issuedAt.addingTimeInterval(Double(lifetime.components.seconds)))
    }

    public var userID: Int64? { Int64(self.sub.value) }
    /// The subject (the user id) as text.
    public var subject: String { self.sub.value }
    /// See `password_version`.
    public var passwordVersion: Int { self.password_version ?? 0 }

    /// Signature checks happen before this; here: time window only. Issuer and audience are
    /// checked by ``TokenVerifier``, which knows the expected values.
    public func verify(using algorithm: some JWTAlgorithm) throws {
        try self.exp.verifyNotExpired()
        try self.nbf.verifyNotBefore()
    }
}

/// Token settings shared by the issuer and every verifier.
public struct TokenPolicy: Sendable, Equatable {
    public var issuer: String
    public var audience: String

    public init(issuer: String = "titanium-auth", audience: String = "titanium") {
        self.issuer = issuer
        self.audience = audience
    }

    /// `JWT_ISSUER` (default `titanium-auth`) and `JWT_AUDIENCE` (default `titanium`).
    public init(settings: Settings) {
        self.init(
            issuer: settings.string("jwt.issuer", default: "titanium-auth"),
            audience: settings.string("jwt.audience", default: "titanium")
        )
    }
}
