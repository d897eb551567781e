import TitaniumHTTP

@main
struct App {
    static func main() async {
        await ServiceMain.run(service: "user-service", defaultPort: 7302) { kit, settings in
            try await buildApplication(kit: kit, settings: settings)
        }
    }
}
