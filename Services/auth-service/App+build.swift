import Foundation
import Hummingbird
import Prometheus
import TitaniumAuth
import TitaniumHTTP
import TitaniumTrace
import TitaniumMetrics

/// Builds the auth-service application: the signing key (created on first start), the
/// user-service client, routes and checks.
func buildApplication(kit: ServiceKit, settings: Settings) async throws -> some ApplicationProtocol {
    let configuration = try AuthServiceConfiguration(common: kit.configuration, settings: settings)
    let issuer = try await TokenIssuer(
        privateKeyPath: configuration.privateKeyPath, policy: configuration.policy, lifetime: configuration.tokenLifetime
    )
    let client = kit.makeHTTPClient()
    let verifier = TokenVerifier.local(issuer)
    let kit = try kit.recordingTraces(settings: settings, options: .init(verifyToken: { await verifier.credentials(for: $0) }))
    let router = buildRouter(kit: kit, issuer: issuer, verifier: verifier, client: client, userServiceURL: configuration.userServiceURL)
    let keyPath = configuration.privateKeyPath
    return kit.makeApplication(
        router: router,
        checks: [
            DependencyCheck(name: "signing_key") {
                FileManager.default.isReadableFile(atPath: keyPath) ? .online : DependencyStatus(.offline, error: "\(keyPath) is not readable")
            }
        ],
        details: { ["key_id": .string(issuer.kid)] },
        services: [client]
    )
}

/// The auth routes on the kit's router, from what a test can swap: the issuer (any key), its
/// verifier, and the user-service that checks credentials and password versions (a stand-in).
func buildRouter(
    kit: ServiceKit, issuer: TokenIssuer, verifier: TokenVerifier, client: OutboundHTTPClient, userServiceURL: String
) -> Router<TitaniumRequestContext> {
    let help = "Login attempts by result."
    let controller = AuthController(
        issuer: issuer,
        verifier: verifier,
        users: UserServiceClient(client: client, baseURL: userServiceURL),
        passwords: PasswordVersions(client: client, userServiceURL: userServiceURL),
        logins: (
            kit.registry.makeCounter(named: "auth_logins_total", labels: [("result", "success")], help: help),
            kit.registry.makeCounter(named: "auth_logins_total", labels: [("result", "failure")], help: help)
        )
    )
    let router = kit.makeRouter()
    controller.register(on: router)
    return router
}
