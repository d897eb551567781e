import Foundation
import Hummingbird

/// The public API's contract, openapi/titanium.json (generated from openapi/titanium.yaml by
/// scripts/openapi.py), against the routes a router really registers. Operations are written
/// `METHOD /path`, the path as Hummingbird writes a route (`/api/posts/{id}`).
public enum OpenAPIContract {
    /// openapi/titanium.json in this checkout.
    public static let documentURL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("openapi/titanium.json")

    static let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    /// The document, parsed.
    public static func document() throws -> [String: Any] {
        let data = try Data(contentsOf: self.documentURL)
        guard let document = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ProcessFailure("\(self.documentURL.path) is not a JSON object")
        }
        return document
    }

    /// Every operation the document describes.
    public static func documentedOperations() throws -> Set<String> {
        guard let paths = try self.document()["paths"] as? [String: [String: Any]] else {
            throw ProcessFailure("\(self.documentURL.path) has no paths")
        }
        var operations: Set<String> = []
        for (path, item) in paths {
            for method in self.methods where item[method] != nil {
                operations.insert("\(method.uppercased()) \(path)")
            }
        }
        return operations
    }

    /// The documented operations whose path is `prefix` or below it.
    public static func documentedOperations(under prefixes: [String]) throws -> Set<String> {
        try self.documentedOperations().filter { operation in
            prefixes.contains { self.path(of: operation, isUnder: $0) }
        }
    }

    /// The public routes `router` registers: those under `/api/`, without the HEAD routes a router
    /// adds for each GET. Read before `makeApplication`, which adds the operational routes and the
    /// 405 answers.
    public static func apiRoutes<Context>(of router: Router<Context>) -> Set<String> {
        Set(router.routes.filter { $0.method != .head && $0.path.description.hasPrefix("/api/") }.map { "\($0.method.rawValue) \($0.path)" })
    }

    /// Whether an operation's path (`GET /api/posts/{id}`) is `prefix` or below it.
    public static func path(of operation: String, isUnder prefix: String) -> Bool {
        let path = operation.split(separator: " ", maxSplits: 1).last.map(String.init) ?? operation
        return path == prefix || path.hasPrefix(prefix + "/")
    }
}
