import Foundation
import Hummingbird
import HummingbirdTesting
import JWTKit
import Synchronization
import Testing
import TitaniumAuth
import TitaniumHTTP
import TitaniumTrace

/// A bearer token is verified once per request: the trace store's user lookup verifies it before
/// the handler runs and keeps the result in the context, where the handler's
/// `claims(for:context:)` finds it.
@Suite struct CredentialsTests {
    @Test func aTokenIsVerifiedOncePerRequest() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("titanium-credentials-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let issuer = try await TokenIssuer(key: ES256PrivateKey(), policy: TokenPolicy(), lifetime: .seconds(60))
        let verifier = TokenVerifier.local(issuer)
        let lookups = Atomic<Int>(0)
        var traces = TraceConfiguration(databasePath: directory.appendingPathComponent("traces.db").path)
        traces.excludePrefixes.append("/api/unrecorded")
        let kit = try makeKit().recordingTraces(
            configuration: traces,
            options: .init(verifyToken: { request in
                lookups.add(1, ordering: .relaxed)
                return await verifier.credentials(for: request)
            })
        )
        // The handler's verifier knows no key: it can only answer from what the lookup kept.
        let keyless = TokenVerifier(policy: TokenPolicy()) { #"{"keys":[]}"# }
        let router = kit.makeRouter()
        router.get("/api/me") { request, context -> String in
            let claims = try await keyless.claims(for: request, context: context)
            return claims.username
        }
        router.get("/api/unrecorded/me") { request, context -> String in
            try await keyless.claims(for: request, context: context).username
        }
        let (token, _) = try await issuer.issue(userID: 7, username: "alice")
        try await kit.makeApplication(router: router).test(.router) { client in
            try await client.execute(uri: "/api/me", method: .get, headers: [.authorization: "Bearer \(token)"]) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "alice")
            }
            #expect(lookups.load(ordering: .relaxed) == 1)
            // A refused token is refused once too: the handler answers the lookup's 401.
            try await client.execute(uri: "/api/me", method: .get, headers: [.authorization: "Bearer \(token)x"]) { response in
                #expect(response.status == .unauthorized)
                #expect(String(buffer: response.body).contains("invalid token signature"))
            }
            #expect(lookups.load(ordering: .relaxed) == 2)
            // A path the trace store does not record is not looked up: the handler verifies, and
            // the keyless verifier refuses.
            try await client.execute(uri: "/api/unrecorded/me", method: .get, headers: [.authorization: "Bearer \(token)"]) { response in
                #expect(response.status == .unauthorized)
                #expect(String(buffer: response.body).contains("unknown signing key"))
            }
            #expect(lookups.load(ordering: .relaxed) == 2)
            // No token: nothing to look up; the handler's own check answers 401.
            try await client.execute(uri: "/api/me", method: .get) { response in
                #expect(response.status == .unauthorized)
            }
            #expect(lookups.load(ordering: .relaxed) == 2)
        }
    }
}
