import Foundation
import Logging
import Prometheus
import Synchronization
import TitaniumLogging
import TitaniumMetrics

/// The fault this service is injecting, if any: at most one at a time, in memory only (a restart
/// clears it), gone by itself after its `duration_s`. Set through `/admin/faults` (``FaultRoutes``),
/// applied to requests by ``FaultMiddleware`` and to dependencies through ``severance(of:)``.
/// Every change is logged, and `faults_active{kind}` / `fault_injections_total{kind}` count them.
public final class Faults: Sendable {
    /// The fault as `GET /admin/faults` and `/stats` show it.
    public struct Active: Codable, Sendable, Equatable {
        public var latency_ms: Int
        public var jitter_ms: Int
        public var error_rate: Double
        public var error_status: Int
        public var hang: Bool
        public var routes: [String]
        public var dependency: String?
        public var duration_s: Int
        public var kinds: [FaultKind]
        public var applied_at: String
        public var expires_at: String
        public var remaining_s: Double
    }

    private struct Current {
        var spec: FaultSpec
        var generation: UInt64
        var appliedAt: Double  // epoch seconds
        var expiresAt: ContinuousClock.Instant
        var expiry: Task<Void, Never>
    }

    private struct State {
        var current: Current?
        var generation: UInt64 = 0
        var dependencies: Set<String> = []
    }

    private let state = Mutex(State())
    /// Checked first on every request: no lock is taken while no fault is set.
    private let armed = Atomic<Bool>(false)
    private let logger: Logger
    private let active: [FaultKind: Gauge]
    private let injections: [FaultKind: Counter]

    public init(registry: PrometheusCollectorRegistry, logger: Logger) {
        self.logger = logger
        var active: [FaultKind: Gauge] = [:]
        var injections: [FaultKind: Counter] = [:]
        for kind in FaultKind.allCases {
            active[kind] = registry.makeGauge(
                named: "faults_active", labels: [("kind", kind.rawValue)], help: "Whether a fault of this kind is being injected (1) or not (0)."
            )
            injections[kind] = registry.makeCounter(
                named: "fault_injections_total", labels: [("kind", kind.rawValue)], help: "Faults of this kind applied through /admin/faults."
            )
        }
        self.active = active
        self.injections = injections
    }

    /// Declares a dependency this service can be made to lose, and returns what its client asks
    /// before each call: true while a fault says the dependency is down.
    public func severance(of dependency: String) -> @Sendable () -> Bool {
        self.state.withLock { _ = $0.dependencies.insert(dependency) }
        return { [weak self] in
            guard let self, self.armed.load(ordering: .relaxed) else { return false }
            return self.state.withLock { $0.current?.spec.dependency == dependency }
        }
    }

    /// The dependencies a fault may name.
    public var dependencies: Set<String> { self.state.withLock { $0.dependencies } }

    /// Applies `spec`, replacing any fault before it.
    @discardableResult
    public func apply(_ spec: FaultSpec) -> Active {
        let now = ContinuousClock.now
        let expiresAt = now.advanced(by: .seconds(spec.durationSeconds))
        let (previous, current) = self.state.withLock { state in
            state.generation += 1
            let generation = state.generation
            let expiry = Task { [weak self] in
                try? await Task.sleep(until: expiresAt, clock: .continuous)
                guard !Task.isCancelled else { return }
                self?.clear(generation: generation, reason: "expired")
            }
            let previous = state.current
            state.current = Current(
                spec: spec, generation: generation, appliedAt: Date().timeIntervalSince1970, expiresAt: expiresAt, expiry: expiry
            )
            self.armed.store(true, ordering: .relaxed)
            return (previous, state.current!)
        }
        previous?.expiry.cancel()
        for kind in FaultKind.allCases { self.active[kind]?.set(spec.kinds.contains(kind) ? 1.0 : 0.0) }
        for kind in spec.kinds { self.injections[kind]?.increment() }
        let view = Self.view(current, now: now)
        self.logger.warning(
            "fault applied",
            metadata: [
                "kinds": .string(spec.kinds.map(\.rawValue).joined(separator: ",")),
                "routes": .string(spec.routes.joined(separator: ",")),
                "dependency": .string(spec.dependency ?? ""),
                "latency_ms": .stringConvertible(spec.latencyMilliseconds),
                "error_rate": .stringConvertible(spec.errorRate),
                "duration_s": .stringConvertible(spec.durationSeconds),
                "replaced": .stringConvertible(previous != nil),
            ]
        )
        return view
    }

    /// Removes the fault; false when there was none.
    @discardableResult
    public func remove() -> Bool {
        guard let generation = self.state.withLock({ $0.current?.generation }) else { return false }
        return self.clear(generation: generation, reason: "removed")
    }

    @discardableResult
    private func clear(generation: UInt64, reason: String) -> Bool {
        let cleared: Current? = self.state.withLock { state in
            guard let current = state.current, current.generation == generation else { return nil }
            state.current = nil
            self.armed.store(false, ordering: .relaxed)
            return current
        }
        guard let cleared else { return false }
        if reason != "expired" { cleared.expiry.cancel() }
        for gauge in self.active.values { gauge.set(0.0) }
        self.logger.notice("fault \(reason)", metadata: ["kinds": .string(cleared.spec.kinds.map(\.rawValue).joined(separator: ","))])
        return true
    }

    /// The fault now, if any.
    public var current: Active? {
        guard self.armed.load(ordering: .relaxed) else { return nil }
        return self.state.withLock { $0.current }.map { Self.view($0, now: .now) }
    }

    /// The fault a request for `path` meets, and the generation to wait on while it hangs.
    func affecting(path: String) -> (spec: FaultSpec, generation: UInt64)? {
        guard self.armed.load(ordering: .relaxed) else { return nil }
        guard let current = self.state.withLock({ $0.current }), current.expiresAt > .now,
            current.spec.kinds.contains(where: { $0 != .dependency }), current.spec.matches(path: path)
        else { return nil }
        return (current.spec, current.generation)
    }

    /// Whether the fault of `generation` is still the one in force.
    func isInForce(generation: UInt64) -> Bool {
        self.state.withLock { $0.current.map { $0.generation == generation && $0.expiresAt > .now } ?? false }
    }

    /// Whether any fault is set: one atomic load, for a proxy's fast path to ask per request.
    public var isArmed: Bool { self.armed.load(ordering: .relaxed) }

    /// Whether requests for `path` must pass the code that injects faults: a proxy's fast path
    /// hands them to its router meanwhile.
    public func affects(path: String) -> Bool {
        self.affecting(path: path) != nil
    }

    private static func view(_ current: Current, now: ContinuousClock.Instant) -> Active {
        let spec = current.spec
        let remaining = max(0, now.duration(to: current.expiresAt).milliseconds / 1000)
        return Active(
            latency_ms: spec.latencyMilliseconds, jitter_ms: spec.jitterMilliseconds, error_rate: spec.errorRate,
            error_status: spec.errorStatus, hang: spec.hang, routes: spec.routes, dependency: spec.dependency,
            duration_s: spec.durationSeconds, kinds: spec.kinds,
            applied_at: RFC3339.format(epochSeconds: current.appliedAt),
            expires_at: RFC3339.format(epochSeconds: current.appliedAt + Double(spec.durationSeconds)),
            remaining_s: remaining.rounded(toPlaces: 1)
        )
    }
}
