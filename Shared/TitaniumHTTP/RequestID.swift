import TitaniumTracing

/// `X-Request-ID` values: accepted when 1–128 characters of `[A-Za-z0-9._:-]`, otherwise replaced.
public enum RequestID {
    public static func accept(_ value: String) -> String? {
        guard (1...128).contains(value.utf8.count) else { return nil }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"),
                UInt8(ascii: "."), UInt8(ascii: ":"):
                continue
            default:
                return nil
            }
        }
        return value
    }

    /// 32 random hex digits.
    public static func make() -> String {
        var generator = IDRandomGenerator()
        return W3CSpanContext.hex(generator.next(), generator.next())
    }
}
