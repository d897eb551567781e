import Foundation

/// ONLINE or OFFLINE, as `/stats` and `/health/ready` report a dependency.
public struct DependencyStatus: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        case online = "ONLINE"
        case offline = "OFFLINE"
    }
    public var status: State
    public var error: String?
    public var latency_ms: Double?

    public init(_ status: State, error: String? = nil, latencyMilliseconds: Double? = nil) {
        self.status = status
        self.error = error
        self.latency_ms = latencyMilliseconds
    }

    public static let online = DependencyStatus(.online)
}

/// One dependency a service checks for `/health/ready` and reports in `/stats`.
/// A critical dependency that is OFFLINE makes the service unready (503); a non-critical one
/// (a cache) only makes it "degraded".
public struct DependencyCheck: Sendable {
    public var name: String
    public var critical: Bool
    public var timeout: Duration
    public var check: @Sendable () async -> DependencyStatus

    public init(name: String, critical: Bool = true, timeout: Duration = .seconds(1), check: @escaping @Sendable () async -> DependencyStatus) {
        self.name = name
        self.critical = critical
        self.timeout = timeout
        self.check = check
    }

    /// ONLINE when `probe` returns, OFFLINE with its error when it throws.
    public init(name: String, critical: Bool = true, timeout: Duration = .seconds(1), probe: @escaping @Sendable () async throws -> Void) {
        self.init(name: name, critical: critical, timeout: timeout) {
            do {
                try await probe()
                return .online
            } catch {
                return DependencyStatus(.offline, error: "\(error)")
            }
        }
    }

    /// Runs the check, reporting OFFLINE if it does not answer within `timeout`.
    public func run() async -> DependencyStatus {
        let start = ContinuousClock.now
        let result = await withTaskGroup(of: DependencyStatus?.self) { group in
            group.addTask { await self.check() }
            group.addTask {
                try? await Task.sleep(for: self.timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        let elapsed = start.duration(to: .now)
        var status = result ?? DependencyStatus(.offline, error: "no answer within \(self.timeout)")
        status.latency_ms = status.latency_ms ?? elapsed.milliseconds
        return status
    }
}
