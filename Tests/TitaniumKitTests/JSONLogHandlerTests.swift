import Synchronization
import Dispatch
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

@Suite struct AccessLogTests {
    @Test func theAccessLineIsValidJSONWithTypedFields() throws {
        let capture = LogCapture()
        let log = AccessLog(service: "blog-service", level: .info, sink: capture.sink)
        let awkward = "curl \"quoted\" \\ back\nslash\t한국어 🚀 \u{01}"
        log.write(
            AccessLog.Entry(
                requestID: "r-1", traceID: "4bf92f3577b34da6a3ce929d0e0e4736", spanID: "00f067aa0ba902b7",
                method: "GET", route: "/api/posts/{id}", path: "/api/posts/\"1\"", status: 404,
                durationMicroseconds: 12_045, bytes: 117, clientIP: "127.0.0.1", userAgent: awkward
            )
        )
        let object = try #require(capture.objects.first)
        #expect(object["message"] as? String == "request")
        #expect(object["level"] as? String == "info")
        #expect(object["service"] as? String == "blog-service")
        #expect(object["user_agent"] as? String == awkward)
        #expect(object["path"] as? String == "/api/posts/\"1\"")
        #expect(object["status"] as? Int == 404)
        #expect(object["bytes"] as? Int == 117)
        #expect(object["duration_ms"] as? Double == 12.045)
        #expect(object["trace_id"] as? String == "4bf92f3577b34da6a3ce929d0e0e4736")
        let timestamp = try #require(object["timestamp"] as? String)
        #expect(timestamp.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil, "\(timestamp)")
    }

    @Test func levelsAboveInfoTurnAccessLinesOff() {
        let capture = LogCapture()
        let entry = AccessLog.Entry(
            requestID: "r", traceID: "t", spanID: "s", method: "GET", route: "/", path: "/", status: 200,
            durationMicroseconds: 5, bytes: 0, clientIP: "::1", userAgent: ""
        )
        AccessLog(service: "s", level: .warning, sink: capture.sink).write(entry)
        #expect(capture.rawLines.isEmpty)
        AccessLog(service: "s", level: .debug, sink: capture.sink).write(entry)
        #expect(capture.objects.first?["duration_ms"] as? Double == 0.005)
    }

    @Test func bufferedWriterKeepsLinesWholeAndFlushes() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let writer = BufferedLogWriter(fileDescriptor: fds[1], threshold: 1 << 20, intervalMicroseconds: 10_000_000)
        for index in 0..<100 { writer.append(Array("{\"n\":\(index)}\n".utf8)) }
        writer.flush()
        close(fds[1])
        var data = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fds[0], &chunk, chunk.count)
            if count <= 0 { break }
            data.append(contentsOf: chunk[0..<count])
        }
        close(fds[0])
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 100)
        #expect(lines.last == "{\"n\":99}")
    }

    /// An output nobody reads (a full pipe) never blocks the code that logs: lines beyond the
    /// limit are dropped, counted, and reported in a warning line once the output drains.
    @Test func aStuckOutputDropsAndCountsInsteadOfBlocking() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let writer = BufferedLogWriter(fileDescriptor: fds[1], threshold: 4096, intervalMicroseconds: 10_000_000, maxPending: 256 << 10)
        let line = Array((String(repeating: "x", count: 255) + "\n").utf8)
        let start = ContinuousClock.now
        for _ in 0..<4000 { writer.append(line) }  // 1 MB into a 64 kB pipe
        #expect(start.duration(to: .now) < .seconds(2))
        let dropped = writer.droppedLines
        #expect(dropped > 0)

        let reader = fds[0]
        let collected = Mutex<[UInt8]>([])
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = read(reader, &chunk, chunk.count)
                if count <= 0 { break }
                collected.withLock { $0.append(contentsOf: chunk[0..<count]) }
            }
            done.signal()
        }
        writer.flush()
        close(fds[1])
        done.wait()
        close(fds[0])
        let lines = String(decoding: collected.withLock { $0 }, as: UTF8.self).split(separator: "\n")
        let kept = lines.filter { $0.utf8.count == 255 && $0.allSatisfy { $0 == "x" } }.count
        let warnings = lines.filter { $0.contains(#""message":"log lines dropped"#) }
        #expect(kept + dropped == 4000)
        // One warning per flush that found drops: usually one, two when the flusher thread took
        // the buffer while the loop above was still dropping. Together they count every drop.
        let reported = warnings.compactMap { warning in
            warning.split(separator: #""dropped_lines":"#).last.flatMap { Int($0.prefix { $0.isNumber }) }
        }
        #expect(!warnings.isEmpty && reported.count == warnings.count, "\(warnings)")
        #expect(reported.reduce(0, +) == dropped, "\(warnings)")
        #expect(lines.count == kept + warnings.count)
    }
}
