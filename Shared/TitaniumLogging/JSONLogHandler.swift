#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
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
        var merged = self.metadata
        if let provided = self.metadataProvider?.get(), !provided.isEmpty {
            merged.merge(provided) { _, new in new }
        }
        if let callMetadata = event.metadata, !callMetadata.isEmpty {
            merged.merge(callMetadata) { _, new in new }
        }
        if let error = event.error, merged["error"] == nil {
            merged["error"] = "\(error)"
        }
        self.sink.write(
            Self.render(
                timestamp: RFC3339.now(),
                level: event.level,
                service: self.service,
                message: event.message.description,
                metadata: merged
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
        var out = JSONWriter()
        out.beginObject()
        out.key("timestamp"); out.string(timestamp)
        out.key("level"); out.string(level.rawValue)
        out.key("service"); out.string(service)
        out.key("message"); out.string(message)
        for reserved in Self.correlationKeys {
            out.key(reserved)
            if let value = metadata[reserved] { out.value(value) } else { out.null() }
        }
        for (key, value) in metadata.sorted(by: { $0.key < $1.key })
        where !Self.correlationKeys.contains(key) && !Self.fixedKeys.contains(key) {
            out.key(key)
            out.value(value)
        }
        out.endObject()
        out.newline()
        return out.bytes
    }

    static let correlationKeys = ["trace_id", "span_id", "request_id"]
    static let fixedKeys: Set<String> = ["timestamp", "level", "service", "message"]
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

/// Where log lines go. Standard output writes each line with a single `write(2)`, so lines
/// from concurrent tasks never interleave and nothing sits in a buffer at exit.
public struct LogSink: Sendable {
    public let write: @Sendable ([UInt8]) -> Void

    public init(write: @escaping @Sendable ([UInt8]) -> Void) {
        self.write = write
    }

    public static let standardOutput = LogSink { bytes in
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(1, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}
