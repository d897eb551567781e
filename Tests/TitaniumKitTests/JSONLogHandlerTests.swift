import Foundation
import Logging
import Testing
import TitaniumLogging

@Suite struct JSONLogHandlerTests {
    @Test func awkwardStringsStayValidJSON() throws {
        let awkward = "quote \" backslash \\ newline \n tab \t bell \u{07} nul \u{00} del \u{7F} 한국어 emoji 🚀 \u{2028}"
        let capture = LogCapture()
        var logger = capture.logger()
        logger[metadataKey: "handler.field"] = .string(awkward)
        logger.info("\(awkward)", metadata: [awkward: .string(awkward), "nested": .dictionary(["list": .array([.string(awkward)])])])

        let lines = capture.rawLines
        #expect(lines.count == 1)
        #expect(lines[0].hasSuffix("\n"))
        #expect(lines[0].dropLast().contains("\n") == false)
        let object = try #require(capture.objects.first)
        #expect(object["message"] as? String == awkward)
        #expect(object[awkward] as? String == awkward)
        #expect(object["handler.field"] as? String == awkward)
        let nested = try #require(object["nested"] as? [String: Any])
        #expect((nested["list"] as? [String])?.first == awkward)
    }

    @Test func everyLineHasTheFixedFieldsAndIDs() throws {
        let capture = LogCapture()
        capture.logger(service: "user-service").warning("hello", metadata: ["request_id": "abc", "trace_id": "t1", "span_id": "s1"])
        capture.logger(service: "user-service").error("no ids")
        let objects = capture.objects
        #expect(objects.count == 2)
        for object in objects {
            for key in ["timestamp", "level", "service", "message", "trace_id", "span_id", "request_id"] {
                #expect(object.keys.contains(key), "missing \(key)")
            }
            #expect(object["service"] as? String == "user-service")
            let timestamp = try #require(object["timestamp"] as? String)
            #expect(timestamp.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil, "\(timestamp)")
        }
        #expect(objects[0]["request_id"] as? String == "abc")
        #expect(objects[0]["trace_id"] as? String == "t1")
        #expect(objects[0]["level"] as? String == "warning")
        #expect(objects[1]["request_id"] is NSNull)
    }

    @Test func metadataMergesHandlerThenProviderThenCall() throws {
        let capture = LogCapture()
        let provider = Logger.MetadataProvider { ["from": "provider", "provider.only": "p"] }
        let sink = capture.sink
        var logger = Logger(label: "x") { _ in JSONLogHandler(service: "x", metadataProvider: provider, sink: sink) }
        logger[metadataKey: "from"] = "handler"
        logger[metadataKey: "handler.only"] = "h"
        logger.info("one")
        logger.info("two", metadata: ["from": "call"])
        let objects = capture.objects
        #expect(objects[0]["from"] as? String == "provider")
        #expect(objects[0]["handler.only"] as? String == "h")
        #expect(objects[0]["provider.only"] as? String == "p")
        #expect(objects[1]["from"] as? String == "call")
    }

    @Test func numbersAndBooleansStayTyped() throws {
        let capture = LogCapture()
        capture.logger().info("typed", metadata: ["status": .stringConvertible(200), "ratio": .stringConvertible(0.5), "ok": .stringConvertible(true)])
        let object = try #require(capture.objects.first)
        #expect(object["status"] as? Int == 200)
        #expect(object["ratio"] as? Double == 0.5)
        #expect(object["ok"] as? Bool == true)
    }

    @Test func levelRespectsLogLevel() {
        let capture = LogCapture()
        let logger = capture.logger(level: .warning)
        logger.info("dropped")
        logger.debug("dropped")
        logger.warning("kept")
        #expect(capture.rawLines.count == 1)
        #expect(Logger.Level(configValue: "WARN") == .warning)
        #expect(Logger.Level(configValue: "debug") == .debug)
        #expect(Logger.Level(configValue: "loud") == nil)
    }
}
