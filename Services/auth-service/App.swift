import TitaniumHTTP

@main
struct App {
    static func main() async {
        await ServiceMain.run(service: "auth-service", defaultPort: 7301) { kit, _ in
            try buildApplication(kit: kit)
        }
    }
}
