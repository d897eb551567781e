import TitaniumHTTP

@main
struct App {
    static func main() async {
        await ServiceMain.run(service: "load-balancer", defaultPort: 7100) { kit, settings in
            try await buildApplication(kit: kit, settings: settings)
        }
    }
}
