import Foundation
import Hummingbird
import TitaniumHTTP

/// Builds the user-service application. Tests call this with their own kit.
func buildApplication(kit: ServiceKit) throws -> some ApplicationProtocol {
    let dataDirectory = kit.configuration.dataDirectory
    try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
    let router = kit.makeRouter()
    return kit.makeApplication(router: router, checks: [.writableDirectory(path: dataDirectory)])
}
