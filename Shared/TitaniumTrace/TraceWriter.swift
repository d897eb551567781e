import Foundation
import GRDB
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization
import TitaniumHTTP
import TitaniumSQLite
import TitaniumTracing
import TitaniumMetrics

/// Writes the buffer to the store: a batch as soon as one is full, whatever is waiting every
/// flush interval, everything on graceful shutdown. A busy or locked database is retried with
/// a bounded back-off; a batch that still fails is dropped and counted. Rows older than the
/// retention are deleted in small batches once a minute.
final class TraceWriter: Service, Sendable {
    let store: TraceStore
    let buffer: TraceBuffer
    let configuration: TraceConfiguration
    let service: String
    let instance: String
    let logger: Logger
    let written: Prometheus.Counter
    let dropped: Prometheus.Counter
    let depth: Prometheus.Gauge
    let flushDuration: Prometheus.DurationHistogram
    /// Back-off between attempts at one batch; its length bounds the retries.
    static let backoff: [Duration] = [.milliseconds(50), .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600), .seconds(2), .seconds(2)]
    private let stopping = Atomic<Bool>(false)
    private let compactorWake = DispatchSemaphore(value: 0)
    private let compactorDone = DispatchSemaphore(value: 0)
    /// Rows in the inbox not yet compacted into `trace_steps`, and when it was last done
    /// (only the writer's task touches these).
    private let inbox = Mutex<(rows: Int, compactedAt: ContinuousClock.Instant)>((0, .now))

    init(
        store: TraceStore, buffer: TraceBuffer, configuration: TraceConfiguration, service: String, instance: String,
        registry: PrometheusCollectorRegistry, dropped: Prometheus.Counter,
        logger: Logger
    ) {
        self.store = store
        self.buffer = buffer
        self.configuration = configuration
        self.service = service
        self.instance = instance
        self.logger = logger
        self.dropped = dropped
        self.written = registry.makeCounter(named: "trace_records_written_total", help: "Trace records written to the trace store")
        self.depth = registry.makeGauge(named: "trace_buffer_depth", help: "Trace records waiting in memory to be written")
        self.flushDuration = registry.makeDurationHistogram(
            named: "trace_flush_duration_seconds",
            buckets: [.microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                      .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5)],
            help: "Time to write one batch of trace records, retries included"
        )
    }

    /// Runs the writer and the compactor on threads of their own until graceful shutdown, then
    /// writes and compacts what is left. Threads rather than tasks: with every core busy serving
    /// requests, a task would wait behind them in the cooperative pool while the buffer fills.
    /// Two threads: a compaction (tens of milliseconds) never holds up the batches.
    func run() async throws {
        await withGracefulShutdownHandler {
            await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
                let compactor = Thread {
                    self.compactorLoop()
                    self.compactorDone.signal()
                }
                compactor.name = "trace-compactor"
                compactor.start()
                let writer = Thread {
                    self.loop()
                    finished.resume()
                }
                writer.name = "trace-writer"
                writer.start()
            }
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .relaxed)
            self.buffer.wake()
            self.compactorWake.signal()
        }
        let rows = (try? await self.store.count()) ?? -1
        self.logger.info("trace store flushed", metadata: ["rows": "\(rows)"])
    }

    private func loop() {
        while !self.stopping.load(ordering: .relaxed) {
            self.buffer.waitForBatch(timeout: self.configuration.flushInterval)
            self.drain()
        }
        // Whatever arrived while the server drained, then all of the inbox once the compactor
        // has stopped.
        self.drain()
        self.compactorDone.wait()
        self.compactIfDue(force: true)
    }

    /// Compacts once a second, or sooner when the writer says the inbox is full enough, and
    /// expires old rows once a minute. Both write `trace_steps` only, never the inbox, so the
    /// writer's batches go on meanwhile.
    private func compactorLoop() {
        var nextRetention = ContinuousClock.now
        while !self.stopping.load(ordering: .relaxed) {
            _ = self.compactorWake.wait(timeout: .now() + .seconds(1))
            if self.stopping.load(ordering: .relaxed) { break }
            self.compactIfDue(force: false)
            if ContinuousClock.now >= nextRetention {
                // Behind (a busy store expires more than one round's budget a minute): again in a second.
                let caughtUp = self.applyRetention(budget: .milliseconds(500))
                nextRetention = caughtUp ? .now + .seconds(60) : .now
            }
        }
    }

    /// Writes batches until the buffer is empty.
    func drain() {
        while true {
            let batch = self.buffer.take(upTo: self.configuration.batchSize)
            if batch.isEmpty { break }
            self.write(batch.map(self.step))
        }
        self.depth.set(to: Double(self.buffer.depth))
    }

    func write(_ steps: [TraceStep]) {
        let start = ContinuousClock.now
        defer { self.flushDuration.record(start.duration(to: .now)) }
        if self.withRetries("batch", in: .inbox, rows: steps.count, { db in try TraceStore.insert(steps, into: db) }) {
            self.written.increment(by: Int64(steps.count))
            let rows = self.inbox.withLock { inbox in
                inbox.rows += steps.count
                return inbox.rows
            }
            if rows >= TraceStore.compactionRows && rows - steps.count < TraceStore.compactionRows { self.compactorWake.signal() }
        } else {
            self.logger.error("trace batch dropped", metadata: ["rows": "\(steps.count)"])
            self.dropped.increment(by: Int64(steps.count))
        }
    }

    /// Moves the inbox into `trace_steps` once it holds 20,000 rows or a second has passed
    /// (rows already written stay in the inbox, still queried, if this fails).
    func compactIfDue(force: Bool) {
        let (rows, since) = self.inbox.withLock { ($0.rows, $0.compactedAt) }
        guard rows > 0, force || rows >= TraceStore.compactionRows || since.duration(to: .now) >= .seconds(1) else { return }
        var copied = (rows: 0, lastID: Int64(0))
        guard self.withRetries("compaction", in: .steps, rows: rows, { db in copied = try TraceStore.copyInbox(in: db, limit: Int.max) })
        else { return }
        let done = copied
        // Batches written meanwhile stay counted for the next compaction.
        self.inbox.withLock { $0 = (max($0.rows - done.rows, 0), .now) }
        // A failure here leaves copied rows in the inbox; the next compaction deletes them.
        _ = self.withRetries("inbox trim", in: .inbox, rows: done.rows, { db in try TraceStore.trimInbox(in: db, through: done.lastID) })
        do { try self.store.checkpointInbox() } catch { self.logger.warning("trace inbox checkpoint failed", metadata: ["error": "\(error)"]) }
    }

    /// Runs `body` in a write transaction, retrying a busy or locked database with back-off.
    private enum File { case inbox, steps }

    private func withRetries(_ what: String, in file: File, rows: Int, _ body: (Database) throws -> Void) -> Bool {
        for attempt in 0...Self.backoff.count {
            do {
                switch file {
                case .inbox: try self.store.inbox.write { db in try body(db) }
                case .steps: try self.store.writeSteps { db in try body(db) }
                }
                if attempt > 0 {
                    self.logger.notice("trace \(what) written after retries", metadata: ["attempts": "\(attempt + 1)", "rows": "\(rows)"])
                }
                return true
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
                guard attempt < Self.backoff.count else { break }
                self.logger.notice("trace store busy, retrying the \(what)", metadata: ["attempt": "\(attempt + 1)", "error": "\(error)"])
                let pause = Self.backoff[attempt]
                Thread.sleep(forTimeInterval: Double(pause.components.seconds) + Double(pause.components.attoseconds) / 1e18)
            } catch {
                self.logger.error("trace \(what) failed", metadata: ["rows": "\(rows)", "error": "\(error)"])
                break
            }
        }
        return false
    }

    /// Deletes rows older than the retention, 1,000 per transaction (so the compactor never
    /// holds `trace_steps` for long), for at most `budget`; true when none are left.
    @discardableResult
    func applyRetention(budget: Duration) -> Bool {
        let cutoff = SQLiteDatabase.now() - Int64(self.configuration.retention.components.seconds) * 1000
        let start = ContinuousClock.now
        do {
            while start.duration(to: .now) < budget {
                let deleted = try self.store.writeSteps { db in try TraceStore.deleteOlder(than: cutoff, batch: 1000, in: db) }
                if deleted < 1000 { return true }
            }
            return false
        } catch {
            self.logger.warning("trace retention failed", metadata: ["error": "\(error)"])
            return true
        }
    }

    /// A finished request as a row: the text is made here, off the request path.
    func step(_ request: FinishedRequest) -> TraceStep {
        TraceStep(
            trace_id: request.spanContext.traceID, span_id: request.spanContext.spanID,
            parent_span_id: request.spanContext.parentSpanIDString, service: self.service, instance: self.instance,
            user_id: request.userID, route: request.route, path: request.path, method: request.method, status_code: request.status,
            latency_us: Int64(request.latencyMicroseconds), ip: request.remoteAddress?.ipAddress ?? "unknown",
            user_agent: request.userAgent ?? "", created_at: request.startedAtMilliseconds
        )
    }
}

