import TitaniumHTTP

@main
struct App {
    static func main() async {
        await ServiceMain.run(service: "blog-service", defaultPort: 7303) { kit, _ in
            try buildApplication(kit: kit)
        }
    }
}
