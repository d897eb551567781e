import TitaniumHTTP
import TitaniumOTLP

/// The trace store's settings, read once at start-up.
///
/// | Variable | Default | |
/// |---|---|---|
/// | `TRACE_ENABLED` | `true` | record requests at all |
/// | `TRACE_DB_PATH` | `$DATA_DIR/traces.db` | the SQLite file |
/// | `TRACE_BUFFER_SIZE` | 1000 | records held in memory; beyond it records are dropped (and counted) |
/// | `TRACE_BATCH_SIZE` | 100 | records per transaction; a full batch is written at once |
/// | `TRACE_FLUSH_INTERVAL` | `5s` | the longest a record waits (`500ms`, `5s`, or seconds) |
/// | `TRACE_RETENTION_HOURS` | 168 | older rows are deleted, 1,000 at a time, every minute |
/// | `TRACE_INCLUDE_PATHS` | (all) | comma-separated path prefixes to record |
/// | `TRACE_EXCLUDE_PATHS` | `/health,/metrics,/stats,/traces` | prefixes never recorded |
/// | `TRACE_KEEP_SLOWER_THAN_MS` | 500 | a request of a trace that was not sampled (`TRACE_SAMPLE_RATIO`, read with the service's configuration) is recorded all the same when it took at least this long, or was answered 5xx |
/// | `TRACE_USER_ID_SOURCES` | `token,header,query` | where the user id comes from, in order: the verified token's subject, `X-User-ID`, `?user_id=` |
///
/// `ADMIN_TOKEN` guards the routes (``AdminToken``, read with the service's configuration).
/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, every recorded request is also exported as an OTLP
/// span (``OTLPConfiguration``); `TRACE_ENABLED=false` turns that off too.
public struct TraceConfiguration: Sendable {
    public enum UserIDSource: String, Sendable, CaseIterable {
        case token, header, query
    }

    public var enabled = true
    public var databasePath: String
    public var bufferSize = 1000
    public var batchSize = 100
    public var flushInterval: Duration = .seconds(5)
    public var retention: Duration = .seconds(168 * 3600)
    public var includePrefixes: [String] = []
    public var excludePrefixes = ["/health", "/metrics", "/stats", "/traces"]
    public var userIDSources: [UserIDSource] = [.token, .header, .query]
    /// Unsampled requests this slow (or answered 5xx) are recorded anyway.
    public var keepSlowerThan: Duration = .milliseconds(500)
    /// Where recorded requests are exported as spans, if anywhere.
    public var export: OTLPConfiguration?

    public init(databasePath: String) {
        self.databasePath = databasePath
    }

    public init(settings: Settings, dataDirectory: String) throws(ConfigurationError) {
        self.init(databasePath: settings.string("trace.db.path", default: dataDirectory + "/traces.db"))
        self.enabled = try settings.bool("trace.enabled", default: true)
        self.bufferSize = try settings.int("trace.buffer.size", default: 1000, range: 1...10_000_000)
        self.batchSize = try settings.int("trace.batch.size", default: 100, range: 1...100_000)
        self.flushInterval = try settings.choice(
            "trace.flush.interval", default: .seconds(5), expected: "a duration such as 500ms, 5s or 5", parse: Self.parseDuration
        )
        self.retention = .seconds(try settings.int("trace.retention.hours", default: 168, range: 1...87_600) * 3600)
        self.includePrefixes = settings.list("trace.include.paths")
        self.excludePrefixes = settings.list("trace.exclude.paths", default: self.excludePrefixes)
        self.userIDSources = try settings.list("trace.user.id.sources", default: ["token", "header", "query"]).map { name throws(ConfigurationError) in
            guard let source = UserIDSource(rawValue: name) else {
                throw ConfigurationError(key: "trace.user.id.sources", value: name, expected: "a comma-separated order of token, header, query")
            }
            return source
        }
        self.keepSlowerThan = .milliseconds(try settings.int("trace.keep.slower.than.ms", default: 500, range: 0...3_600_000))
        self.export = try OTLPConfiguration.from(settings)
    }

    /// `250ms`, `5s` or a plain number of seconds; more than zero, at most an hour.
    static func parseDuration(_ text: String) -> Duration? {
        let duration: Duration?
        if text.hasSuffix("ms") {
            duration = Int(text.dropLast(2)).map { .milliseconds($0) }
        } else if text.hasSuffix("s") {
            duration = Double(text.dropLast()).map { .milliseconds(Int(($0 * 1000).rounded())) }
        } else {
            duration = Double(text).map { .milliseconds(Int(($0 * 1000).rounded())) }
        }
        guard let duration, duration > .zero, duration <= .seconds(3600) else { return nil }
        return duration
    }

    /// Whether a path is recorded: under an include prefix (if any are set), under no exclude prefix.
    public func records(path: String) -> Bool {
        if !self.includePrefixes.isEmpty, !self.includePrefixes.contains(where: { path.hasPrefix($0) }) { return false }
        return !self.excludePrefixes.contains { path.hasPrefix($0) }
    }
}
