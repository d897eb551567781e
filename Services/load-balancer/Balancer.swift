import AsyncHTTPClient
import Foundation
import NIOHTTP1
import Hummingbird
import NIOCore
import TitaniumHTTP

/// Forwards a request to a backend from the pool; an idempotent request without a body that
/// fails before any response arrives (refused, reset, timed out connecting) is retried once on
/// another backend.
struct Balancer: Sendable {
    let proxy: ReverseProxy
    let pool: BackendPool

    static let retryable: Set<HTTPRequest.Method> = [.get, .head, .options, .delete]

    func forward(_ request: Request, context: TitaniumRequestContext) async throws -> Response {
        let replayable = Self.retryable.contains(request.method)
            && (request.headers[.contentLength].map { $0 == "0" } ?? true) && request.headers[.transferEncoding] == nil
        var excluded: Int?
        var lastError: (any Error)?
        for _ in 0..<(replayable ? 2 : 1) {
            guard let (index, url) = self.pool.acquireBackend(excluding: excluded) else { break }
            do {
                let response = try await self.proxy.client.execute(self.proxy.makeRequest(request, context: context, baseURL: url))
                self.pool.release(index, failed: response.status.code >= 500)
                return self.proxy.makeResponse(response)
            } catch {
                self.pool.release(index, failed: true)
                lastError = error
                excluded = index
                guard Self.failedBeforeResponse(error) else { break }
            }
        }
        if let lastError { throw APIError.upstream(lastError, service: "api-gateway") }
        throw APIError(.serviceUnavailable, message: "no healthy api-gateway")
    }

    /// Errors that mean the request never reached a backend's application.
    static func failedBeforeResponse(_ error: any Error) -> Bool {
        if let clientError = error as? HTTPClientError {
            return [HTTPClientError.connectTimeout, .remoteConnectionClosed].contains(clientError)
        }
        if let ioError = error as? IOError {
            return [ECONNREFUSED, ECONNRESET, EPIPE].contains(ioError.errnoCode)
        }
        return "\(error)".contains("connectionRefused") || "\(error)".contains("Connection refused")
    }
}
