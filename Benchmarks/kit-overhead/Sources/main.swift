import Foundation
import Hummingbird
import TitaniumHTTP

// Serves GET /bench two ways for a side-by-side wrk run:
//   kit-overhead-server bare PORT   Hummingbird router, no middleware
//   kit-overhead-server kit  PORT   the Titanium kit: metrics, JSON access log, tracing, request id
let arguments = CommandLine.arguments
guard arguments.count == 3, let port = Int(arguments[2]), ["bare", "kit"].contains(arguments[1]) else {
    print("usage: kit-overhead-server bare|kit PORT")
    exit(2)
}

if arguments[1] == "bare" {
    let router = Router()
    router.get("/bench") { _, _ in "ok" }
    let app = Application(
        router: router,
        server: .http1(configuration: .init(idleTimeout: .seconds(60))),
        configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "bare")
    )
    try await app.runService()
} else {
    setenv("HTTP_PORT", String(port), 1)
    await ServiceMain.run(service: "kit-bench", defaultPort: port) { kit, _ in
        let router = kit.makeRouter()
        router.get("/bench") { _, _ in "ok" }
        return kit.makeApplication(router: router)
    }
}
