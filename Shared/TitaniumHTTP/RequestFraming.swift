import Foundation
import HTTPTypes
import NIOHTTP1

/// The request heads every service refuses before anything reads them, because a second parser
/// (a proxy's upstream, a cache) could frame or route them differently (RFC 9112 §6.3, §11.2):
/// the usual request-smuggling and path-confusion shapes. NIO's decoder takes them leniently.
public enum RequestFraming {
    /// The refusal for `head`, or nil when it is unambiguous.
    public static func refusal(for head: HTTPRequestHead) -> APIError? {
        switch head.method {
        case .TRACE, .CONNECT:
            return APIError(.methodNotAllowed, message: "\(head.method.rawValue) is not served here", headers: [.allow: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"])
        default:
            break
        }
        guard head.version.major == 1, head.version.minor <= 1 else {
            return APIError(.badRequest, message: "HTTP/\(head.version.major).\(head.version.minor) is not served here")
        }
        var lengths = 0
        var encodings = 0
        var hosts = 0
        var chunked = true
        for (name, value) in head.headers {
            switch name.utf8.count {
            case 4 where name.utf8.elementsEqualIgnoringCase("host".utf8): hosts += 1
            case 14 where name.utf8.elementsEqualIgnoringCase("content-length".utf8): lengths += 1
            case 17 where name.utf8.elementsEqualIgnoringCase("transfer-encoding".utf8):
                encodings += 1
                chunked = chunked && value == "chunked"
            default: break
            }
        }
        if lengths > 1 { return APIError(.badRequest, message: "more than one Content-Length") }
        if hosts > 1 { return APIError(.badRequest, message: "more than one Host") }
        if encodings > 0 {
            if encodings > 1 || !chunked { return APIError(.badRequest, message: "Transfer-Encoding other than exactly \"chunked\"") }
            if lengths > 0 { return APIError(.badRequest, message: "both Content-Length and Transfer-Encoding") }
            if head.version.minor == 0 { return APIError(.badRequest, message: "Transfer-Encoding in an HTTP/1.0 request") }
        }
        return CanonicalPath.refusal(forTarget: head.uri)
    }
}

/// The one spelling of a request path that routes, rate limits and upstreams all see: empty
/// segments and a trailing slash dropped, percent-encoded unreserved characters decoded (RFC 3986
/// §6.2.2). A target that is not origin-form (`/…`), or has a `.` or `..` segment in any spelling,
/// is refused: resolving it could land on another service than the one the router chose.
public enum CanonicalPath {
    /// 400 for a target no route should see, else nil.
    static func refusal(forTarget target: String) -> APIError? {
        if target == "*" { return nil }  // OPTIONS *
        let path = Self.originForm(target).utf8.prefix { $0 != UInt8(ascii: "?") }
        guard path.first == UInt8(ascii: "/") else {
            return APIError(.badRequest, message: "the request target must be a path beginning with / or an absolute http URL")
        }
        if Self.hasDotSegment(path) { return APIError(.badRequest, message: "the path has a . or .. segment") }
        if target.utf8.contains(UInt8(ascii: "#")) { return APIError(.badRequest, message: "a request target has no fragment") }
        return nil
    }

    /// The canonical form of `path` (no query); `path` itself when it already is (no copy).
    public static func of(_ path: String) -> String {
        guard Self.needsWork(path.utf8) else { return path }
        var out: [UInt8] = []
        out.reserveCapacity(path.utf8.count)
        var bytes = Array(path.utf8)[...]
        while let byte = bytes.popFirst() {
            if byte == UInt8(ascii: "/"), out.last == UInt8(ascii: "/") { continue }
            if byte == UInt8(ascii: "%"), bytes.count >= 2, let high = Self.hex(bytes[bytes.startIndex]), let low = Self.hex(bytes[bytes.startIndex + 1]) {
                let decoded = high << 4 | low
                if Self.isUnreserved(decoded) {
                    out.append(decoded)
                    bytes = bytes.dropFirst(2)
                    continue
                }
                out.append(byte)
                out.append(Self.upper(bytes[bytes.startIndex]))
                out.append(Self.upper(bytes[bytes.startIndex + 1]))
                bytes = bytes.dropFirst(2)
                continue
            }
            out.append(byte)
        }
        if out.count > 1, out.last == UInt8(ascii: "/") { out.removeLast() }
        if out.isEmpty { out = [UInt8(ascii: "/")] }
        return String(decoding: out, as: UTF8.self)
    }

    /// `http://host[:port]/path?query` as `/path?query` (RFC 9112 §3.2.2: a server accepts the
    /// absolute form); any other target as it is.
    static func originForm(_ target: String) -> Substring {
        guard target.utf8.first != UInt8(ascii: "/"), let scheme = target.range(of: "://"),
            ["http", "https"].contains(target[..<scheme.lowerBound].lowercased())
        else { return target[...] }
        let rest = target[scheme.upperBound...]
        guard let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
        return rest[slash] == "/" ? rest[slash...] : "/" + rest[slash...]
    }

    /// A request target in origin form with its path made canonical, the query kept.
    public static func target(_ target: String) -> String {
        let target = target.utf8.first == UInt8(ascii: "/") ? target : String(Self.originForm(target))
        guard let mark = target.firstIndex(of: "?") else { return Self.of(target) }
        let path = String(target[..<mark])
        let canonical = Self.of(path)
        return canonical == path ? target : canonical + target[mark...]
    }

    private static func needsWork(_ path: String.UTF8View) -> Bool {
        var previous: UInt8 = 0
        for byte in path {
            if byte == UInt8(ascii: "%") || (byte == UInt8(ascii: "/") && previous == UInt8(ascii: "/")) { return true }
            previous = byte
        }
        return previous == UInt8(ascii: "/") && path.count > 1
    }

    /// Whether a segment is `.` or `..`, also percent-encoded (`%2e`).
    static func hasDotSegment(_ path: some Collection<UInt8>) -> Bool {
        guard path.contains(UInt8(ascii: ".")) || path.contains(UInt8(ascii: "%")) else { return false }
        for segment in path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            let decoded = Self.of("/" + String(decoding: segment, as: UTF8.self)).utf8.dropFirst()
            if decoded.elementsEqual(".".utf8) || decoded.elementsEqual("..".utf8) { return true }
        }
        return false
    }

    private static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func upper(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte) ? byte - 32 : byte
    }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"): true
        default: false
        }
    }
}

extension Collection<UInt8> {
    /// Equal as ASCII with case ignored (field names are ASCII tokens), without lowercased copies.
    public func elementsEqualIgnoringCase(_ other: some Collection<UInt8>) -> Bool {
        guard self.count == other.count else { return false }
        return zip(self, other).allSatisfy { a, b in
            a == b || (a | 0x20 == b | 0x20 && (a | 0x20) >= UInt8(ascii: "a") && (a | 0x20) <= UInt8(ascii: "z"))
        }
    }
}
