import TitaniumHTTP

@main
struct App {
    static func main() async {
        await ServiceMain.run(service: "api-gateway", defaultPort: 7200) { kit, settings in
            try await buildApplication(kit: kit, settings: settings)
        }
    }
}
