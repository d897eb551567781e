import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TitaniumHTTP

extension OpenAPIDocument {
    /// The document's bytes, made once.
    static let body = ByteBuffer(string: Self.json)

    /// `GET /api/openapi.json`: the document (``json``, generated from openapi/titanium.yaml) with
    /// its `ETag`; 304 when the client's `If-None-Match` names it. A client may keep it 5 minutes,
    /// then asks again (it changes only with the gateway's binary).
    static func register(on router: Router<TitaniumRequestContext>) {
        router.get("/api/openapi.json") { request, _ -> Response in
            let headers: HTTPFields = [.eTag: Self.etag, .cacheControl: "public, max-age=300"]
            if let tags = request.headers[.ifNoneMatch], Self.matches(tags) {
                return Response(status: .notModified, headers: headers)
            }
            var response = Response.json(Self.body)
            response.headers.append(contentsOf: headers)
            return response
        }
    }

    /// Whether an `If-None-Match` value names this document (weak comparison, RFC 9110 13.1.2).
    static func matches(_ ifNoneMatch: String) -> Bool {
        let strong = { (tag: Substring) in tag.hasPrefix("W/") ? tag.dropFirst(2) : tag }
        return ifNoneMatch.split(separator: ",").contains { candidate in
            let tag = candidate.trimmingCharacters(in: .whitespaces)
            return tag == "*" || strong(Substring(tag)) == Substring(Self.etag)
        }
    }
}
