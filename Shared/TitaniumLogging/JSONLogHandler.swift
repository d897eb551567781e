import Logging

/// A swift-log handler that writes one JSON object per line.
///
/// Every line carries `timestamp` (RFC 3339, UTC, milliseconds), `level`, `service`, `message`,
/// `trace_id`, `span_id` and `request_id` (null when unknown), then the merged metadata:
/// handler metadata, overridden by the metadata provider, overridden by the call's metadata.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level

    private let service: String
    private let sink: LogSink

    public init(
        service: String,
        level: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = nil,
        sink: LogSink = .standardOutput
    ) {
        self.service = service
        self.logLevel = level
        self.metadata = [:]
        self.metadataProvider = metadataProvider
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let provided = self.metadataProvider?.get() ?? [:]
        var call = event.metadata ?? [:]
        if let error = event.error, call["error"] == nil {
            call["error"] = "\(error)"
        }
        self.sink.write(
            Self.render(
                timestamp: RFC3339.now(),
                level: event.level,
                service: self.service,
                message: event.message.description,
                layers: [call, provided, self.metadata]
            )
        )
    }

    /// Renders one log line (with its trailing newline) as UTF-8 bytes.
    public static func render(
        timestamp: String,
        level: Logger.Level,
        service: String,
        message: String,
        metadata: Logger.Metadata
    ) -> [UInt8] {
        self.render(timestamp: timestamp, level: level, service: service, message: message, layers: [metadata])
    }

    /// Renders from metadata layers, most specific first (call, provider, handler): a key is
    /// taken from the first layer that has it. No merged dictionary is built.
    static func render(
        timestamp: String,
        level: Logger.Level,
        service: String,
        message: String,
        layers: [Logger.Metadata]
    ) -> [UInt8] {
        var out = JSONWriter()
        out.beginObject()
        out.key("timestamp"); out.string(timestamp)
        out.key("level"); out.string(level.rawValue)
        out.key("service"); out.string(service)
        out.key("message"); out.string(message)
        for reserved in Self.correlationKeys {
            out.key(reserved)
            if let value = layers.lazy.compactMap({ $0[reserved] }).first { out.value(value) } else { out.null() }
        }
        for (index, layer) in layers.enumerated() {
            for (key, value) in layer where !Self.reservedKeys.contains(key) {
                if index > 0, layers[0..<index].contains(where: { $0[key] != nil }) { continue }
                out.key(key)
                out.value(value)
            }
        }
        out.endObject()
        out.newline()
        return out.bytes
    }

    static let correlationKeys = ["trace_id", "span_id", "request_id"]
    /// Keys written in fixed places; `hb.request.id` is Hummingbird's internal counter, which
    /// `request_id` supersedes.
    static let reservedKeys: Set<String> = ["timestamp", "level", "service", "message", "trace_id", "span_id", "request_id", "hb.request.id"]
}

/// Parses `LOG_LEVEL` values: trace, debug, info, notice, warning (or warn), error, critical.
extension Logger.Level {
    public init?(configValue: String) {
        let lowered = configValue.lowercased()
        if lowered == "warn" {
            self = .warning
        } else if let level = Logger.Level(rawValue: lowered) {
            self = level
        } else {
            return nil
        }
    }
}
