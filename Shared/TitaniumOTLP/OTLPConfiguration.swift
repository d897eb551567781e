import Foundation
import TitaniumHTTP

/// Where and how spans are exported over OTLP/HTTP, from the standard OpenTelemetry variables.
/// Export is on only when an endpoint is set.
///
/// | Variable | Default | |
/// |---|---|---|
/// | `OTEL_EXPORTER_OTLP_ENDPOINT` | (none: no export) | the collector's base URL; spans go to `<endpoint>/v1/traces` |
/// | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | (none) | the full URL for spans; wins over the base URL |
/// | `OTEL_EXPORTER_OTLP_HEADERS` | (none) | `key=value,key=value` sent with every export (values percent-decoded), e.g. an API key |
/// | `OTEL_EXPORTER_OTLP_TIMEOUT` | 10000 | milliseconds one export request may take |
/// | `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/json` | only `http/json` is spoken (see ``OTLPExporter``); anything else stops start-up |
/// | `OTEL_BSP_MAX_QUEUE_SIZE` | 2048 | spans held in memory; beyond it spans are dropped and counted |
/// | `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | 512 | spans per export request (at most the queue size) |
/// | `OTEL_BSP_SCHEDULE_DELAY` | 5000 | milliseconds between exports of a batch that is not full |
///
/// The `TRACES_` variants of the headers, timeout and protocol variables win when set.
public struct OTLPConfiguration: Sendable, Equatable {
    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
    }

    public var tracesURL: String
    public var headers: [Header] = []
    public var timeout: Duration = .seconds(10)
    public var maxQueueSize = 2048
    public var maxBatchSize = 512
    public var scheduleDelay: Duration = .seconds(5)

    /// The URL without user, password or query (where collectors take API keys), for logs.
    public var loggableURL: String {
        guard var components = URLComponents(string: self.tracesURL) else { return "(unparseable URL)" }
        components.user = nil
        components.password = nil
        components.query = nil
        return components.string ?? "(unparseable URL)"
    }

    public init(tracesURL: String) {
        self.tracesURL = tracesURL
    }

    /// The configuration the settings ask for; nil when no endpoint is set (no export).
    public static func from(_ settings: Settings) throws(ConfigurationError) -> OTLPConfiguration? {
        let url: String
        if let traces = settings.optionalString("otel.exporter.otlp.traces.endpoint") {
            url = try settings.httpURL("otel.exporter.otlp.traces.endpoint", default: traces)
        } else if let base = settings.optionalString("otel.exporter.otlp.endpoint") {
            url = try settings.httpURL("otel.exporter.otlp.endpoint", default: base) + "/v1/traces"
        } else {
            return nil
        }
        // The `TRACES_` variant of each variable wins over the general one.
        let tracesProtocol = settings.optionalString("otel.exporter.otlp.traces.protocol")
        if let wire = tracesProtocol ?? settings.optionalString("otel.exporter.otlp.protocol"), wire != "http/json" {
            throw ConfigurationError(
                key: tracesProtocol != nil ? "otel.exporter.otlp.traces.protocol" : "otel.exporter.otlp.protocol", value: wire,
                expected: "http/json (the only OTLP encoding Titanium sends)"
            )
        }
        var configuration = OTLPConfiguration(tracesURL: url)
        if let headers = settings.optionalString("otel.exporter.otlp.traces.headers") {
            configuration.headers = try Self.headers(headers, key: "otel.exporter.otlp.traces.headers")
        } else {
            configuration.headers = try Self.headers(settings.optionalString("otel.exporter.otlp.headers"), key: "otel.exporter.otlp.headers")
        }
        let timeout = try settings.int("otel.exporter.otlp.timeout", default: 10_000, range: 1...600_000)
        configuration.timeout = .milliseconds(try settings.int("otel.exporter.otlp.traces.timeout", default: timeout, range: 1...600_000))
        configuration.maxQueueSize = try settings.int("otel.bsp.max.queue.size", default: 2048, range: 1...1_000_000)
        configuration.maxBatchSize = try settings.int(
            "otel.bsp.max.export.batch.size", default: min(512, configuration.maxQueueSize), range: 1...configuration.maxQueueSize
        )
        configuration.scheduleDelay = .milliseconds(try settings.int("otel.bsp.schedule.delay", default: 5000, range: 1...3_600_000))
        return configuration
    }

    /// `key=value,key=value`, each value percent-decoded (the OpenTelemetry format). An error shows
    /// the names only: values are often API keys.
    static func headers(_ text: String?, key: String) throws(ConfigurationError) -> [Header] {
        guard let text else { return [] }
        let shown = text.split(separator: ",").map { pair in pair.split(separator: "=", maxSplits: 1).first.map { "\($0)=***" } ?? "***" }
            .joined(separator: ",")
        var headers: [Header] = []
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            let name = parts.first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            guard parts.count == 2, !name.isEmpty, name.utf8.allSatisfy(Self.isTokenByte) else {
                throw ConfigurationError(key: key, value: shown, expected: "comma-separated name=value pairs")
            }
            let raw = parts[1].trimmingCharacters(in: .whitespaces)
            guard let value = raw.removingPercentEncoding, !value.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
                throw ConfigurationError(key: key, value: shown, expected: "comma-separated name=value pairs (values percent-encoded)")
            }
            headers.append(Header(name: name, value: value))
        }
        return headers
    }

    /// An HTTP field name's characters (RFC 9110 token).
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
