import Foundation
import TitaniumHTTP

/// The bounded in-memory queue between requests and the writer thread. `append` never waits
/// for the writer: when the buffer holds `capacity` records the new one is dropped (and the
/// caller counts it). The writer thread sleeps until a batch is full, its flush interval has
/// passed, or it is woken for shutdown.
final class TraceBuffer: @unchecked Sendable {
    let capacity: Int
    let batchSize: Int
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var records: [FinishedRequest] = []
    private var woken = false

    init(capacity: Int, batchSize: Int) {
        self.capacity = capacity
        self.batchSize = min(batchSize, capacity)
        self.records.reserveCapacity(capacity)
    }

    /// Adds a record unless the buffer is full; false when it was dropped.
    func append(_ record: FinishedRequest) -> Bool {
        self.condition.lock()
        defer { self.condition.unlock() }
        guard self.records.count < self.capacity else { return false }
        self.records.append(record)
        if self.records.count == self.batchSize { self.condition.signal() }
        return true
    }

    var depth: Int {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.records.count
    }

    /// Takes up to `limit` of the oldest records.
    func take(upTo limit: Int) -> [FinishedRequest] {
        self.condition.lock()
        defer { self.condition.unlock() }
        let count = min(limit, self.records.count)
        let taken = Array(self.records.prefix(count))
        self.records.removeFirst(count)
        return taken
    }

    /// Blocks the calling thread until a batch is full, `timeout` has passed or ``wake()``.
    func waitForBatch(timeout: Duration) {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        self.condition.lock()
        defer { self.condition.unlock() }
        while !self.woken && self.records.count < self.batchSize {
            if !self.condition.wait(until: deadline) { break }
        }
        self.woken = false
    }

    /// Ends the current (or next) ``waitForBatch(timeout:)``.
    func wake() {
        self.condition.lock()
        self.woken = true
        self.condition.signal()
        self.condition.unlock()
    }
}
