import Foundation
import GRDB
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import TitaniumHTTP
import TitaniumTrace
import TitaniumTracing
import W3CTraceContext

// The trace store's two costs, measured in one process:
//   ingest   records/s written to SQLite in batches (one transaction + prepared statement each)
//   enqueue  ns per record handed to the recorder on the request path (no text made there)
//   sustain  a paced 10,000 records/s for SECONDS through the real writer with default
//            settings: written and dropped at the end
// Usage: trace-bench ingest|enqueue|sustain [count|seconds]

let mode = CommandLine.arguments.dropFirst().first ?? "ingest"
let argument = CommandLine.arguments.dropFirst(2).first.flatMap(Int.init)
let directory = FileManager.default.temporaryDirectory.appendingPathComponent("trace-bench-\(getpid())")
try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: directory) }

func finished(_ index: Int) -> FinishedRequest {
    var generator = IDRandomGenerator()
    let context = W3CSpanContext(
        traceContext: TraceContext(traceID: .random(using: &generator), spanID: .random(using: &generator), flags: .sampled, state: TraceState()),
        parentSpanID: .random(using: &generator)
    )
    return FinishedRequest(
        spanContext: context, method: "GET", route: "/api/posts/{id}", path: "/api/posts/\(index % 1000)", status: 200,
        latencyMicroseconds: 1234, startedAtMilliseconds: Int64(Date().timeIntervalSince1970 * 1000),
        remoteAddress: try? .init(ipAddress: "10.0.0.7", port: 50000), userAgent: "wrk/4.2", userID: "42"
    )
}

/// `IDS=time`: trace ids as the services make them for traces they start (the time in
/// milliseconds first, `TraceID.timeOrdered`), 10 rows per millisecond; otherwise random
/// 128-bit ids, as a client that sends its own `traceparent` gives them.
let timeOrderedIDs = ProcessInfo.processInfo.environment["IDS"] == "time"

/// A row as the writer makes it: random span ids and trace ids as `IDS` says (random ones put
/// each row's trace_id index entry at a random place), a handful of users and paths.
func step(_ index: Int) -> TraceStep {
    var generator = IDRandomGenerator()
    let traceID = timeOrderedIDs
        ? String(format: "%012llx%04llx%016llx", 1_795_000_000_000 + UInt64(index / 10), generator.next() & 0xFFFF, generator.next())
        : String(format: "%016llx%016llx", generator.next(), generator.next())
    return TraceStep(
        trace_id: traceID, span_id: String(format: "%016llx", generator.next()),
        parent_span_id: String(format: "%016llx", generator.next()),
        service: "blog-service", instance: "bench:7303", user_id: String(index % 50), route: "/api/posts/{id}", path: "/api/posts/\(index % 1000)",
        method: "GET", status_code: 200, latency_us: 1234, ip: "10.0.0.7", user_agent: "wrk/4.2", created_at: 1_795_000_000_000 + Int64(index)
    )
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = start.duration(to: .now)
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

switch mode {
case "ingest":
    let count = argument ?? 200_000
    let store = try TraceStore(path: directory.appendingPathComponent("traces.db").path)
    let size = CommandLine.arguments.dropFirst(3).first.flatMap(Int.init) ?? 100
    // As the writer does: batches into the inbox, compacted into the indexed table every
    // TraceStore.compactionRows rows (the writer also compacts after a second) and at the end.
    func ingest(_ steps: ArraySlice<TraceStep>) throws {
        for batch in stride(from: steps.startIndex, to: steps.endIndex, by: size) {
            try store.insert(Array(steps[batch..<min(batch + size, steps.endIndex)]))
            if (batch + size - steps.startIndex) % TraceStore.compactionRows == 0 { _ = try store.compact() }
        }
        _ = try store.compact()
    }
    // PRELOAD=N: N rows written first (not timed), as in a store that has been recording a while.
    let preload = ProcessInfo.processInfo.environment["PRELOAD"].flatMap(Int.init) ?? 0
    if preload > 0 {
        for chunk in stride(from: 0, to: preload, by: 200_000) {
            try ingest((chunk..<min(chunk + 200_000, preload)).map(step)[...])
        }
    }
    let steps = (preload..<(preload + count)).map(step)
    let start = ContinuousClock.now
    try ingest(steps[...])
    let elapsed = seconds(since: start)
    let ids = timeOrderedIDs ? "time-ordered" : "random"
    print(
        String(format: "ingest %d records in %.3f s: %.0f records/s (batches of %d, ", count, elapsed, Double(count) / elapsed, size)
            + "\(ids) trace ids, \(preload) rows already stored)"
    )

case "enqueue":
    let count = argument ?? 1_000_000
    var configuration = TraceConfiguration(databasePath: directory.appendingPathComponent("traces.db").path)
    configuration.bufferSize = count  // nothing dropped: the cost of an accepted record
    configuration.batchSize = count
    configuration.flushInterval = .seconds(3600)
    let recorder = try TraceRecorder(
        configuration: configuration, service: "bench", instance: "bench", registry: PrometheusCollectorRegistry(), logger: Logger(label: "bench")
    )
    let records = (0..<count).map(finished)
    let start = ContinuousClock.now
    for record in records { recorder.record(record) }
    let elapsed = seconds(since: start)
    print(String(format: "enqueue %d records: %.0f ns each (buffer depth %d)", count, elapsed * 1e9 / Double(count), recorder.bufferDepth))

case "sustain":
    let duration = argument ?? 60
    let configuration = TraceConfiguration(databasePath: directory.appendingPathComponent("traces.db").path)
    // EXPIRED=N: N rows past the retention already in the store, so retention deletes while
    // the writer takes 10,000/s.
    let expired = ProcessInfo.processInfo.environment["EXPIRED"].flatMap(Int.init) ?? 0
    if expired > 0 {
        let store = try TraceStore(path: configuration.databasePath)
        for batch in stride(from: 0, to: expired, by: 1000) {
            try store.insert((batch..<min(batch + 1000, expired)).map { index in
                var row = step(index)
                row.created_at = 1_000_000 + Int64(index)  // 1970: long expired
                return row
            })
            if (batch + 1000) % TraceStore.compactionRows == 0 { _ = try store.compact() }
        }
        _ = try store.compact()
    }
    let registry = PrometheusCollectorRegistry()
    let recorder = try TraceRecorder(configuration: configuration, service: "bench", instance: "bench", registry: registry, logger: Logger(label: "bench"))
    let group = ServiceGroup(services: [recorder.service], logger: Logger(label: "bench"))
    let sent = try await withThrowingTaskGroup(of: Int.self) { tasks in
        tasks.addTask { try await group.run(); return 0 }
        tasks.addTask {
            // 10 records every millisecond, on schedule: 10,000/s.
            let start = ContinuousClock.now
            var sent = 0
            for tick in 1...(duration * 1000) {
                for _ in 0..<10 { recorder.record(finished(sent)); sent += 1 }
                try await Task.sleep(until: start + .milliseconds(tick), clock: .continuous)
            }
            await group.triggerGracefulShutdown()
            return sent
        }
        var total = 0
        for try await value in tasks { total += value }
        return total
    }
    let rows = try await recorder.store.count()
    let left = try recorder.store.database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM trace_steps WHERE created_at < 2000000000") ?? 0 }
    let text = registry.emitToString()
    let dropped = text.split(separator: "\n").first { $0.hasPrefix("trace_records_dropped_total ") }?.split(separator: " ").last ?? "?"
    let buckets = text.split(separator: "\n").filter { $0.hasPrefix("trace_flush_duration_seconds_bucket") }.map { $0.replacingOccurrences(of: "trace_flush_duration_seconds_bucket", with: "") }
    print("batch write time (cumulative buckets): " + buckets.joined(separator: " "))
    let expiry = expired > 0 ? ", \(expired - left) of \(expired) expired rows deleted meanwhile" : ""
    print("sustain \(sent) records at 10,000/s for \(duration) s (defaults: buffer 1000, batch 100, flush 5 s): \(rows - left) written, \(dropped) dropped\(expiry)")

default:
    print("usage: trace-bench ingest|enqueue|sustain [count|seconds]")
}
