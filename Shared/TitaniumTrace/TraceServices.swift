import ServiceLifecycle

/// Several background services run as one (the trace writer and the OTLP exporter): each sees
/// the same graceful shutdown, and this returns when all have finished.
struct TraceServices: Service {
    let services: [any Service]

    func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for service in self.services {
                group.addTask { try await service.run() }
            }
        }
    }
}
