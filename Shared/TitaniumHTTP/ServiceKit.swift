import Hummingbird
import HummingbirdCore
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization
import UnixSignals
import TitaniumLogging
import TitaniumMetrics
import TitaniumTracing
import Tracing

#if canImport(Glibc)
import Glibc
#endif

/// Everything a service is built from: its configuration and its observability kit.
/// `main` builds one per process (``ServiceMain``); tests build as many as they like, each with
/// its own registry and tracer, because nothing here touches a global system.
public struct ServiceKit: Sendable {
    public let configuration: ServiceConfiguration
    public let registry: PrometheusCollectorRegistry
    public let metrics: HTTPMetrics
    public let exposition: MetricsExposition
    public let process: ProcessMetrics
    public let window: TrafficWindow
    public let tracer: W3CTracer
    public let logger: Logger
    public let accessLog: AccessLog
    /// Set on SIGTERM: `/health/ready` answers 503 `draining`.
    public let drain = DrainState()
    /// The fault `/admin/faults` has set, if any (shared by every copy of the kit).
    public let faults: Faults
    /// Every outbound client made with ``makeHTTPClient()``: held here so that a build that
    /// fails after making one (a bad setting read later) can shut it down before the process
    /// exits; AsyncHTTPClient traps on a client dropped while running.
    let clients = MadeClients()
    let cuts: ConnectionCuts
    /// Where requests are recorded (the trace store), when enabled.
    public var recorder: (any RequestRecorder)?

    public init(
        configuration: ServiceConfiguration,
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        tracer: W3CTracer = W3CTracer(),
        logger: Logger? = nil,
        accessLogSink: LogSink = .standardOutput
    ) {
        self.configuration = configuration
        self.registry = registry
        self.metrics = HTTPMetrics(registry: registry)
        self.process = ProcessMetrics()
        self.exposition = MetricsExposition(registry: registry, process: self.process)
        self.window = TrafficWindow(windowSeconds: 10)
        self.tracer = tracer
        var logger = logger ?? Logger(label: configuration.service)
        logger.logLevel = configuration.logLevel
        self.logger = logger
        self.accessLog = AccessLog(service: configuration.service, level: configuration.logLevel, sink: accessLogSink)
        self.cuts = ConnectionCuts(registry: registry)
        self.faults = Faults(registry: registry, logger: logger)
    }

    /// A router whose every route, the not-found answer included, runs the observability middleware,
    /// then the injected fault if one is set (``FaultMiddleware``).
    /// - Parameter countsInWindow: which requests the 10 s traffic window counts (default: all
    ///   but the operational endpoints).
    public func makeRouter(
        countsInWindow: @escaping @Sendable (Request) -> Bool = ObservabilityMiddleware<TitaniumRequestContext>.isBusinessRequest
    ) -> Router<TitaniumRequestContext> {
        let router = Router(context: TitaniumRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.add(middleware: self.makeObservabilityMiddleware(countsInWindow: countsInWindow))
        router.add(middleware: FaultMiddleware(faults: self.faults, drain: self.drain))
        return router
    }

    public func makeObservabilityMiddleware<Context: IdentifiedRequestContext>(
        countsInWindow: @escaping @Sendable (Request) -> Bool = ObservabilityMiddleware<Context>.isBusinessRequest
    ) -> ObservabilityMiddleware<Context> {
        ObservabilityMiddleware(
            tracer: self.tracer,
            metrics: self.metrics,
            window: self.window,
            accessLog: self.accessLog,
            bodyLimit: self.configuration.maxBodyBytes,
            countsInWindow: countsInWindow,
            recorder: self.recorder
        )
    }

    /// Metrics, window, access line and trace row for requests served outside the router.
    public var accounting: RequestAccounting {
        RequestAccounting(metrics: self.metrics, window: self.window, accessLog: self.accessLog)
    }

    /// A pooled outbound client with this service's timeouts and tracer.
    public func makeHTTPClient() -> OutboundHTTPClient {
        let client = OutboundHTTPClient(configuration: self.configuration.client, tracer: self.tracer)
        self.clients.list.withLock { $0.append(client) }
        return client
    }

    /// Shuts down every client this kit made: after a failed build, before exiting.
    func shutDownClients() async {
        for client in self.clients.list.withLock({ $0 }) { await client.shutDown() }
    }

    /// Builds the application: registers the operational routes, the trace store's (a path
    /// the router already serves keeps its handler: the load balancer has its own `/stats` and
    /// merged `/traces/*`) and `/admin/faults` (unless `injectsFaults` is false), answers 405 (with `Allow`) for known paths called with another
    /// method, and holds every connection to the configured limits (``ConnectionGuard``, at most
    /// `HTTP_MAX_CONNECTIONS`).
    public func makeApplication<Context: IdentifiedRequestContext>(
        router: Router<Context>,
        checks: [DependencyCheck] = [],
        details: @escaping @Sendable () async -> [String: JSONValue]? = { nil },
        server: ServerChannel = .http1(),
        injectsFaults: Bool = true,
        services: [any Service] = [],
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some ApplicationProtocol where Context.Source == ApplicationRequestContextSource {
        OperationalRoutes<Context>(kit: self, checks: checks, details: details).register(on: router)
        self.recorder?.registerRoutes(on: router, adminToken: self.configuration.adminToken)
        if injectsFaults { FaultRoutes<Context>(faults: self.faults, adminToken: self.configuration.adminToken).register(on: router) }
        MethodNotAllowed.register(on: router)
        let logger = self.logger
        let service = self.configuration.service
        return SharedPortApplication(
            responder: router.buildResponder(),
            channel: server,
            limits: self.configuration.limits,
            cuts: self.cuts,
            host: self.configuration.host,
            port: self.configuration.port,
            serverName: service,
            connectionLimit: ConnectionLimit(maximum: self.configuration.maxConnections, registry: self.registry),
            // Services stop after the server has drained: the recorder flushes what it holds last.
            services: services + (self.recorder.map { [$0.service] } ?? []),
            running: { channel in
                logger.notice(
                    "listening",
                    metadata: [
                        "host": .string(channel.localAddress?.ipAddress ?? ""),
                        "port": .stringConvertible(channel.localAddress?.port ?? 0),
                        "reuse_port": "true",
                    ]
                )
                await onServerRunning(channel)
            },
            logger: logger
        )
    }
}

extension Router {
    /// Whether `method path` is registered already, written as it was registered (`/traces/{trace_id}`).
    public func hasRoute(_ method: HTTPRequest.Method, _ path: String) -> Bool {
        self.routes.contains { $0.method == method && $0.path.description == path }
    }
}

/// Answers 405 with an `Allow` header when a known route is called with a method it lacks.
enum MethodNotAllowed {
    static let methods: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options]

    static func register<Context: RequestContext>(on router: Router<Context>) {
        var allowed: [String: Set<String>] = [:]
        var paths: [String: RouterPath] = [:]
        for route in router.routes {
            allowed[route.path.description, default: []].insert(route.method.rawValue)
            paths[route.path.description] = route.path
        }
        for (key, methods) in allowed {
            guard let path = paths[key] else { continue }
            var allow = methods
            if allow.contains("GET") { allow.insert("HEAD") }
            let allowHeader = allow.sorted().joined(separator: ", ")
            for method in self.methods where !allow.contains(method.rawValue) {
                router.on(path, method: method) { _, _ -> Response in
                    throw APIError(
                        .methodNotAllowed,
                        message: "method not allowed on \(key); allowed: \(allowHeader)",
                        headers: [.allow: allowHeader]
                    )
                }
            }
        }
    }
}

/// The process entry point shared by the five services: read the configuration (exit 1 with
/// one line naming the variable when it is invalid), bootstrap logging, metrics and tracing
/// exactly once, build the application and run it until SIGTERM or SIGINT. Then: `draining` for
/// `SHUTDOWN_DELAY_SECONDS` while still serving, then no new connections, every request in
/// flight answered, keep-alive connections closed after their answer, buffers flushed, exit 0,
/// all within `SHUTDOWN_GRACE_SECONDS`.
public enum ServiceMain {
    public static func run<App: ApplicationProtocol>(
        service: String,
        defaultPort: Int,
        defaults: ServerDefaults = ServerDefaults(),
        build: @Sendable (ServiceKit, Settings) async throws -> App
    ) async {
        let settings = Settings.fromEnvironment()
        let configuration: ServiceConfiguration
        do {
            configuration = try ServiceConfiguration(service: service, defaultPort: defaultPort, settings: settings, defaults: defaults)
        } catch {
            Self.exit(service: service, message: error.description)
        }
        // Before anything touches the shared event-loop group (Hummingbird's server, AsyncHTTPClient).
        NIOSingletons.groupLoopCountSuggestion = configuration.eventLoops
        let registry = PrometheusCollectorRegistry()
        let tracer = W3CTracer(sampler: TraceSampler(ratio: configuration.traceSampleRatio))
        let level = configuration.logLevel
        LoggingSystem.bootstrap({ _, provider in
            JSONLogHandler(service: service, level: level, metadataProvider: provider)
        }, metadataProvider: .w3cTracing)
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        InstrumentationSystem.bootstrap(tracer)

        let kit = ServiceKit(configuration: configuration, registry: registry, tracer: tracer)
        do {
            let app = try await build(kit, settings)
            var group = ServiceGroupConfiguration(
                services: [
                    .init(service: app),
                    // Last, so the first to hear SIGTERM.
                    .init(service: DrainGate(state: kit.drain, delay: configuration.shutdownDelay, logger: kit.logger)),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: kit.logger
            )
            group.maximumGracefulShutdownDuration = configuration.shutdownGrace
            group.maximumCancellationDuration = .seconds(2)
            try await ServiceGroup(configuration: group).run()
        } catch let error as ConfigurationError {
            await kit.shutDownClients()
            Self.exit(service: service, message: error.description)
        } catch {
            kit.logger.critical("service stopped with an error", metadata: ["error": "\(error)"])
            await kit.shutDownClients()
            Glibc.exit(1)
        }
    }

    private static func exit(service: String, message: String) -> Never {
        var line = "\(service): \(message)\n"
        line.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
        Glibc.exit(1)
    }
}

/// The outbound clients a kit made (a reference: every copy of the kit shares it).
final class MadeClients: Sendable {
    let list = Mutex<[OutboundHTTPClient]>([])
}
