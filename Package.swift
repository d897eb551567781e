// swift-tools-version: 6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    // The shared kit runs on every request of every service: let release builds inline and
    // specialise it across module boundaries (measured in Benchmarks/kit-overhead).
    .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
]

/// One service's in-process tests, `Tests/<Module>Tests`: they `@testable import` the service's
/// executable module and test its router with HummingbirdTesting (no process, no built binary).
/// One target per service, because each module declares the same names (`App`,
/// `buildApplication`, `buildRouter`): a test file imports exactly the service it tests.
func serviceTests(_ service: String, _ dependencies: [Target.Dependency]) -> Target {
    .testTarget(
        name: service + "Tests",
        dependencies: [
            .target(name: service), "TestSupport", "TitaniumHTTP",
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
        ] + dependencies,
        path: "Tests/\(service)Tests",
        swiftSettings: swiftSettings
    )
}

let package = Package(
    name: "titanium",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "load-balancer", targets: ["LoadBalancer"]),
        .executable(name: "api-gateway", targets: ["APIGateway"]),
        .executable(name: "auth-service", targets: ["AuthService"]),
        .executable(name: "user-service", targets: ["UserService"]),
        .executable(name: "blog-service", targets: ["BlogService"]),
        .executable(name: "kit-overhead-server", targets: ["KitOverheadServer"]),
        .executable(name: "trace-bench", targets: ["TraceBench"]),
        .executable(name: "proxy-floor", targets: ["ProxyFloor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: []),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context.git", from: "1.0.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
    ],
    targets: [
        // MARK: Shared kit — one job per module
        .target(
            name: "TitaniumLogging",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Shared/TitaniumLogging",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumTracing",
            dependencies: [
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Shared/TitaniumTracing",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumMetrics",
            dependencies: [
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Shared/TitaniumMetrics",
            swiftSettings: swiftSettings
        ),
        .systemLibrary(
            name: "CHiredis",
            path: "Shared/CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .target(
            name: "TitaniumRedis",
            dependencies: [
                "CHiredis",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/TitaniumRedis",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumSQLite",
            dependencies: [
                "TitaniumLogging",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            path: "Shared/TitaniumSQLite",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumTrace",
            dependencies: [
                "TitaniumHTTP", "TitaniumSQLite", "TitaniumTracing", "TitaniumMetrics",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/TitaniumTrace",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumAuth",
            dependencies: [
                "TitaniumHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            path: "Shared/TitaniumAuth",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumHTTP",
            dependencies: [
                "TitaniumLogging", "TitaniumTracing", "TitaniumMetrics",
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/TitaniumHTTP",
            swiftSettings: swiftSettings
        ),

        .target(
            name: "TitaniumProxy",
            dependencies: [
                "TitaniumLogging", "TitaniumMetrics", "TitaniumHTTP", "TitaniumTrace", "TitaniumTracing",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
            ],
            path: "Shared/TitaniumProxy",
            swiftSettings: swiftSettings
        ),

        // MARK: Services
        .executableTarget(
            name: "LoadBalancer",
            dependencies: [
                "TitaniumLogging", "TitaniumTrace", "TitaniumHTTP", "TitaniumProxy", "TitaniumMetrics",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
            ],
            path: "Services/load-balancer", exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "APIGateway",
            dependencies: [
                "TitaniumTrace", "TitaniumHTTP", "TitaniumProxy", "TitaniumRedis", "TitaniumAuth", "TitaniumMetrics",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
            ],
            path: "Services/api-gateway", exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "AuthService",
            dependencies: [
                "TitaniumTrace", "TitaniumHTTP", "TitaniumAuth", "TitaniumMetrics",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Services/auth-service", exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "UserService",
            dependencies: [
                "TitaniumTrace", "TitaniumHTTP", "TitaniumRedis", "TitaniumAuth", "TitaniumSQLite", "TitaniumMetrics",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
            ],
            path: "Services/user-service", exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "BlogService",
            dependencies: [
                "TitaniumTrace", "TitaniumHTTP", "TitaniumAuth", "TitaniumSQLite", "TitaniumMetrics",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            path: "Services/blog-service", exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),

        // MARK: Benchmarks
        .executableTarget(
            name: "TraceBench",
            dependencies: [
                "TitaniumHTTP", "TitaniumTracing", "TitaniumTrace",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            path: "Benchmarks/trace/Sources",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "KitOverheadServer",
            dependencies: [
                "TitaniumLogging", "TitaniumHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/kit-overhead/Sources",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ProxyFloor",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Benchmarks/proxy/Floor",
            swiftSettings: swiftSettings
        ),

        // MARK: Tests
        .testTarget(
            name: "TitaniumKitTests",
            dependencies: [
                "TitaniumLogging", "TitaniumMetrics", "TitaniumTracing", "TitaniumHTTP", "TitaniumRedis", "TitaniumTrace", "TitaniumAuth", "TestSupport",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            path: "Tests/TitaniumKitTests",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TestSupport",
            dependencies: [
                "TitaniumHTTP", "TitaniumLogging",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "TestSupport", "TitaniumAuth",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/IntegrationTests",
            swiftSettings: swiftSettings
        ),
        serviceTests("LoadBalancer", [
            "TitaniumMetrics", "TitaniumTrace",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        serviceTests("APIGateway", ["TitaniumProxy", "TitaniumRedis"]),
        serviceTests("AuthService", ["TitaniumAuth", .product(name: "JWTKit", package: "jwt-kit")]),
        serviceTests("UserService", ["TitaniumAuth", "TitaniumRedis", .product(name: "JWTKit", package: "jwt-kit")]),
        serviceTests("BlogService", ["TitaniumAuth", .product(name: "JWTKit", package: "jwt-kit")]),
    ]
)
