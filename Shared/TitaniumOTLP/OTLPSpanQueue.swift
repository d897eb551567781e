import Synchronization
import TitaniumHTTP

/// The bounded queue between requests and the exporter. `append` never waits: a full queue
/// refuses the span (the caller counts it). The exporter is woken when a batch is full.
final class OTLPSpanQueue: Sendable {
    let capacity: Int
    let batchSize: Int
    /// One pending wake at most: the exporter drains everything each time it wakes.
    let wakes: AsyncStream<Void>
    private let wakeUp: AsyncStream<Void>.Continuation
    private let spans: Mutex<[FinishedRequest]>

    init(capacity: Int, batchSize: Int) {
        self.capacity = capacity
        self.batchSize = min(batchSize, capacity)
        (self.wakes, self.wakeUp) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.spans = Mutex([])
    }

    /// Adds a span unless the queue is full; false when it was refused.
    func append(_ span: FinishedRequest) -> Bool {
        let count: Int? = self.spans.withLock { spans in
            guard spans.count < self.capacity else { return nil }
            spans.append(span)
            return spans.count
        }
        guard let count else { return false }
        if count == self.batchSize { self.wakeUp.yield() }
        return true
    }

    /// Up to `batchSize` of the oldest spans.
    func takeBatch() -> [FinishedRequest] {
        self.spans.withLock { spans in
            if spans.count <= self.batchSize {
                defer { spans = [] }
                return spans
            }
            let batch = Array(spans.prefix(self.batchSize))
            spans.removeFirst(self.batchSize)
            return batch
        }
    }

    var depth: Int { self.spans.withLock { $0.count } }

    /// Empties the queue; how many spans it held.
    func takeAll() -> Int {
        self.spans.withLock { spans in
            defer { spans = [] }
            return spans.count
        }
    }

    /// Wakes the exporter (its schedule delay has passed).
    func wake() { self.wakeUp.yield() }

    /// Ends `wakes`: the exporter's loop stops after its current batch.
    func close() { self.wakeUp.finish() }
}
