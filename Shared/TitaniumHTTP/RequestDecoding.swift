import Foundation
import HTTPTypes
import Hummingbird

extension Request {
    /// Decodes a JSON body: 415 unless the body is declared `application/json`, 413 over the
    /// size limit, 400 when it is not valid JSON of the expected shape.
    public func decodeJSON<T: Decodable>(as type: T.Type, context: some IdentifiedRequestContext) async throws -> T {
        guard let contentType = self.headers[.contentType], Self.isJSON(contentType) else {
            throw APIError(.unsupportedMediaType, message: "send the body as application/json")
        }
        let body: ByteBuffer
        do {
            body = try await self.body.collect(upTo: context.bodyLimit)
        } catch {
            throw APIError(.contentTooLarge, message: "request body exceeds the limit of \(context.bodyLimit) bytes")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch let error as DecodingError {
            throw APIError(.badRequest, code: "malformed_json", message: Self.describe(error))
        }
    }

    static func isJSON(_ contentType: String) -> Bool {
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces).lowercased()
        return mediaType == "application/json"
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return "request body is not valid JSON"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context), .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? "request body has the wrong shape" : "field \(path) has the wrong type"
        @unknown default:
            return "request body is not valid JSON"
        }
    }
}

extension APIError {
    /// 422 with one message per invalid field.
    public static func validation(_ fields: [String: String]) -> APIError {
        APIError(.unprocessableContent, message: "some fields are invalid", fields: fields)
    }
}
