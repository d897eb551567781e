import Crypto
import Foundation
import JWTKit

/// Signs access tokens with an ES256 key and publishes its public half as a JWKS.
public struct TokenIssuer: Sendable {
    public let kid: String
    public let policy: TokenPolicy
    public let lifetime: Duration
    private let keys: JWTKeyCollection
    private let publicJWK: JWK

    /// Loads the PEM private key at `path`, or creates one (mode 0600) when the file is missing.
    public init(privateKeyPath path: String, policy: TokenPolicy, lifetime: Duration) async throws {
        let key: ES256PrivateKey
        if FileManager.default.fileExists(atPath: path) {
            key = try ES256PrivateKey(pem: String(contentsOfFile: path, encoding: .utf8))
        } else {
            key = ES256PrivateKey()
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            guard FileManager.default.createFile(
                atPath: path, contents: Data(key.pemRepresentation.utf8), attributes: [.posixPermissions: 0o600]
            ) else {
                throw TokenError.keyFile("cannot write \(path)")
            }
        }
        try await self.init(key: key, policy: policy, lifetime: lifetime)
    }

    public init(key: ES256PrivateKey, policy: TokenPolicy, lifetime: Duration) async throws {
        guard let parameters = key.publicKey.parameters else { throw TokenError.keyFile("the key has no public parameters") }
        // The key id is derived from the public key, so every replica sharing the key agrees on it.
        let digest = SHA256.hash(data: Data(key.publicKey.pemRepresentation.utf8))
        self.kid = digest.prefix(8).map { String(format: "%02x", $0) }.joined()
        self.policy = policy
        self.lifetime = lifetime
        self.publicJWK = JWK.ecdsa(.es256, identifier: JWKIdentifier(string: self.kid), x: parameters.x, y: parameters.y, curve: .p256)
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .integerSecondsSince1970
        self.keys = JWTKeyCollection()
        await self.keys.add(ecdsa: key, kid: JWKIdentifier(string: self.kid), serializer: DefaultJWTSerializer(jsonEncoder: encoder))
    }

    public func issue(userID: Int64, username: String, passwordVersion: Int = 0, now: Date = Date()) async throws -> (token: String, claims: AccessClaims) {
        let claims = AccessClaims(
            userID: userID, username: username, passwordVersion: passwordVersion, issuer: self.policy.issuer, audience: self.policy.audience,
            issuedAt: now, lifetime: self.lifetime
        )
        return (try await self.keys.sign(claims, kid: JWKIdentifier(string: self.kid)), claims)
    }

    /// `{"keys":[…]}` for `/.well-known/jwks.json`.
    public var jwks: JWKS { JWKS(keys: [self.publicJWK]) }
}

public enum TokenError: Error, CustomStringConvertible, Equatable {
    case keyFile(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .keyFile(let message): "signing key: \(message)"
        case .invalid(let message): message
        }
    }
}
