import TitaniumHTTP

@main
struct App {
    static func main() async {
        await ServiceMain.run(service: "blog-service", defaultPort: 7303) { kit, settings in
            try await buildApplication(kit: kit, settings: settings)
        }
    }
}
