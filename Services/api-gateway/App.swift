import TitaniumHTTP

@main
struct App {
    static func main() async {
        await ServiceMain.run(service: "api-gateway", defaultPort: 7200, defaults: ServerDefaults(headerTimeoutSeconds: 2, writeTimeoutSeconds: 10)) { kit, settings in
            try await buildApplication(kit: kit, settings: settings)
        }
    }
}
