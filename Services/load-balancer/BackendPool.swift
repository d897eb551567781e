import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import TitaniumHTTP
import TitaniumProxy

/// The gateway replicas behind the load balancer, balanced by least outstanding requests
/// (round robin among equals), with
/// - active health checks of `/health/ready` every `interval` (healthy after `rise` passes,
///   unhealthy after `fall` failures, or at once when it answers `draining`);
/// - passive ejection after `ejectAfter` consecutive failures of the gateway itself (no
///   connection, no answer in time, a 5xx it made without `Proxy-Status`: not a 502/504 it
///   relays about a service behind it), for `ejectFor`, never more than half the pool at once.
final class BackendPool: Service, BackendBalancer, Sendable {
    struct Settings: Sendable {
        var interval: Duration = .seconds(2)
        var checkTimeout: Duration = .seconds(1)
        var rise = 2
        var fall = 3
        var ejectAfter = 5
        var ejectFor: Duration = .seconds(30)
    }

    struct Backend: Sendable {
        var url: String
        var healthy = true
        var passes = 0
        var failures = 0
        var consecutiveErrors = 0
        var ejectedUntil: ContinuousClock.Instant?
        var outstanding = 0
        var requests = 0
        var errors = 0
        var lastCheckError: String?
    }

    /// Per-backend figures for `/stats`.
    struct Report: Encodable, Sendable {
        var url: String
        var healthy: Bool
        var ejected: Bool
        var outstanding: Int
        var requests: Int
        var errors: Int
        var last_check_error: String?
    }

    let settings: Settings
    let client: HTTPClient
    let logger: Logger
    private let backends: Mutex<[Backend]>
    private let turn = Atomic<Int>(0)

    init(urls: [String], client: HTTPClient, logger: Logger, settings: Settings = Settings()) {
        self.settings = settings
        self.client = client
        self.logger = logger
        self.backends = Mutex(urls.map { Backend(url: $0.hasSuffix("/") ? String($0.dropLast()) : $0) })
    }

    /// The backend to use (its index and URL), skipping `excluding`; nil when none is available.
    func acquireBackend(excluding: Int? = nil) -> (index: Int, url: String)? {
        let start = self.turn.wrappingAdd(1, ordering: .relaxed).oldValue
        return self.backends.withLock { backends in
            let now = ContinuousClock.now
            var best: Int?
            for offset in 0..<backends.count {
                let index = (start + offset) % backends.count
                let backend = backends[index]
                guard index != excluding, backend.healthy, backend.ejectedUntil.map({ $0 <= now }) ?? true else { continue }
                if best == nil || backend.outstanding < backends[best!].outstanding { best = index }
            }
            guard let chosen = best else { return nil }
            backends[chosen].outstanding += 1
            backends[chosen].requests += 1
            return (chosen, backends[chosen].url)
        }
    }

    func acquire(excluding: Int?) -> Int? {
        self.acquireBackend(excluding: excluding).map(\.index)
    }

    /// Records the outcome of a request to backend `index`.
    func release(_ index: Int, failed: Bool) {
        self.backends.withLock { backends in
            backends[index].outstanding -= 1
            guard failed else {
                backends[index].consecutiveErrors = 0
                return
            }
            backends[index].errors += 1
            backends[index].consecutiveErrors += 1
            let now = ContinuousClock.now
            let ejected = backends.filter { $0.ejectedUntil.map { $0 > now } ?? false }.count
            if backends[index].consecutiveErrors >= self.settings.ejectAfter, (ejected + 1) * 2 <= backends.count {
                backends[index].ejectedUntil = now + self.settings.ejectFor
                backends[index].consecutiveErrors = 0
                self.logger.warning("backend ejected", metadata: ["upstream.url": .string(backends[index].url)])
            }
        }
    }

    var report: [Report] {
        let now = ContinuousClock.now
        return self.backends.withLock { backends in
            backends.map {
                Report(
                    url: $0.url, healthy: $0.healthy, ejected: $0.ejectedUntil.map { $0 > now } ?? false,
                    outstanding: $0.outstanding, requests: $0.requests, errors: $0.errors, last_check_error: $0.lastCheckError
                )
            }
        }
    }

    /// Active health checks until shutdown.
    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.checkAll()
                try? await Task.sleep(for: self.settings.interval)
            }
        }
    }

    func checkAll() async {
        let urls = self.backends.withLock { $0.map(\.url) }
        await withTaskGroup(of: (Int, String?).self) { group in
            for (index, url) in urls.enumerated() {
                group.addTask {
                    do {
                        let response = try await self.client.execute(
                            HTTPClientRequest(url: url + "/health/ready"), timeout: .nanoseconds(self.settings.checkTimeout.nanoseconds)
                        )
                        let body = (try? await response.body.collect(upTo: 1 << 16)).map { String(buffer: $0) } ?? ""
                        if response.status == .ok { return (index, nil) }
                        // SIGTERM received: out of the rotation now, not after `fall` checks.
                        if response.status == .serviceUnavailable, body.contains(#""status":"draining""#) { return (index, Self.draining) }
                        return (index, "answered \(response.status.code)")
                    } catch {
                        return (index, "\(error)")
                    }
                }
            }
            for await (index, error) in group { self.record(index, error: error) }
        }
    }

    static let draining = "draining"

    private func record(_ index: Int, error: String?) {
        self.backends.withLock { backends in
            backends[index].lastCheckError = error
            if error == nil {
                backends[index].failures = 0
                backends[index].passes += 1
                if !backends[index].healthy, backends[index].passes >= self.settings.rise {
                    backends[index].healthy = true
                    self.logger.notice("backend healthy", metadata: ["upstream.url": .string(backends[index].url)])
                }
            } else {
                backends[index].passes = 0
                backends[index].failures += 1
                if backends[index].healthy, backends[index].failures >= self.settings.fall || error == Self.draining {
                    backends[index].healthy = false
                    self.logger.warning("backend unhealthy", metadata: ["upstream.url": .string(backends[index].url), "error": .string(error ?? "")])
                }
            }
        }
    }
}
