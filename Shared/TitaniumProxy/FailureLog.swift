import Logging
import Synchronization

/// The forwarder's "upstream failed" warnings, at most one per upstream per `interval`: while an
/// upstream is down every request fails, and a line for each would flood the log. The lines left
/// out are counted, and the next line says how many (`suppressed`); every failure is still in
/// `http_requests_total`, the access log and the trace store.
final class FailureLog: Sendable {
    let logger: Logger
    let interval: Duration
    /// Per upstream name (a handful, from the configuration): when it last logged, and how many
    /// failures since then were not.
    private let state = Mutex<[String: (last: ContinuousClock.Instant, suppressed: Int)]>([:])

    init(logger: Logger, interval: Duration = .seconds(1)) {
        self.logger = logger
        self.interval = interval
    }

    func warn(upstream: String, error: any Error, status: Int, requestID: String, now: ContinuousClock.Instant = .now) {
        guard let suppressed = self.admit(upstream, now: now) else { return }
        self.logger.warning("upstream failed", metadata: [
            "upstream": .string(upstream), "error": .string("\(error)"), "status": .stringConvertible(status),
            "request_id": .string(requestID), "suppressed": .stringConvertible(suppressed),
        ])
    }

    /// How many lines were left out before this one, or nil when this one is left out too.
    func admit(_ upstream: String, now: ContinuousClock.Instant = .now) -> Int? {
        self.state.withLock { state in
            var entry = state[upstream] ?? (last: now - self.interval, suppressed: 0)
            guard entry.last.duration(to: now) >= self.interval else {
                entry.suppressed += 1
                state[upstream] = entry
                return nil
            }
            state[upstream] = (last: now, suppressed: 0)
            return entry.suppressed
        }
    }
}
