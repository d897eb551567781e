import Foundation
import Configuration

/// Reads typed settings through swift-configuration. Keys are dotted (`http.port`); from the
/// environment they are the upper-cased, underscored names (`HTTP_PORT`). A value that is set
/// but unusable is an error naming the variable, never a silent fallback to the default.
public struct Settings: Sendable {
    public let reader: ConfigReader

    public init(reader: ConfigReader) {
        self.reader = reader
    }

    /// Settings from the process environment.
    public static func fromEnvironment() -> Settings {
        Settings(reader: ConfigReader(provider: EnvironmentVariablesProvider()))
    }

    /// Settings from an explicit dictionary of environment variables (tests).
    public static func fromEnvironment(_ variables: [String: String]) -> Settings {
        Settings(reader: ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: variables)))
    }

    /// `http.port` → `HTTP_PORT`.
    public static func variableName(_ key: String) -> String {
        key.uppercased().replacingOccurrences(of: ".", with: "_").replacingOccurrences(of: "-", with: "_")
    }

    public func optionalString(_ key: String) -> String? {
        guard let value = self.reader.string(forKey: ConfigKey(key)) else { return nil }
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        return trimmed.isEmpty ? nil : trimmed
    }

    public func string(_ key: String, default defaultValue: String) -> String {
        self.optionalString(key) ?? defaultValue
    }

    public func int(_ key: String, default defaultValue: Int, range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard let raw = self.optionalString(key) else { return defaultValue }
        guard let value = Int(raw), range.contains(value) else {
            throw ConfigurationError(key: key, value: raw, expected: "an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    public func double(_ key: String, default defaultValue: Double, range: ClosedRange<Double>) throws(ConfigurationError) -> Double {
        guard let raw = self.optionalString(key) else { return defaultValue }
        guard let value = Double(raw), value.isFinite, range.contains(value) else {
            throw ConfigurationError(key: key, value: raw, expected: "a number in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    public func bool(_ key: String, default defaultValue: Bool) throws(ConfigurationError) -> Bool {
        guard let raw = self.optionalString(key) else { return defaultValue }
        switch raw.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigurationError(key: key, value: raw, expected: "true or false")
        }
    }

    /// A value from a fixed set, e.g. a log level.
    public func choice<T>(_ key: String, default defaultValue: T, expected: String, parse: (String) -> T?) throws(ConfigurationError) -> T {
        guard let raw = self.optionalString(key) else { return defaultValue }
        guard let value = parse(raw) else {
            throw ConfigurationError(key: key, value: raw, expected: expected)
        }
        return value
    }

    /// Comma-separated http:// or https:// URLs, without trailing slashes.
    public func httpURLs(_ key: String, default defaultValue: [String]) throws(ConfigurationError) -> [String] {
        let urls = self.list(key, default: defaultValue)
        for url in urls where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
            throw ConfigurationError(key: key, value: url, expected: "comma-separated http:// or https:// URLs")
        }
        return urls.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
    }

    /// One http:// or https:// URL (the first, if several are listed).
    public func httpURL(_ key: String, default defaultValue: String) throws(ConfigurationError) -> String {
        try self.httpURLs(key, default: [defaultValue]).first ?? defaultValue
    }

    /// A comma-separated list; empty entries are dropped.
    public func list(_ key: String, default defaultValue: [String] = []) -> [String] {
        guard let raw = self.optionalString(key) else { return defaultValue }
        return raw.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}

/// An unusable configuration value. Its description is the one line printed before exiting.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let variable: String
    public let value: String
    public let expected: String

    public init(key: String, value: String, expected: String) {
        self.variable = Settings.variableName(key)
        self.value = value
        self.expected = expected
    }

    public var description: String {
        "invalid configuration: \(self.variable)=\"\(self.value)\": expected \(self.expected)"
    }
}
