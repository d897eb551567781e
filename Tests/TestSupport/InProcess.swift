import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import TitaniumHTTP
import TitaniumLogging

/// A service's kit for a test in this process: the service's name, its defaults with
/// `environment` on top, its own registry and tracer, and logs and access lines discarded.
public func makeTestKit(service: String, environment: [String: String] = [:]) throws -> ServiceKit {
    let configuration = try ServiceConfiguration(service: service, defaultPort: 0, settings: .fromEnvironment(environment))
    return ServiceKit(
        configuration: configuration, logger: Logger(label: service) { _ in SwiftLogNoOpLogHandler() }, accessLogSink: LogSink { _ in }
    )
}

/// The `error` object of the one error shape (`{"error":{"code","message","request_id","fields"?}}`).
public struct ErrorBody: Decodable, Sendable, Equatable {
    public var code: String
    public var message: String
    public var request_id: String
    public var fields: [String: String]?
}

extension TestResponse {
    /// The body decoded as `type`.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: Data(self.body.readableBytesView))
    }

    /// The body as a JSON object.
    public var jsonObject: [String: Any] {
        get throws { try json(String(buffer: self.body)) }
    }

    /// The error this response carries, after checking it is the one error shape: JSON, a
    /// message, and the request id the `X-Request-ID` header carries.
    public func apiError() throws -> ErrorBody {
        guard self.headers[.contentType]?.hasPrefix("application/json") == true else {
            throw ProcessFailure("not a JSON error (Content-Type \(self.headers[.contentType] ?? "none")): \(String(buffer: self.body))")
        }
        struct Envelope: Decodable { var error: ErrorBody }
        let error = try self.decode(Envelope.self).error
        guard !error.message.isEmpty, error.request_id == self.headers[.xRequestID] else {
            throw ProcessFailure("error without a message or its request id: \(String(buffer: self.body))")
        }
        return error
    }
}

extension HTTPFields {
    /// A bearer token's `Authorization`, and `Content-Type: application/json`.
    public static func json(token: String? = nil) -> HTTPFields {
        var fields: HTTPFields = [.contentType: "application/json"]
        if let token { fields[.authorization] = "Bearer \(token)" }
        return fields
    }
}
