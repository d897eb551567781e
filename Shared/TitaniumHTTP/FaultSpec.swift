/// What an injected fault does, as `PUT /admin/faults` asks for it (``Faults``).
public enum FaultKind: String, Codable, Sendable, CaseIterable {
    /// Matching requests wait `latency_ms` (± `jitter_ms`) before they are handled.
    case latency
    /// That share of matching requests is answered `error_status`.
    case error
    /// Matching requests are not answered while the fault lasts.
    case hang
    /// The service behaves as if that dependency were down.
    case dependency
}

/// One fault: the body of `PUT /admin/faults`, checked field by field.
public struct FaultSpec: Sendable, Equatable {
    public var latencyMilliseconds = 0
    public var jitterMilliseconds = 0
    public var errorRate = 0.0
    public var errorStatus = 503
    public var hang = false
    /// Path patterns; a trailing `*` matches any rest. Empty: every business route.
    public var routes: [String] = []
    public var dependency: String?
    public var durationSeconds = 300

    public init() {}

    public static let maximumDurationSeconds = 3600
    static let fieldNames: Set<String> = [
        "latency_ms", "jitter_ms", "error_rate", "error_status", "hang", "routes", "dependency", "duration_s",
    ]

    /// What this fault does.
    public var kinds: [FaultKind] {
        var kinds: [FaultKind] = []
        if self.latencyMilliseconds > 0 { kinds.append(.latency) }
        if self.errorRate > 0 { kinds.append(.error) }
        if self.hang { kinds.append(.hang) }
        if self.dependency != nil { kinds.append(.dependency) }
        return kinds
    }

    /// Reads a request body. Every problem is reported by field: an unknown field, a value of the
    /// wrong type or out of range, a dependency this service cannot lose, or nothing to inject.
    /// - Parameter dependencies: the dependencies this service can be made to lose.
    public init(json object: [String: JSONValue], dependencies: Set<String>) throws(APIError) {
        var problems: [String: String] = [:]
        for key in object.keys where !Self.fieldNames.contains(key) {
            problems[key] = "unknown field; known: \(Self.fieldNames.sorted().joined(separator: ", "))"
        }
        func integer(_ key: String, _ range: ClosedRange<Int>) -> Int? {
            guard let value = object[key] else { return nil }
            guard case .number(let number) = value, number.rounded() == number, let int = Int(exactly: number), range.contains(int) else {
                problems[key] = "must be an integer from \(range.lowerBound) to \(range.upperBound)"
                return nil
            }
            return int
        }
        self.latencyMilliseconds = integer("latency_ms", 0...60_000) ?? 0
        self.jitterMilliseconds = integer("jitter_ms", 0...60_000) ?? 0
        self.errorStatus = integer("error_status", 400...599) ?? 503
        self.durationSeconds = integer("duration_s", 1...Self.maximumDurationSeconds) ?? 300
        switch object["error_rate"] {
        case nil: break
        case .number(let rate) where (0...1).contains(rate): self.errorRate = rate
        default: problems["error_rate"] = "must be a number from 0 to 1"
        }
        switch object["hang"] {
        case nil: break
        case .bool(let hang): self.hang = hang
        default: problems["hang"] = "must be true or false"
        }
        switch object["routes"] {
        case nil: break
        case .array(let items) where (1...20).contains(items.count):
            for item in items {
                guard case .string(let pattern) = item, pattern.hasPrefix("/"), pattern.utf8.count <= 200,
                    !pattern.dropLast().contains("*")
                else {
                    problems["routes"] = "each route must be a path starting with / of at most 200 characters, with * only at its end"
                    break
                }
                self.routes.append(pattern)
            }
        default: problems["routes"] = "must be a list of 1 to 20 path patterns"
        }
        switch object["dependency"] {
        case nil, .null: break
        case .string(let name) where dependencies.contains(name): self.dependency = name
        default:
            problems["dependency"] = dependencies.isEmpty
                ? "this service has no dependency that can be faulted"
                : "must be one of: \(dependencies.sorted().joined(separator: ", "))"
        }
        if problems.isEmpty, self.kinds.isEmpty {
            problems["fault"] = "nothing to inject: give latency_ms > 0, error_rate > 0, hang: true or a dependency"
        }
        guard problems.isEmpty else { throw APIError.validation(problems) }
    }

    /// Whether a request for `path` is affected. Operational routes never are: a fault must not
    /// hide itself from `/stats` or make itself impossible to remove.
    public func matches(path: String) -> Bool {
        guard !Self.isOperational(path) else { return false }
        guard !self.routes.isEmpty else { return true }
        return self.routes.contains { pattern in
            pattern.hasSuffix("*") ? path.hasPrefix(pattern.dropLast()) : path == pattern
        }
    }

    static func isOperational(_ path: String) -> Bool {
        path.hasPrefix("/health/") || path == "/metrics" || path == "/stats" || path == "/admin" || path.hasPrefix("/admin/")
            || path == "/traces" || path.hasPrefix("/traces/")
    }
}
