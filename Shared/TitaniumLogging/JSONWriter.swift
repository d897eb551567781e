import Logging

/// A minimal append-only JSON writer for log lines (and OTLP's JSON): no intermediate
/// dictionaries, no Foundation.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []
    private var needsComma = false

    public init() {
        self.bytes.reserveCapacity(512)
    }

    public mutating func beginObject() {
        self.separate()
        self.bytes.append(UInt8(ascii: "{"))
        self.needsComma = false
    }

    public mutating func endObject() {
        self.bytes.append(UInt8(ascii: "}"))
        self.needsComma = true
    }

    public mutating func beginArray() {
        self.separate()
        self.bytes.append(UInt8(ascii: "["))
        self.needsComma = false
    }

    public mutating func endArray() {
        self.bytes.append(UInt8(ascii: "]"))
        self.needsComma = true
    }

    public mutating func key(_ key: String) {
        self.string(key)
        self.bytes.append(UInt8(ascii: ":"))
        self.needsComma = false
    }

    public mutating func null() {
        self.raw("null")
    }

    public mutating func raw(_ text: String) {
        self.separate()
        self.bytes.append(contentsOf: text.utf8)
        self.needsComma = true
    }

    /// An unsigned integer as a JSON number, without an intermediate String.
    public mutating func number(_ value: UInt64) {
        self.separate()
        self.appendDigits(value)
        self.needsComma = true
    }

    /// Microseconds as milliseconds with three decimals: 1234 → 1.234.
    mutating func milliseconds(fromMicroseconds micros: UInt64) {
        self.separate()
        self.appendDigits(micros / 1000)
        self.bytes.append(UInt8(ascii: "."))
        let fraction = micros % 1000
        self.bytes.append(UInt8(ascii: "0") + UInt8(fraction / 100))
        self.bytes.append(UInt8(ascii: "0") + UInt8(fraction / 10 % 10))
        self.bytes.append(UInt8(ascii: "0") + UInt8(fraction % 10))
        self.needsComma = true
    }

    private mutating func appendDigits(_ value: UInt64) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var remaining = value
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[19 - count] = UInt8(ascii: "0") + UInt8(remaining % 10)
                remaining /= 10
                count += 1
            } while remaining > 0
            self.bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[(20 - count)...]))
        }
    }

    /// Bytes that are already valid JSON string content (ids, a cached timestamp).
    public mutating func quotedASCII(_ bytes: UnsafeRawBufferPointer) {
        self.separate()
        self.bytes.append(UInt8(ascii: "\""))
        self.bytes.append(contentsOf: bytes)
        self.bytes.append(UInt8(ascii: "\""))
        self.needsComma = true
    }

    /// A key that needs no escaping (a literal of ours).
    public mutating func key(_ key: StaticString) {
        self.separate()
        self.bytes.append(UInt8(ascii: "\""))
        key.withUTF8Buffer { self.bytes.append(contentsOf: $0) }
        self.bytes.append(UInt8(ascii: "\""))
        self.bytes.append(UInt8(ascii: ":"))
        self.needsComma = false
    }

    public mutating func string(_ text: String) {
        self.separate()
        self.bytes.append(UInt8(ascii: "\""))
        if text.utf8.withContiguousStorageIfAvailable({ self.appendEscaping($0) }) == nil {
            self.appendEscaping(Array(text.utf8).withUnsafeBufferPointer { $0 })
        }
        self.bytes.append(UInt8(ascii: "\""))
        self.needsComma = true
    }

    private mutating func appendEscaping(_ utf8: UnsafeBufferPointer<UInt8>) {
        do {
            // Copy runs of bytes that need no escaping in one go; most strings are one run.
            var runStart = 0
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard byte < 0x20 || byte == 0x22 || byte == 0x5C || byte == 0x7F else { continue }
                if runStart < index { self.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index])) }
                self.appendEscaped(byte)
                runStart = index + 1
            }
            if runStart < utf8.count { self.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...])) }
        }
    }

    private mutating func appendEscaped(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): self.bytes.append(0x5C); self.bytes.append(0x22)
        case UInt8(ascii: "\\"): self.bytes.append(0x5C); self.bytes.append(0x5C)
        case 0x0A: self.bytes.append(0x5C); self.bytes.append(UInt8(ascii: "n"))
        case 0x0D: self.bytes.append(0x5C); self.bytes.append(UInt8(ascii: "r"))
        case 0x09: self.bytes.append(0x5C); self.bytes.append(UInt8(ascii: "t"))
        default:
            // Other control characters and DEL as \u00XX; UTF-8 above ASCII is valid JSON as it is.
            self.bytes.append(0x5C); self.bytes.append(UInt8(ascii: "u"))
            self.bytes.append(UInt8(ascii: "0")); self.bytes.append(UInt8(ascii: "0"))
            self.bytes.append(Self.hex[Int(byte >> 4)])
            self.bytes.append(Self.hex[Int(byte & 0x0F)])
        }
    }

    mutating func value(_ value: Logger.Metadata.Value) {
        switch value {
        case .string(let text):
            self.string(text)
        case .stringConvertible(let convertible):
            switch convertible {
            case let int as Int:
                self.raw(String(int))
            case let bool as Bool:
                self.raw(bool ? "true" : "false")
            case let double as Double where double.isFinite:
                self.raw(String(double))
            case let int as any BinaryInteger:
                self.raw(String(describing: int))
            default:
                self.string(convertible.description)
            }
        case .array(let values):
            self.beginArray()
            for element in values { self.value(element) }
            self.endArray()
        case .dictionary(let dictionary):
            self.beginObject()
            for (key, element) in dictionary.sorted(by: { $0.key < $1.key }) {
                self.key(key)
                self.value(element)
            }
            self.endObject()
        }
    }

    mutating func newline() {
        self.bytes.append(0x0A)
    }

    private mutating func separate() {
        if self.needsComma { self.bytes.append(UInt8(ascii: ",")) }
    }

    private static let hex = Array("0123456789abcdef".utf8)
}

