import TitaniumHTTP

@main
struct App {
    static func main() async {
        await ServiceMain.run(service: "auth-service", defaultPort: 7301) { kit, settings in
            try await buildApplication(kit: kit, settings: settings)
        }
    }
}
