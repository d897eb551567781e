import Foundation
import HTTPTypes
import Hummingbird

/// The one error shape of the whole system:
/// `{"error":{"code":"...","message":"...","request_id":"...","fields":{...}}}`.
public struct APIError: HTTPResponseError, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    /// One message per invalid field (422).
    public var fields: [String: String]?
    public var headers: HTTPFields

    public init(
        _ status: HTTPResponse.Status,
        code: String? = nil,
        message: String,
        fields: [String: String]? = nil,
        headers: HTTPFields = [:]
    ) {
        self.status = status
        self.code = code ?? APIError.code(for: status)
        self.message = message
        self.fields = fields
        self.headers = headers
    }

    public var description: String { "\(self.status.code) \(self.code): \(self.message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let requestID = (context as? any IdentifiedRequestContext)?.requestID
        return self.response(requestID: requestID)
    }

    /// The JSON response for this error, with `Content-Type` and any extra headers.
    public func response(requestID: String?) -> Response {
        let data = self.jsonBody(requestID: requestID)
        var headers = self.headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: self.status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// The JSON body of this error.
    public func jsonBody(requestID: String?) -> Data {
        let body = Envelope(error: .init(code: self.code, message: self.message, request_id: requestID, fields: self.fields))
        return (try? JSONResponseEncoding.encode(body)) ?? Data(#"{"error":{"code":"internal_error","message":"error"}}"#.utf8)
    }

    /// Turns any error thrown while serving a request into the shared shape.
    public static func from(_ error: any Error) -> APIError {
        switch error {
        case let apiError as APIError:
            return apiError
        case let httpError as HTTPError:
            return APIError(httpError.status, message: httpError.body ?? APIError.defaultMessage(for: httpError.status), headers: httpError.headers)
        case let responseError as any HTTPResponseError:
            return APIError(responseError.status, message: APIError.defaultMessage(for: responseError.status))
        case is DecodingError:
            return APIError(.badRequest, code: "malformed_json", message: "request body is not valid JSON for this endpoint")
        default:
            return APIError(.internalServerError, message: "internal server error")
        }
    }

    public static func code(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 400: "bad_request"
        case 401: "unauthorized"
        case 403: "forbidden"
        case 404: "not_found"
        case 405: "method_not_allowed"
        case 408: "request_timeout"
        case 409: "conflict"
        case 413: "payload_too_large"
        case 415: "unsupported_media_type"
        case 422: "validation_failed"
        case 429: "rate_limited"
        case 502: "bad_gateway"
        case 503: "unavailable"
        case 504: "gateway_timeout"
        case 500..<600: "internal_error"
        default: "http_\(status.code)"
        }
    }

    static func defaultMessage(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 404: "no route matches this path"
        case 405: "method not allowed on this route"
        case 413: "request body is larger than the allowed size"
        case 500..<600: status.reasonPhrase.lowercased()
        default: status.reasonPhrase.lowercased()
        }
    }

    private struct Envelope: Encodable {
        struct Detail: Encodable {
            var code: String
            var message: String
            var request_id: String?
            var fields: [String: String]?
        }
        var error: Detail
    }

}
