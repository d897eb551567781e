import Foundation
import HummingbirdCore
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1
import NIOPosix
import Synchronization
import TitaniumHTTP
import TitaniumLogging
import TitaniumMetrics
import TitaniumTrace
import TitaniumTracing
import W3CTraceContext

/// Lowercase field names, grouped by length and compared ASCII case-insensitively.
struct FieldNameSet: Sendable {
    private let byLength: [[String]]

    init(_ names: some Sequence<String>) {
        var byLength: [[String]] = []
        for name in names {
            let length = name.utf8.count
            if byLength.count <= length { byLength += Array(repeating: [], count: length + 1 - byLength.count) }
            byLength[length].append(name)
        }
        self.byLength = byLength
    }

    func contains(_ name: String) -> Bool {
        let length = name.utf8.count
        guard length < self.byLength.count else { return false }
        return self.byLength[length].contains { $0.utf8.elementsEqualIgnoringCase(name.utf8) }
    }
}
