import Logging

/// A minimal append-only JSON writer for log lines: no intermediate dictionaries, no Foundation.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []
    private var needsComma = false

    init() {
        self.bytes.reserveCapacity(512)
    }

    mutating func beginObject() {
        self.separate()
        self.bytes.append(UInt8(ascii: "{"))
        self.needsComma = false
    }

    mutating func endObject() {
        self.bytes.append(UInt8(ascii: "}"))
        self.needsComma = true
    }

    mutating func beginArray() {
        self.separate()
        self.bytes.append(UInt8(ascii: "["))
        self.needsComma = false
    }

    mutating func endArray() {
        self.bytes.append(UInt8(ascii: "]"))
        self.needsComma = true
    }

    mutating func key(_ key: String) {
        self.string(key)
        self.bytes.append(UInt8(ascii: ":"))
        self.needsComma = false
    }

    mutating func null() {
        self.raw("null")
    }

    mutating func raw(_ text: String) {
        self.separate()
        self.bytes.append(contentsOf: text.utf8)
        self.needsComma = true
    }

    mutating func string(_ text: String) {
        self.separate()
        self.bytes.append(UInt8(ascii: "\""))
        // Most strings need no escaping: copy them in one go.
        if !Self.needsEscaping(text) {
            self.bytes.append(contentsOf: text.utf8)
            self.bytes.append(UInt8(ascii: "\""))
            self.needsComma = true
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): self.bytes.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): self.bytes.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: self.bytes.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: self.bytes.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: self.bytes.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x00..<0x20, 0x7F:
                self.bytes.append(contentsOf: Array("\\u00".utf8))
                self.bytes.append(Self.hex[Int(byte >> 4)])
                self.bytes.append(Self.hex[Int(byte & 0x0F)])
            default:
                // UTF-8 bytes of non-ASCII text are valid JSON as they are.
                self.bytes.append(byte)
            }
        }
        self.bytes.append(UInt8(ascii: "\""))
        self.needsComma = true
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

    private static func needsEscaping(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            for byte in bytes where byte < 0x20 || byte == 0x22 || byte == 0x5C || byte == 0x7F {
                return true
            }
            return false
        }
    }
}
