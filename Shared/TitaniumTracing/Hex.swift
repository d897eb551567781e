import W3CTraceContext

extension W3CSpanContext {
    /// The trace id as 32 lower-case hex digits.
    public var traceID: String {
        withUnsafeBytes(of: self.traceContext.traceID.bytes) { Hex.encode($0) }
    }

    /// This span's id as 16 lower-case hex digits.
    public var spanID: String {
        withUnsafeBytes(of: self.traceContext.spanID.bytes) { Hex.encode($0) }
    }

    /// `00-<trace id>-<span id>-<flags>`.
    public var traceparent: String {
        let flags = self.traceContext.flags.rawValue
        return "00-" + self.traceID + "-" + self.spanID + (flags & 1 == 1 ? "-01" : "-00")
    }
}

extension W3CSpanContext {
    /// Two 64-bit values as 32 lower-case hex digits.
    public static func hex(_ high: UInt64, _ low: UInt64) -> String {
        withUnsafeBytes(of: (high.bigEndian, low.bigEndian)) { Hex.encode($0) }
    }
}

enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    static func encode(_ bytes: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2) { buffer in
            for (index, byte) in bytes.enumerated() {
                buffer[2 * index] = self.digits[Int(byte >> 4)]
                buffer[2 * index + 1] = self.digits[Int(byte & 0x0F)]
            }
            return bytes.count * 2
        }
    }
}
