import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Logging
import Testing
import TitaniumHTTP

struct Thrown: Error {}

struct Payload: Decodable {
    var name: String
}

/// A small application with the kinds of routes services have.
func makeTestApplication(kit: ServiceKit) -> some ApplicationProtocol {
    let router = kit.makeRouter()
    router.get("/api/posts/{id}") { _, context in
        "post \(context.parameters.get("id") ?? "")"
    }
    router.post("/api/posts") { request, context in
        let payload = try await request.decode(as: Payload.self, context: context)
        return "created \(payload.name)"
    }
    router.get("/api/boom") { _, _ -> String in
        throw Thrown()
    }
    router.get("/api/teapot") { _, _ -> String in
        throw APIError(.unprocessableContent, message: "invalid fields", fields: ["name": "must not be empty"])
    }
    return kit.makeApplication(router: router)
}

@Suite struct ErrorShapeTests {
    func expectErrorShape(_ response: TestResponse, status: HTTPResponse.Status, code: String) throws {
        #expect(response.status == status)
        #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
        let body = try jsonObject(response.body)
        let error = try #require(body["error"] as? [String: Any], "body: \(String(buffer: response.body))")
        #expect(error["code"] as? String == code)
        #expect((error["message"] as? String)?.isEmpty == false)
        let requestID = try #require(error["request_id"] as? String)
        #expect(requestID == response.headers[.xRequestID])
    }

    @Test func notFound() async throws {
        try await makeTestApplication(kit: makeKit()).test(.router) { client in
            try await client.execute(uri: "/no/such/path", method: .get) { response in
                try expectErrorShape(response, status: .notFound, code: "not_found")
            }
        }
    }

    @Test func methodNotAllowedListsAllowedMethods() async throws {
        try await makeTestApplication(kit: makeKit()).test(.router) { client in
            try await client.execute(uri: "/api/posts/7", method: .delete) { response in
                try expectErrorShape(response, status: .methodNotAllowed, code: "method_not_allowed")
                #expect(response.headers[.allow] == "GET, HEAD")
            }
            try await client.execute(uri: "/api/posts", method: .get) { response in
                try expectErrorShape(response, status: .methodNotAllowed, code: "method_not_allowed")
                #expect(response.headers[.allow] == "POST")
            }
        }
    }

    @Test func bodyOverTheLimitIs413() async throws {
        let kit = try makeKit(["HTTP_MAX_BODY_BYTES": "64"])
        try await makeTestApplication(kit: kit).test(.router) { client in
            let big = ByteBuffer(string: #"{"name":"\#(String(repeating: "x", count: 200))"}"#)
            try await client.execute(uri: "/api/posts", method: .post, headers: [.contentType: "application/json"], body: big) { response in
                try expectErrorShape(response, status: .contentTooLarge, code: "payload_too_large")
            }
            try await client.execute(uri: "/api/posts", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: #"{"name":"ok"}"#)) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "created ok")
            }
        }
    }

    @Test func thrownErrorIsA500WithJSON() async throws {
        try await makeTestApplication(kit: makeKit()).test(.router) { client in
            try await client.execute(uri: "/api/boom", method: .get) { response in
                try expectErrorShape(response, status: .internalServerError, code: "internal_error")
            }
        }
    }

    @Test func malformedJSONIs400AndFieldErrorsAre422() async throws {
        try await makeTestApplication(kit: makeKit()).test(.router) { client in
            try await client.execute(uri: "/api/posts", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: "{not json")) { response in
                #expect(response.status == .badRequest)
                let error = try #require(try jsonObject(response.body)["error"] as? [String: Any])
                #expect(error["request_id"] as? String == response.headers[.xRequestID])
            }
            try await client.execute(uri: "/api/teapot", method: .get) { response in
                try expectErrorShape(response, status: .unprocessableContent, code: "validation_failed")
                let error = try #require(try jsonObject(response.body)["error"] as? [String: Any])
                #expect((error["fields"] as? [String: String])?["name"] == "must not be empty")
            }
        }
    }

    @Test func requestIDIsEchoedWhenWellFormedAndReplacedOtherwise() async throws {
        try await makeTestApplication(kit: makeKit()).test(.router) { client in
            try await client.execute(uri: "/api/posts/1", method: .get, headers: [.xRequestID: "req-123.abc"]) { response in
                #expect(response.headers[.xRequestID] == "req-123.abc")
            }
            try await client.execute(uri: "/api/posts/1", method: .get, headers: [.xRequestID: "bad id with spaces"]) { response in
                let id = try #require(response.headers[.xRequestID])
                #expect(id != "bad id with spaces")
                #expect(id.count == 32)
            }
        }
    }
}

@Suite struct SettingsTests {
    @Test func invalidValuesNameTheVariable() {
        #expect(throws: ConfigurationError(key: "http.port", value: "abc", expected: "an integer in 0...65535")) {
            try ServiceConfiguration(service: "s", defaultPort: 1, settings: .fromEnvironment(["HTTP_PORT": "abc"]))
        }
        do {
            _ = try ServiceConfiguration(service: "s", defaultPort: 1, settings: .fromEnvironment(["LOG_LEVEL": "loud"]))
            Issue.record("LOG_LEVEL=loud was accepted")
        } catch {
            #expect(error.description.contains("LOG_LEVEL=\"loud\""))
        }
    }

    @Test func urlListsAreCheckedAndTrimmed() throws {
        let settings = Settings.fromEnvironment(["UPSTREAM_URL": "http://a:1/, https://b:2", "BAD_URL": "http://a:1,ftp://b"])
        #expect(try settings.httpURLs("upstream.url", default: []) == ["http://a:1", "https://b:2"])
        #expect(try settings.httpURL("missing.url", default: "http://c:3") == "http://c:3")
        #expect(throws: ConfigurationError(key: "bad.url", value: "ftp://b", expected: "comma-separated http:// or https:// URLs")) {
            try settings.httpURLs("bad.url", default: [])
        }
    }

    @Test func defaultsAndOverrides() throws {
        let defaults = try ServiceConfiguration(service: "s", defaultPort: 7302, settings: .fromEnvironment([:]))
        #expect(defaults.host == "127.0.0.1")
        #expect(defaults.port == 7302)
        #expect(defaults.logLevel == .info)
        #expect(defaults.idleTimeout == .seconds(60))
        #expect(defaults.eventLoops == System.coreCount)
        #expect(try ServiceConfiguration(service: "s", defaultPort: 1, settings: .fromEnvironment(["HTTP_EVENT_LOOPS": "1"])).eventLoops == 1)
        #expect(throws: ConfigurationError(key: "http.event.loops", value: "0", expected: "an integer in 1...256")) {
            try ServiceConfiguration(service: "s", defaultPort: 1, settings: .fromEnvironment(["HTTP_EVENT_LOOPS": "0"]))
        }
        let custom = try ServiceConfiguration(
            service: "s", defaultPort: 7302,
            settings: .fromEnvironment(["HTTP_HOST": "0.0.0.0", "HTTP_PORT": "9000", "LOG_LEVEL": "debug", "DATA_DIR": "/tmp/x", "ADMIN_TOKEN": "t"])
        )
        #expect(custom.host == "0.0.0.0")
        #expect(custom.port == 9000)
        #expect(custom.logLevel == .debug)
        #expect(custom.dataDirectory == "/tmp/x")
    }
}
