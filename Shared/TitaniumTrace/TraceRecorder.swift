import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import Logging

import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization
import TitaniumHTTP
import TitaniumOTLP
import TitaniumTracing
import TitaniumMetrics

/// The trace store as the observability middleware uses it: each recorded request is queued
/// without blocking and written by ``TraceWriter`` in batches. Closures replace the default
/// user-id extraction, filter and trace-id generation when a service needs its own.
public final class TraceRecorder: RequestRecorder {
    public struct Options: Sendable {
        /// Checks a request's bearer token (a service that verifies tokens sets it); what it
        /// finds is kept in the request's context, so the handler does not verify it again.
        public var verifyToken: (@Sendable (Request) async -> Credentials)?
        /// Decides, after the include/exclude prefixes, whether a request is recorded.
        public var filter: (@Sendable (Request) -> Bool)?

        public init(
            verifyToken: (@Sendable (Request) async -> Credentials)? = nil,
            filter: (@Sendable (Request) -> Bool)? = nil
        ) {
            self.verifyToken = verifyToken
            self.filter = filter
        }
    }

    public let configuration: TraceConfiguration
    public let store: TraceStore
    public let serviceName: String
    public let instance: String
    let options: Options
    let buffer: TraceBuffer
    let writer: TraceWriter
    let dropped: Prometheus.Counter
    let unsampled: Prometheus.Counter
    let keepSlowerThanMicroseconds: UInt64
    /// Sends every recorded request to an OTLP collector too, when one is configured.
    public let exporter: OTLPExporter?

    public init(
        configuration: TraceConfiguration, service: String, instance: String, registry: PrometheusCollectorRegistry, logger: Logger,
        options: Options = Options()
    ) throws {
        self.configuration = configuration
        self.serviceName = service
        self.instance = instance
        self.options = options
        self.store = try TraceStore(path: configuration.databasePath)
        self.buffer = TraceBuffer(capacity: configuration.bufferSize, batchSize: configuration.batchSize)
        self.dropped = registry.makeCounter(named: "trace_records_dropped_total", help: "Trace records dropped because the buffer was full or the store kept failing")
        self.unsampled = registry.makeCounter(
            named: "trace_records_unsampled_total", help: "Requests not recorded: their trace was not sampled, and they were neither 5xx nor slow"
        )
        self.keepSlowerThanMicroseconds = UInt64(configuration.keepSlowerThan.components.seconds) * 1_000_000
            + UInt64(configuration.keepSlowerThan.components.attoseconds / 1_000_000_000_000)
        self.exporter = configuration.export.map { export in
            OTLPExporter(
                configuration: export, resource: OTLPResource(service: service, instance: instance, version: ServiceConfiguration.version),
                registry: registry, logger: logger
            )
        }
        self.writer = TraceWriter(
            store: self.store, buffer: self.buffer, configuration: configuration, service: service, instance: instance,
            registry: registry, dropped: self.dropped, logger: logger
        )
    }

    public var service: any Service {
        guard let exporter = self.exporter else { return self.writer }
        return TraceServices(services: [self.writer, exporter])
    }

    public func shouldRecord(_ request: Request) -> Bool {
        self.configuration.records(path: request.uri.path) && (self.options.filter?(request) ?? true)
    }

    public func identify(_ request: Request) async -> (userID: String?, credentials: Credentials?) {
        var credentials: Credentials?
        if self.configuration.userIDSources.contains(.token), request.headers[.authorization] != nil {
            credentials = await self.options.verifyToken?(request)
        }
        let userID = self.userID(
            tokenSubject: credentials?.subject, header: request.headers[.xUserID], query: request.uri.queryParameters["user_id"].map(String.init)
        )
        return (userID, credentials)
    }

    /// The first of the configured sources that has a value (at most 128 characters).
    public func userID(tokenSubject: String?, header: String?, query: String?) -> String? {
        for source in self.configuration.userIDSources {
            let value: String? = switch source {
            case .token: tokenSubject
            case .header: header
            case .query: query
            }
            if let value, !value.isEmpty { return String(value.prefix(128)) }
        }
        return nil
    }

    /// Keeps a request of a sampled trace, and any request answered 5xx or slower than
    /// `TRACE_KEEP_SLOWER_THAN_MS` whatever its trace's flag says.
    ///
    /// A trace that was not sampled is therefore kept only at the hops that saw it fail or take
    /// long. A proxy's answer contains its upstream's (a relayed 5xx is its 5xx, a slow upstream
    /// makes it slow), so a failure or a delay at blog-service is kept at the gateway and the
    /// load balancer too: that trace is complete from the edge down to where it went wrong. Hops
    /// below that, which answered fine and fast before anyone knew, are not: their record was
    /// decided when they answered.
    public func record(_ request: FinishedRequest) {
        guard self.keeps(request) else {
            self.unsampled.increment()
            return
        }
        if !self.buffer.append(request) { self.dropped.increment() }
        self.exporter?.enqueue(request)
    }

    public func keeps(_ request: FinishedRequest) -> Bool {
        request.spanContext.isSampled || request.status >= 500
            || request.latencyMicroseconds >= self.keepSlowerThanMicroseconds
    }

    /// Records still waiting in memory.
    public var bufferDepth: Int { self.buffer.depth }

    public func registerRoutes<Context: IdentifiedRequestContext>(on router: Router<Context>, adminToken: AdminToken) {
        TraceRoutes(recorder: self, adminToken: adminToken).register(on: router)
    }
}

extension HTTPField.Name {
    static let xUserID = HTTPField.Name("X-User-ID")!
}

extension ServiceKit {
    /// This kit with the trace store (`TRACE_*`) recording its requests, unless `TRACE_ENABLED=false`.
    public func recordingTraces(settings: Settings, options: TraceRecorder.Options = .init()) throws -> ServiceKit {
        try self.recordingTraces(
            configuration: TraceConfiguration(settings: settings, dataDirectory: self.configuration.dataDirectory),
            options: options
        )
    }

    /// This kit with the trace store recording its requests, from a configuration already read.
    public func recordingTraces(configuration: TraceConfiguration, options: TraceRecorder.Options = .init()) throws -> ServiceKit {
        guard configuration.enabled else { return self }
        var kit = self
        kit.recorder = try TraceRecorder(
            configuration: configuration, service: self.configuration.service, instance: self.configuration.instance,
            registry: self.registry, logger: self.logger, options: options
        )
        return kit
    }

    /// The trace store, when this kit records traces.
    public var traces: TraceRecorder? { self.recorder as? TraceRecorder }
}
