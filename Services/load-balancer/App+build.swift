import Hummingbird
import TitaniumHTTP

/// Builds the load-balancer application. Tests call this with their own kit.
func buildApplication(kit: ServiceKit) throws -> some ApplicationProtocol {
    let router = kit.makeRouter()
    return kit.makeApplication(router: router)
}
