import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import TitaniumHTTP
import TitaniumLogging

/// Collects the JSON lines a logger writes.
final class LogCapture: Sendable {
    private let lines = NIOLockedValueBox<[String]>([])

    var sink: LogSink {
        LogSink { bytes in
            let line = String(decoding: bytes, as: UTF8.self)
            self.lines.withLockedValue { $0.append(line) }
        }
    }

    func logger(service: String = "test-service", level: Logger.Level = .info) -> Logger {
        let sink = self.sink
        return Logger(label: service) { _ in JSONLogHandler(service: service, level: level, sink: sink) }
    }

    var objects: [[String: Any]] {
        self.lines.withLockedValue { $0 }.compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }

    var rawLines: [String] { self.lines.withLockedValue { $0 } }
}

func makeKit(_ environment: [String: String] = [:], logs: LogCapture? = nil) throws -> ServiceKit {
    let configuration = try ServiceConfiguration(service: "test-service", defaultPort: 0, settings: .fromEnvironment(environment))
    return ServiceKit(configuration: configuration, logger: logs?.logger(), accessLogSink: logs?.sink ?? .standardOutput)
}

func jsonObject(_ buffer: ByteBuffer) throws -> [String: Any] {
    let object = try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))
    guard let dictionary = object as? [String: Any] else { throw TestFailure("not a JSON object: \(String(buffer: buffer))") }
    return dictionary
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
