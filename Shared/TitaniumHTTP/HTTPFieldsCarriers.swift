import HTTPTypes
import Tracing

/// Reads trace headers from an incoming request's fields.
public struct HTTPFieldsExtractor: Extractor {
    public init() {}
    public func extract(key: String, from fields: HTTPFields) -> String? {
        guard let name = HTTPField.Name(key) else { return nil }
        return fields[name]
    }
}

extension HTTPField.Name {
    public static let xRequestID = HTTPField.Name("X-Request-ID")!
}
