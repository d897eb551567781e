import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

public struct Fetched: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: String

    public init(status: HTTPResponseStatus, headers: HTTPHeaders, body: String) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

public func get(_ client: HTTPClient, _ url: String, headers: [String: String] = [:]) async throws -> Fetched {
    var request = HTTPClientRequest(url: url)
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    let response = try await client.execute(request, timeout: .seconds(5))
    let body = try await response.body.collect(upTo: 1 << 22)
    return Fetched(status: response.status, headers: response.headers, body: String(buffer: body))
}

public func json(_ text: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw ProcessFailure("not a JSON object: \(text)")
    }
    return object
}

/// Polls `probe` until it returns a value (log lines reach the pipe asynchronously).
public func eventually<T>(timeout: Duration = .seconds(5), _ probe: () throws -> T?) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if let value = try probe() { return value }
        try await Task.sleep(for: .milliseconds(25))
    }
    throw ProcessFailure("condition not met within \(timeout)")
}

/// Polls an async `probe` until it returns a value.
public func poll<T>(timeout: Duration = .seconds(5), interval: Duration = .milliseconds(100), _ probe: () async throws -> T?) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if let value = try await probe() { return value }
        try await Task.sleep(for: interval)
    }
    throw ProcessFailure("condition not met within \(timeout)")
}

/// POSTs a body (JSON unless told otherwise).
public func post(_ client: HTTPClient, _ url: String, body: String, contentType: String = "application/json", headers: [String: String] = [:]) async throws -> Fetched {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: contentType)
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    request.body = .bytes(ByteBuffer(string: body))
    let response = try await client.execute(request, timeout: .seconds(10))
    let collected = try await response.body.collect(upTo: 1 << 22)
    return Fetched(status: response.status, headers: response.headers, body: String(buffer: collected))
}

