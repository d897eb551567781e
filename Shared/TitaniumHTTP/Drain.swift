import Logging
import ServiceLifecycle
import Synchronization

/// Whether the process has been told to stop: `/health/ready` then answers 503 `draining`, so
/// that load balancers and Kubernetes take it out before it stops accepting.
public final class DrainState: Sendable {
    private let draining = Atomic<Bool>(false)

    public init() {}

    public var isDraining: Bool { self.draining.load(ordering: .relaxed) }

    func begin() { self.draining.store(true, ordering: .relaxed) }
}

/// The first service to hear SIGTERM (last in the group): marks the process draining, then keeps
/// it serving for `SHUTDOWN_DELAY_SECONDS` before the server stops accepting and drains.
struct DrainGate: Service {
    let state: DrainState
    let delay: Duration
    let logger: Logger

    func run() async throws {
        // Until the group shuts down gracefully; a cancellation ends the process without a delay.
        do { try await gracefulShutdown() } catch { return }
        self.state.begin()
        self.logger.notice("draining", metadata: ["shutdown.delay_s": .stringConvertible(self.delay.components.seconds)])
        try? await Task.sleep(for: self.delay)
    }
}
