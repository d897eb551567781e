// swift-tools-version: 6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    // The shared kit runs on every request of every service: let release builds inline and
    // specialise it across module boundaries (measured in Benchmarks/kit-overhead).
    .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
]

/// The library products the targets use, by module name.
extension Target.Dependency {
    static let asyncHTTPClient: Self = .product(name: "AsyncHTTPClient", package: "async-http-client")
    static let configuration: Self = .product(name: "Configuration", package: "swift-configuration")
    static let crypto: Self = .product(name: "Crypto", package: "swift-crypto")
    static let grdb: Self = .product(name: "GRDB", package: "GRDB.swift")
    static let grdbSQLite: Self = .product(name: "GRDBSQLite", package: "GRDB.swift")
    static let httpTypes: Self = .product(name: "HTTPTypes", package: "swift-http-types")
    static let histogram: Self = .product(name: "Histogram", package: "hdrhistogram-swift")
    static let hummingbird: Self = .product(name: "Hummingbird", package: "hummingbird")
    static let hummingbirdBcrypt: Self = .product(name: "HummingbirdBcrypt", package: "hummingbird-auth")
    static let hummingbirdCore: Self = .product(name: "HummingbirdCore", package: "hummingbird")
    static let hummingbirdTesting: Self = .product(name: "HummingbirdTesting", package: "hummingbird")
    static let hummingbirdWSClient: Self = .product(name: "HummingbirdWSClient", package: "hummingbird-websocket")
    static let hummingbirdWebSocket: Self = .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket")
    static let jwtKit: Self = .product(name: "JWTKit", package: "jwt-kit")
    static let logging: Self = .product(name: "Logging", package: "swift-log")
    static let metrics: Self = .product(name: "Metrics", package: "swift-metrics")
    static let nioConcurrencyHelpers: Self = .product(name: "NIOConcurrencyHelpers", package: "swift-nio")
    static let nioCore: Self = .product(name: "NIOCore", package: "swift-nio")
    static let nioHTTP1: Self = .product(name: "NIOHTTP1", package: "swift-nio")
    static let nioExtras: Self = .product(name: "NIOExtras", package: "swift-nio-extras")
    static let nioHTTPTypes: Self = .product(name: "NIOHTTPTypes", package: "swift-nio-extras")
    static let nioHTTPTypesHTTP1: Self = .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras")
    static let nioPosix: Self = .product(name: "NIOPosix", package: "swift-nio")
    static let nioWebSocket: Self = .product(name: "NIOWebSocket", package: "swift-nio")
    static let postgresNIO: Self = .product(name: "PostgresNIO", package: "postgres-nio")
    static let prometheus: Self = .product(name: "Prometheus", package: "swift-prometheus")
    static let serviceLifecycle: Self = .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
    static let tracing: Self = .product(name: "Tracing", package: "swift-distributed-tracing")
    static let unixSignals: Self = .product(name: "UnixSignals", package: "swift-service-lifecycle")
    static let w3cTraceContext: Self = .product(name: "W3CTraceContext", package: "swift-w3c-trace-context")
}

/// One service's in-process tests, `Tests/<Module>Tests`: they `@testable import` the service's
/// executable module and test its router with HummingbirdTesting (no process, no built binary).
/// One target per service, because each module declares the same names (`App`,
/// `buildApplication`, `buildRouter`): a test file imports exactly the service it tests.
func serviceTests(_ service: String, _ dependencies: [Target.Dependency]) -> Target {
    .testTarget(
        name: service + "Tests",
        dependencies: [
            .target(name: service), "TestSupport", "TitaniumHTTP", .httpTypes, .hummingbird, .hummingbirdTesting, .nioCore,
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
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
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
                .logging,
            ],
            path: "Shared/TitaniumLogging",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumTracing",
            dependencies: [
                .tracing, .w3cTraceContext, .logging, .nioConcurrencyHelpers,
            ],
            path: "Shared/TitaniumTracing",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumMetrics",
            dependencies: [
                .prometheus, .metrics, .histogram, .nioConcurrencyHelpers,
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
                "CHiredis", .nioPosix, .serviceLifecycle,
            ],
            path: "Shared/TitaniumRedis",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumSQLite",
            dependencies: [
                "TitaniumLogging", .grdb,
            ],
            path: "Shared/TitaniumSQLite",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumPostgres",
            dependencies: [
                "TitaniumHTTP", .httpTypes, .logging, .nioCore, .nioPosix, .postgresNIO, .serviceLifecycle,
            ],
            path: "Shared/TitaniumPostgres",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumOTLP",
            dependencies: [
                "TitaniumHTTP", "TitaniumLogging", "TitaniumMetrics", "TitaniumTracing", .asyncHTTPClient, .logging, .nioCore,
                .nioHTTP1, .prometheus, .serviceLifecycle,
            ],
            path: "Shared/TitaniumOTLP",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumTrace",
            dependencies: [
                "TitaniumHTTP", "TitaniumOTLP", "TitaniumSQLite", "TitaniumTracing", "TitaniumMetrics", .httpTypes,
                .hummingbird, .logging, .nioCore, .grdb, .grdbSQLite, .prometheus, .serviceLifecycle,
            ],
            path: "Shared/TitaniumTrace",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumAuth",
            dependencies: [
                "TitaniumHTTP", .asyncHTTPClient, .crypto, .httpTypes, .hummingbird, .nioCore, .nioHTTP1,
                .jwtKit,
            ],
            path: "Shared/TitaniumAuth",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TitaniumHTTP",
            dependencies: [
                "TitaniumLogging", "TitaniumTracing", "TitaniumMetrics", .hummingbirdCore, .logging,
                .metrics, .nioCore, .nioHTTP1, .prometheus, .tracing, .unixSignals, .hummingbird,
                .asyncHTTPClient, .configuration, .httpTypes, .serviceLifecycle, .nioExtras, .nioPosix,
            ],
            path: "Shared/TitaniumHTTP",
            swiftSettings: swiftSettings
        ),

        .target(
            name: "TitaniumProxy",
            dependencies: [
                "TitaniumLogging", "TitaniumMetrics", "TitaniumHTTP", "TitaniumTrace", "TitaniumTracing",
                .httpTypes, .hummingbird, .logging, .nioConcurrencyHelpers, .nioCore, .nioHTTP1, .nioPosix,
                .asyncHTTPClient, .hummingbirdCore, .hummingbirdWebSocket, .hummingbirdWSClient,
                .nioWebSocket, .nioHTTPTypesHTTP1, .w3cTraceContext,
            ],
            path: "Shared/TitaniumProxy",
            swiftSettings: swiftSettings
        ),

        // MARK: Services
        .executableTarget(
            name: "LoadBalancer",
            dependencies: [
                "TitaniumLogging", "TitaniumTrace", "TitaniumHTTP", "TitaniumProxy", "TitaniumMetrics",
                .asyncHTTPClient, .httpTypes, .hummingbird, .logging, .nioCore, .nioHTTP1, .nioPosix,
                .serviceLifecycle, .hummingbirdWebSocket, .hummingbirdWSClient, .nioWebSocket, .nioHTTPTypes,
                .nioHTTPTypesHTTP1, .w3cTraceContext,
            ],
            path: "Services/load-balancer", exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "APIGateway",
            dependencies: [
                "TitaniumTrace", "TitaniumHTTP", "TitaniumProxy", "TitaniumRedis", "TitaniumAuth",
                "TitaniumMetrics", .httpTypes, .hummingbird, .logging, .nioHTTP1, .prometheus,
                .hummingbirdWebSocket,
            ],
            path: "Services/api-gateway", exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "AuthService",
            dependencies: [
                "TitaniumTrace", "TitaniumHTTP", "TitaniumAuth", "TitaniumMetrics", .asyncHTTPClient,
                .hummingbird, .jwtKit, .nioCore, .nioHTTP1, .prometheus,
            ],
            path: "Services/auth-service", exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "UserService",
            dependencies: [
                "TitaniumTrace", "TitaniumHTTP", "TitaniumRedis", "TitaniumAuth", "TitaniumSQLite",
                "TitaniumPostgres", "TitaniumMetrics", .httpTypes, .hummingbird, .logging, .nioPosix,
                .prometheus, .grdb, .hummingbirdBcrypt, .postgresNIO,
            ],
            path: "Services/user-service", exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "BlogService",
            dependencies: [
                "TitaniumTrace", "TitaniumHTTP", "TitaniumAuth", "TitaniumSQLite", "TitaniumPostgres",
                "TitaniumMetrics", .hummingbird, .logging, .nioCore, .prometheus, .grdb, .postgresNIO,
            ],
            path: "Services/blog-service", exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),

        // MARK: Benchmarks
        .executableTarget(
            name: "TraceBench",
            dependencies: [
                "TitaniumHTTP", "TitaniumTracing", "TitaniumTrace", .logging, .prometheus, .serviceLifecycle,
                .w3cTraceContext, .nioCore, .grdb,
            ],
            path: "Benchmarks/trace/Sources",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "KitOverheadServer",
            dependencies: [
                "TitaniumLogging", "TitaniumHTTP", .hummingbird, .logging,
            ],
            path: "Benchmarks/kit-overhead/Sources",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ProxyFloor",
            dependencies: [
                .nioCore, .nioPosix, .nioHTTP1,
            ],
            path: "Benchmarks/proxy/Floor",
            swiftSettings: swiftSettings
        ),

        // MARK: Tests
        .testTarget(
            name: "TitaniumKitTests",
            dependencies: [
                "TitaniumLogging", "TitaniumMetrics", "TitaniumTracing", "TitaniumHTTP", "TitaniumRedis",
                "TitaniumTrace", "TitaniumOTLP", "TitaniumAuth", "TitaniumProxy", "TestSupport", .jwtKit, .asyncHTTPClient, .httpTypes,
                .hummingbird, .logging, .nioConcurrencyHelpers, .nioCore, .nioHTTP1, .tracing,
                .w3cTraceContext, .hummingbirdTesting, .prometheus,
            ],
            path: "Tests/TitaniumKitTests",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TestSupport",
            dependencies: [
                "TitaniumHTTP", "TitaniumLogging", .httpTypes, .hummingbirdTesting, .hummingbird,
                .hummingbirdCore, .logging, .nioCore, .nioHTTP1, .nioPosix, .asyncHTTPClient,
                .nioConcurrencyHelpers, .serviceLifecycle,
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "TestSupport", "TitaniumAuth", .jwtKit, .logging, .nioConcurrencyHelpers, .nioCore,
                .nioHTTP1, .asyncHTTPClient, .hummingbird, .hummingbirdCore, .hummingbirdWebSocket,
                .hummingbirdWSClient, .nioWebSocket, .serviceLifecycle,
            ],
            path: "Tests/IntegrationTests",
            swiftSettings: swiftSettings
        ),
        serviceTests("LoadBalancer", [
            "TitaniumMetrics", "TitaniumTrace",
            .asyncHTTPClient,
            .nioConcurrencyHelpers,
        ]),
        serviceTests("APIGateway", ["TitaniumProxy", "TitaniumRedis"]),
        serviceTests("AuthService", ["TitaniumAuth", .jwtKit]),
        serviceTests("UserService", ["TitaniumAuth", "TitaniumPostgres", "TitaniumRedis", .jwtKit]),
        serviceTests("BlogService", ["TitaniumAuth", .jwtKit]),
    ]
)
