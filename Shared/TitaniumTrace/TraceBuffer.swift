import Synchronization
import TitaniumHTTP

/// The bounded in-memory queue between requests and the writer. `append` never waits: when the
/// buffer holds `capacity` records the new one is dropped and counted. The writer sleeps until a
/// batch is full or it is woken (by its flush timer or by shutdown).
final class TraceBuffer: Sendable {
    let capacity: Int
    let batchSize: Int

    private struct State {
        var records: [FinishedRequest] = []
        var waiter: CheckedContinuation<Void, Never>?
        var woken = false
    }
    private let state: Mutex<State>

    init(capacity: Int, batchSize: Int) {
        self.capacity = capacity
        self.batchSize = min(batchSize, capacity)
        var initial = State()
        initial.records.reserveCapacity(capacity)
        self.state = Mutex(initial)
    }

    /// Adds a record unless the buffer is full; false when it was dropped.
    func append(_ record: FinishedRequest) -> Bool {
        let (accepted, waiter) = self.state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
            guard state.records.count < self.capacity else { return (false, nil) }
            state.records.append(record)
            guard state.records.count >= self.batchSize, let waiter = state.waiter else { return (true, nil) }
            state.waiter = nil
            return (true, waiter)
        }
        waiter?.resume()
        return accepted
    }

    var depth: Int { self.state.withLock { $0.records.count } }

    /// Takes up to `limit` of the oldest records.
    func take(upTo limit: Int) -> [FinishedRequest] {
        self.state.withLock { state in
            let count = min(limit, state.records.count)
            let taken = Array(state.records.prefix(count))
            state.records.removeFirst(count)
            return taken
        }
    }

    /// Returns once a batch is full or ``wake()`` was called (since the last return).
    func waitForBatch() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = self.state.withLock { state -> Bool in
                if state.woken || state.records.count >= self.batchSize {
                    state.woken = false
                    return true
                }
                state.waiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Ends the current (or next) ``waitForBatch()``.
    func wake() {
        let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.woken = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }
}
