import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Prometheus
import ServiceLifecycle
import Synchronization
import TitaniumHTTP
import TitaniumMetrics

/// Sends the requests the trace store records to an OpenTelemetry collector as OTLP/HTTP spans
/// with JSON encoding (`POST <endpoint>/v1/traces`, `application/json`).
///
/// Hand-written rather than swift-otel's exporter: Titanium's spans come from its own tracer and
/// trace store (``FinishedRequest``, the rows of `/traces`), and swift-otel 1.6 exports only the
/// spans of its own tracer (its exporter types are not public API); its one OTLP encoding also
/// needs swift-protobuf, a large build for one message. OTLP's JSON encoding is part of the
/// specification and accepted by the Collector, Jaeger and Tempo, and the message is small
/// (``OTLPTraceEncoder``).
///
/// Export never blocks a request: ``enqueue(_:)`` appends to a bounded queue and a full queue
/// drops the span (`otlp_spans_dropped_total`). The exporter sends a batch when
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans wait or `OTEL_BSP_SCHEDULE_DELAY` has passed. A failed
/// request (`otlp_export_failures_total`: every failed attempt) is retried with exponential
/// back-off when the collector may recover (no connection, timeout, 429, 502, 503, 504; a
/// `Retry-After` in seconds is honoured up to 30 s), at most ``maxAttempts`` times; a batch that
/// still fails, or that the collector rejects (another status), is dropped and counted. On
/// graceful shutdown what is queued gets one more attempt, within ``finalFlushBudget``.
public final class OTLPExporter: Service, Sendable {
    public static let maxAttempts = 5
    static let firstBackoff: Duration = .milliseconds(500)
    static let maxBackoff: Duration = .seconds(5)
    static let maxRetryAfter: Duration = .seconds(30)
    public static let finalFlushBudget: Duration = .seconds(3)
    /// The collector's answer is read (and thrown away) up to this size.
    static let maxResponseBytes = 64 * 1024

    public let configuration: OTLPConfiguration
    public let resource: OTLPResource
    let queue: OTLPSpanQueue
    let logger: Logger
    let failures: Prometheus.Counter
    let exported: Prometheus.Counter
    let dropped: Prometheus.Counter
    private let stopping = Atomic<Bool>(false)
    /// Whether the last export failed: failures are logged when they start and when they end, not per batch.
    private let failing = Atomic<Bool>(false)

    public init(configuration: OTLPConfiguration, resource: OTLPResource, registry: PrometheusCollectorRegistry, logger: Logger) {
        self.configuration = configuration
        self.resource = resource
        self.queue = OTLPSpanQueue(capacity: configuration.maxQueueSize, batchSize: configuration.maxBatchSize)
        self.logger = logger
        self.failures = registry.makeCounter(
            named: "otlp_export_failures_total", help: "OTLP export requests that failed (each attempt: no connection, timeout or an error status)"
        )
        self.exported = registry.makeCounter(named: "otlp_spans_exported_total", help: "Spans the OTLP collector accepted")
        self.dropped = registry.makeCounter(
            named: "otlp_spans_dropped_total", help: "Spans not exported: the queue was full, or their batch failed every attempt or was rejected"
        )
    }

    /// Queues one recorded request as a span. Never waits.
    public func enqueue(_ request: FinishedRequest) {
        if !self.queue.append(request) { self.dropped.increment() }
    }

    /// Spans waiting in memory.
    public var queueDepth: Int { self.queue.depth }

    /// The exporter's own client: not traced, the export timeout as its read timeout.
    static func makeClient(_ configuration: OTLPConfiguration) -> HTTPClient {
        var clientConfiguration = HTTPClient.Configuration(
            timeout: .init(
                connect: .nanoseconds(min(configuration.timeout, .seconds(5)).nanoseconds),
                read: .nanoseconds(configuration.timeout.nanoseconds)
            ),
            connectionPool: .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 2)
        )
        // The export requests themselves are not traced.
        clientConfiguration.tracing.tracer = nil
        // A refused connection fails the attempt at once (and is retried on this exporter's
        // schedule) instead of being retried by the pool until the request's deadline.
        clientConfiguration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
    }

    public func run() async throws {
        let client = Self.makeClient(self.configuration)
        self.logger.notice(
            "exporting spans over OTLP/HTTP",
            metadata: ["otlp.url": .string(self.configuration.loggableURL), "otlp.batch": "\(self.configuration.maxBatchSize)"]
        )
        await withGracefulShutdownHandler {
            await self.exportUntilStopped(client)
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .relaxed)
            self.queue.close()
        }
        await self.flush(client)
        try? await client.shutdown()
    }

    private func exportUntilStopped(_ client: HTTPClient) async {
        await withTaskGroup(of: Void.self) { group in
            let delay = self.configuration.scheduleDelay
            let queue = self.queue
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: delay)
                    queue.wake()
                }
            }
            for await _ in self.queue.wakes {
                while !self.stopping.load(ordering: .relaxed) {
                    let batch = self.queue.takeBatch()
                    if batch.isEmpty { break }
                    await self.export(batch, client: client, attempts: Self.maxAttempts, timeout: self.configuration.timeout)
                }
            }
            group.cancelAll()
        }
    }

    /// One attempt for what is left, within ``finalFlushBudget``.
    private func flush(_ client: HTTPClient) async {
        let deadline = ContinuousClock.now + Self.finalFlushBudget
        var left = self.queue.depth
        while left > 0 {
            let remaining = ContinuousClock.now.duration(to: deadline)
            let batch = self.queue.takeBatch()
            guard remaining > .milliseconds(10) else {
                self.dropped.increment(by: Int64(batch.count + self.queue.takeAll()))
                break
            }
            await self.export(batch, client: client, attempts: 1, timeout: min(remaining, self.configuration.timeout))
            left = self.queue.depth
        }
    }

    enum Outcome: Equatable {
        case accepted
        /// Worth another attempt; the collector may say when.
        case retryable(String, retryAfter: Duration?)
        case rejected(String)
    }

    func export(_ batch: [FinishedRequest], client: HTTPClient, attempts: Int, timeout: Duration) async {
        let body = ByteBuffer(bytes: OTLPTraceEncoder.encode(batch, resource: self.resource))
        var attempt = 1
        while true {
            let outcome = await self.post(body, client: client, timeout: timeout)
            switch outcome {
            case .accepted:
                self.exported.increment(by: Int64(batch.count))
                if self.failing.exchange(false, ordering: .relaxed) {
                    self.logger.notice("OTLP export recovered", metadata: ["otlp.url": .string(self.configuration.loggableURL)])
                }
                return
            case .rejected(let reason):
                self.failures.increment()
                self.giveUp(batch, reason: reason, attempts: attempt)
                return
            case .retryable(let reason, let retryAfter):
                self.failures.increment()
                guard attempt < attempts, !self.stopping.load(ordering: .relaxed) else {
                    self.giveUp(batch, reason: reason, attempts: attempt)
                    return
                }
                await self.pause(retryAfter.map { min($0, Self.maxRetryAfter) } ?? Self.backoff(attempt: attempt))
                attempt += 1
            }
        }
    }

    private func giveUp(_ batch: [FinishedRequest], reason: String, attempts: Int) {
        self.dropped.increment(by: Int64(batch.count))
        if !self.failing.exchange(true, ordering: .relaxed) {
            self.logger.warning(
                "OTLP export failing; spans dropped (logged again only after it recovers)",
                metadata: [
                    "otlp.url": .string(self.configuration.loggableURL), "error": .string(reason), "attempts": "\(attempts)",
                    "spans": "\(batch.count)",
                ]
            )
        }
    }

    /// Sends one request and classifies the answer.
    func post(_ body: ByteBuffer, client: HTTPClient, timeout: Duration) async -> Outcome {
        var request = HTTPClientRequest(url: self.configuration.tracesURL)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        for header in self.configuration.headers { request.headers.add(name: header.name, value: header.value) }
        request.body = .bytes(body)
        do {
            let response = try await client.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
            // Read the answer (bounded) so the connection can be reused.
            _ = try? await response.body.collect(upTo: Self.maxResponseBytes)
            return Self.outcome(status: response.status, retryAfter: response.headers.first(name: "retry-after"))
        } catch {
            // No connection, a timeout, a reset: the collector may come back.
            return .retryable(String(describing: error), retryAfter: nil)
        }
    }

    /// OTLP/HTTP: 2xx accepted; 429, 502, 503, 504 retryable; anything else rejected for good.
    static func outcome(status: HTTPResponseStatus, retryAfter: String?) -> Outcome {
        switch status.code {
        case 200..<300: .accepted
        case 429, 502, 503, 504:
            .retryable("HTTP \(status.code)", retryAfter: retryAfter.flatMap { Int64($0.trimmingCharacters(in: .whitespaces)) }.map { .seconds(max($0, 0)) })
        default: .rejected("HTTP \(status.code)")
        }
    }

    /// 0.5 s, 1 s, 2 s, 4 s … at most 5 s, each ±20 %.
    static func backoff(attempt: Int) -> Duration {
        let base = min(Self.firstBackoff * (1 << min(attempt - 1, 10)), Self.maxBackoff)
        return base * Double.random(in: 0.8...1.2)
    }

    /// Sleeps `duration`, or less when graceful shutdown begins.
    private func pause(_ duration: Duration) async {
        let end = ContinuousClock.now + duration
        while !self.stopping.load(ordering: .relaxed) {
            let left = ContinuousClock.now.duration(to: end)
            if left <= .zero { return }
            try? await Task.sleep(for: min(left, .milliseconds(100)))
        }
    }
}
