import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import JWTKit
import NIOHTTP1
import Synchronization
import TitaniumHTTP

/// Checks access tokens locally against a cached key set: no call per request. The set comes
/// from `fetchJWKS` (auth-service's `/.well-known/jwks.json`), fetched on first use and again
/// when a token names a key id it has not seen (at most once per `refetchInterval`).
///
/// Rejected: anything but `alg: ES256` (so `none` and HMAC tricks), an unknown key, a bad
/// signature, an expired or not-yet-valid token, a wrong issuer or audience.
public final class TokenVerifier: Sendable {
    public let policy: TokenPolicy
    private let keys = JWTKeyCollection()
    private let fetchJWKS: @Sendable () async throws -> String
    private let refetchInterval: Duration
    private struct State {
        var knownKids: Set<String> = []
        var lastFetch: ContinuousClock.Instant?
    }
    private let state = Mutex(State())

    public init(policy: TokenPolicy, refetchInterval: Duration = .seconds(5), fetchJWKS: @escaping @Sendable () async throws -> String) {
        self.policy = policy
        self.refetchInterval = refetchInterval
        self.fetchJWKS = fetchJWKS
    }

    /// A verifier for the issuer's own keys (auth-service).
    public static func local(_ issuer: TokenIssuer) -> TokenVerifier {
        let jwks = issuer.jwks
        return TokenVerifier(policy: issuer.policy) {
            String(decoding: try JSONEncoder().encode(jwks), as: UTF8.self)
        }
    }

    /// A verifier fetching the key set over HTTP with the service's outbound client.
    public static func remote(url: String, policy: TokenPolicy, client: OutboundHTTPClient) -> TokenVerifier {
        TokenVerifier(policy: policy) {
            let response = try await client.execute(HTTPClientRequest(url: url))
            guard response.status == .ok else { throw TokenError.invalid("key set fetch answered \(response.status.code)") }
            return String(buffer: try await response.body.collect(upTo: 1 << 20))
        }
    }

    public func verify(_ token: String) async throws(TokenError) -> AccessClaims {
        let header = try Self.header(of: token)
        guard header.alg == "ES256" else { throw .invalid("algorithm \(header.alg ?? "none") is not accepted") }
        guard let kid = header.kid, !kid.isEmpty else { throw .invalid("token names no key") }
        if !self.knows(kid) {
            await self.refresh()
            guard self.knows(kid) else { throw .invalid("unknown signing key") }
        }
        let claims: AccessClaims
        do {
            claims = try await self.keys.verify(token, as: AccessClaims.self)
        } catch let error as JWTError where error.errorType == .claimVerificationFailure {
            throw .invalid("token is expired or not yet valid")
        } catch {
            throw .invalid("invalid token signature")
        }
        guard claims.iss.value == self.policy.issuer else { throw .invalid("wrong issuer") }
        guard claims.aud.value.contains(self.policy.audience) else { throw .invalid("wrong audience") }
        return claims
    }

    /// The verified claims of a request's `Authorization: Bearer` token, or 401; taken from the
    /// request's context when its token was checked already (``Credentials``).
    public func claims(for request: Request, context: some IdentifiedRequestContext) async throws -> AccessClaims {
        switch context.credentials {
        // Checked by another verifier, perhaps: this one's issuer and audience are checked again.
        case .verified(_, let claims as AccessClaims) where claims.iss.value == self.policy.issuer && claims.aud.value.contains(self.policy.audience):
            return claims
        case .rejected(let error): throw error
        default: return try await self.claims(for: request)
        }
    }

    /// The request's token checked, as the trace store's user lookup keeps it (``Credentials``).
    public func credentials(for request: Request) async -> Credentials {
        do {
            let claims = try await self.claims(for: request)
            return .verified(subject: claims.subject, claims: claims)
        } catch {
            return .rejected(APIError.from(error))
        }
    }

    /// The verified claims of a request's `Authorization: Bearer` token, or 401.
    public func claims(for request: Request) async throws -> AccessClaims {
        guard let authorization = request.headers[.authorization],
            authorization.count > 7, authorization.prefix(7).lowercased() == "bearer "
        else {
            throw APIError(.unauthorized, message: "a bearer token is required", headers: [.wwwAuthenticate: "Bearer"])
        }
        do {
            return try await self.verify(String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces))
        } catch {
            throw APIError(.unauthorized, message: error.description, headers: [.wwwAuthenticate: #"Bearer error="invalid_token""#])
        }
    }

    private func knows(_ kid: String) -> Bool {
        self.state.withLock { $0.knownKids.contains(kid) }
    }

    private func refresh() async {
        let due = self.state.withLock { state -> Bool in
            if let last = state.lastFetch, last.duration(to: .now) < self.refetchInterval { return false }
            state.lastFetch = .now
            return true
        }
        guard due, let json = try? await self.fetchJWKS(),
            let jwks = try? JSONDecoder().decode(JWKS.self, from: Data(json.utf8))
        else { return }
        // Only ES256 keys with an id are taken.
        let accepted = jwks.keys.filter { $0.algorithm == .es256 && $0.keyIdentifier != nil }
        for key in accepted { _ = try? await self.keys.add(jwk: key) }
        self.state.withLock { state in
            for key in accepted { if let kid = key.keyIdentifier?.string { state.knownKids.insert(kid) } }
        }
    }

    private struct Header: Decodable {
        var alg: String?
        var kid: String?
    }

    private static func header(of token: String) throws(TokenError) -> Header {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let data = Self.base64URLDecode(parts[0]),
            let header = try? JSONDecoder().decode(Header.self, from: data)
        else { throw .invalid("malformed token") }
        return header
    }

    static func base64URLDecode(_ text: Substring) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64)
    }
}
