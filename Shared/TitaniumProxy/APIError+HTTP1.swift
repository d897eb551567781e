import HTTPTypes
import NIOCore
import NIOHTTP1
import TitaniumHTTP

extension APIError {
    /// This error as the forwarder answers it on HTTP/1: the shared JSON body with its length,
    /// the request id and `traceparent`, and `Connection: close` when the connection ends after it.
    func http1Answer(requestID: String, traceparent: String, close: Bool) -> (head: HTTPResponseHead, body: ByteBuffer) {
        let body = ByteBuffer(bytes: self.jsonBody(requestID: requestID))
        var headers = HTTPHeaders(self.headers.map { ($0.name.rawName, $0.value) })
        headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "X-Request-ID", value: requestID)
        headers.add(name: "traceparent", value: traceparent)
        if close { headers.add(name: "Connection", value: "close") }
        let status = HTTPResponseStatus(statusCode: self.status.code, reasonPhrase: self.status.reasonPhrase)
        return (HTTPResponseHead(version: .http1_1, status: status, headers: headers), body)
    }
}
