import Prometheus

/// Renders `/metrics`: the registry followed by the process metrics, Prometheus text format 0.0.4.
public struct MetricsExposition: Sendable {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public let registry: PrometheusCollectorRegistry
    public let process: ProcessMetrics

    public init(registry: PrometheusCollectorRegistry, process: ProcessMetrics = ProcessMetrics()) {
        self.registry = registry
        self.process = process
    }

    public func render() -> [UInt8] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(8192)
        self.registry.emit(into: &buffer)
        self.process.emit(into: &buffer)
        return buffer
    }
}
