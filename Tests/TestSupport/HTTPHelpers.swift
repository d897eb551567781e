import AsyncHTTPClient
import Foundation
import NIOCore
import NIOConcurrencyHelpers
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

/// Any method, with a bearer token and a JSON body when given.
public func send(_ client: HTTPClient, _ method: HTTPMethod, _ url: String, token: String? = nil, body: String? = nil) async throws -> Fetched {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    if let body {
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
    }
    let response = try await client.execute(request, timeout: .seconds(10))
    let collected = try await response.body.collect(upTo: 1 << 22)
    return Fetched(status: response.status, headers: response.headers, body: String(buffer: collected))
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


/// `operation`'s result, or a thrown failure after `timeout`, even if the operation never
/// answers cancellation (it is then left behind): a stuck client fails its test instead of
/// hanging the whole run.
public func withDeadline<T: Sendable>(_ timeout: Duration, _ what: String, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let once = NIOLockedValueBox<CheckedContinuation<T, any Error>?>(nil)
    return try await withCheckedThrowingContinuation { continuation in
        once.withLockedValue { $0 = continuation }
        let work = Task {
            let result: Result<T, any Error>
            do { result = .success(try await operation()) } catch { result = .failure(error) }
            once.withLockedValue { pending in
                pending?.resume(with: result)
                pending = nil
            }
        }
        Task {
            try? await Task.sleep(for: timeout)
            once.withLockedValue { pending in
                pending?.resume(throwing: ProcessFailure("\(what): no result within \(timeout)"))
                pending = nil
            }
            work.cancel()
        }
    }
}
