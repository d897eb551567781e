#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// RFC 3339 UTC timestamps with millisecond precision, e.g. `2026-11-22T04:44:54.123Z`.
public enum RFC3339 {
    public static func now() -> String {
        self.withNow { String(decoding: $0, as: UTF8.self) }
    }

    /// Calls `body` with the current time as 24 ASCII bytes, without allocating.
    /// gmtime_r takes glibc's time-zone lock, so the date and time are formatted once per second.
    public static func withNow<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        let seconds = Int(spec.tv_sec)
        let millis = Int(spec.tv_nsec / 1_000_000)
        var stamp = self.cache.withLock { cache -> Stamp in
            if cache.second != seconds {
                cache = Stamp(second: seconds, text: self.format(seconds: seconds, milliseconds: 0))
            }
            return cache
        }
        return withUnsafeMutableBytes(of: &stamp.bytes) { buffer in
            buffer[20] = UInt8(ascii: "0") + UInt8(millis / 100)
            buffer[21] = UInt8(ascii: "0") + UInt8(millis / 10 % 10)
            buffer[22] = UInt8(ascii: "0") + UInt8(millis % 10)
            return body(UnsafeRawBufferPointer(buffer))
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` as a fixed tuple of bytes.
    private struct Stamp {
        var second: Int
        var bytes: (UInt64, UInt64, UInt64) = (0, 0, 0)

        init(second: Int, text: String) {
            self.second = second
            withUnsafeMutableBytes(of: &self.bytes) { buffer in
                for (index, byte) in text.utf8.prefix(24).enumerated() { buffer[index] = byte }
            }
        }
    }

    private static let cache = Mutex<Stamp>(Stamp(second: -1, text: ""))

    public static func format(epochSeconds: Double) -> String {
        let whole = Int(epochSeconds.rounded(.down))
        let millis = Int(((epochSeconds - Double(whole)) * 1000).rounded(.down))
        return self.format(seconds: whole, milliseconds: min(millis, 999))
    }

    public static func format(seconds: Int, milliseconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        var out = [UInt8]()
        out.reserveCapacity(24)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var remaining = value
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(remaining / divisor % 10))
                remaining %= divisor
                divisor /= 10
            }
        }
        digits(Int(parts.tm_year) + 1900, 4); out.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mon) + 1, 2); out.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mday), 2); out.append(UInt8(ascii: "T"))
        digits(Int(parts.tm_hour), 2); out.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_min), 2); out.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_sec), 2); out.append(UInt8(ascii: "."))
        digits(milliseconds, 3); out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }
}
