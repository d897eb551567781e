import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// A JSON body with the right content type.
public struct JSONResponse<Body: Encodable & Sendable>: ResponseGenerator {
    public let body: Body
    public init(_ body: Body) { self.body = body }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        try self.response(status: .ok)
    }

    public func response(status: HTTPResponse.Status) throws -> Response {
        .json(ByteBuffer(bytes: try JSONResponseEncoding.encoder.encode(self.body)), status: status)
    }
}

extension Response {
    /// A JSON body encoded already (a cached answer), with the content type every JSON answer has.
    public static func json(_ body: ByteBuffer, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: body))
    }
}

/// The JSON encoding of every response body: sorted keys, unescaped slashes.
public enum JSONResponseEncoding {
    public static func encode(_ value: some Encodable) throws -> Data {
        try self.encoder.encode(value)
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}
