import NIOCore
import TitaniumHTTP
import TitaniumLogging
import TitaniumTracing

/// Who exported the spans: OTLP's resource attributes `service.name`, `service.instance.id`, `service.version`.
public struct OTLPResource: Sendable, Equatable {
    public var service: String
    public var instance: String
    public var version: String

    public init(service: String, instance: String, version: String) {
        self.service = service
        self.instance = instance
        self.version = version
    }
}

/// An `ExportTraceServiceRequest` in OTLP's JSON encoding
/// (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): field names in
/// lowerCamelCase, trace and span ids as hex (not base64, unlike protobuf's usual JSON mapping),
/// 64-bit integers as decimal strings, enums as numbers.
///
/// One span per recorded request, as the trace store's row of it: the same trace id, span id and
/// parent span id, kind SERVER (each row is a request a service served; the hop that called it
/// is its parent, there are no client spans in between), HTTP attributes by their semantic-
/// convention names, status ERROR for a 5xx answer.
public enum OTLPTraceEncoder {
    /// `SPAN_KIND_SERVER` in `opentelemetry/proto/trace/v1/trace.proto`.
    static let spanKindServer: UInt64 = 2
    /// `STATUS_CODE_ERROR`.
    static let statusCodeError: UInt64 = 2
    static let scopeName = "titanium"

    public static func encode(_ requests: [FinishedRequest], resource: OTLPResource) -> [UInt8] {
        var json = JSONWriter()
        json.beginObject()
        json.key("resourceSpans")
        json.beginArray()
        json.beginObject()
        json.key("resource")
        json.beginObject()
        json.key("attributes")
        json.beginArray()
        self.attribute("service.name", resource.service, into: &json)
        self.attribute("service.instance.id", resource.instance, into: &json)
        self.attribute("service.version", resource.version, into: &json)
        json.endArray()
        json.endObject()
        json.key("scopeSpans")
        json.beginArray()
        json.beginObject()
        json.key("scope")
        json.beginObject()
        json.key("name")
        json.string(Self.scopeName)
        json.key("version")
        json.string(resource.version)
        json.endObject()
        json.key("spans")
        json.beginArray()
        for request in requests { self.span(request, into: &json) }
        json.endArray()
        json.endObject()
        json.endArray()
        json.endObject()
        json.endArray()
        json.endObject()
        return json.bytes
    }

    static func span(_ request: FinishedRequest, into json: inout JSONWriter) {
        let start = UInt64(max(request.startedAtNanoseconds, 0))
        json.beginObject()
        json.key("traceId")
        json.string(request.spanContext.traceID)
        json.key("spanId")
        json.string(request.spanContext.spanID)
        if let parent = request.spanContext.parentSpanIDString {
            json.key("parentSpanId")
            json.string(parent)
        }
        json.key("name")
        json.string(request.method + " " + request.route)
        json.key("kind")
        json.number(Self.spanKindServer)
        json.key("startTimeUnixNano")
        json.string(String(start))
        json.key("endTimeUnixNano")
        json.string(String(start + request.latencyMicroseconds * 1000))
        json.key("attributes")
        json.beginArray()
        self.attribute("http.request.method", request.method, into: &json)
        self.attribute("http.route", request.route, into: &json)
        self.attribute("url.path", request.path, into: &json)
        self.attribute("http.response.status_code", Int64(request.status), into: &json)
        self.attribute("client.address", request.remoteAddress?.ipAddress ?? "unknown", into: &json)
        if let userAgent = request.userAgent, !userAgent.isEmpty { self.attribute("user_agent.original", userAgent, into: &json) }
        if let user = request.userID { self.attribute("user.id", user, into: &json) }
        json.endArray()
        if request.status >= 500 {
            json.key("status")
            json.beginObject()
            json.key("code")
            json.number(Self.statusCodeError)
            json.key("message")
            json.string("HTTP \(request.status)")
            json.endObject()
        }
        json.endObject()
    }

    /// `{"key":KEY,"value":{"stringValue":VALUE}}`.
    static func attribute(_ key: StaticString, _ value: String, into json: inout JSONWriter) {
        self.beginAttribute(key, into: &json)
        json.key("stringValue")
        json.string(value)
        self.endAttribute(into: &json)
    }

    /// `{"key":KEY,"value":{"intValue":"VALUE"}}`: a 64-bit integer is a string in OTLP's JSON.
    static func attribute(_ key: StaticString, _ value: Int64, into json: inout JSONWriter) {
        self.beginAttribute(key, into: &json)
        json.key("intValue")
        json.string(String(value))
        self.endAttribute(into: &json)
    }

    private static func beginAttribute(_ key: StaticString, into json: inout JSONWriter) {
        json.beginObject()
        json.key("key")
        key.withUTF8Buffer { json.quotedASCII(UnsafeRawBufferPointer($0)) }
        json.key("value")
        json.beginObject()
    }

    private static func endAttribute(into json: inout JSONWriter) {
        json.endObject()
        json.endObject()
    }
}
