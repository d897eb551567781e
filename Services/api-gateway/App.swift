import TitaniumHTTP

@main
struct App {
    static func main() async {
        await ServiceMain.run(service: "api-gateway", defaultPort: 7200) { kit, _ in
            try buildApplication(kit: kit)
        }
    }
}
