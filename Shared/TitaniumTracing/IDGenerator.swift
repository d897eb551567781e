import Synchronization

/// Random numbers for trace, span and request ids: xoshiro256** seeded once from the system
/// generator. Ids need to be unique, not secret, and `getrandom(2)` per id costs a system
/// call on every request.
public struct IDRandomGenerator: RandomNumberGenerator {
    public init() {}

    public mutating func next() -> UInt64 {
        IDRandomGenerator.state.withLock { $0.next() }
    }

    private struct Xoshiro256StarStar {
        var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

        init() {
            var system = SystemRandomNumberGenerator()
            repeat {
                (s0, s1, s2, s3) = (system.next(), system.next(), system.next(), system.next())
            } while s0 | s1 | s2 | s3 == 0
        }

        mutating func next() -> UInt64 {
            let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
            let t = s1 << 17
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = s3 << 45 | s3 >> 19
            return result
        }
    }

    private static let state = Mutex(Xoshiro256StarStar())
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import W3CTraceContext

extension TraceID {
    /// The trace id of a trace that starts here: the first 6 bytes are the Unix time in
    /// milliseconds (big-endian), the other 10 random — a UUIDv7's layout, and within what W3C
    /// Trace Context Level 2 asks of a random trace id (its right-most 7 bytes random). Every
    /// service indexes its trace store by trace id: ids that grow with time are appended at one
    /// place in that index (the newest time), where random ones each land on a page of their own
    /// once the table is large.
    public static func timeOrdered(using generator: inout some RandomNumberGenerator, unixMilliseconds: UInt64 = TraceID.nowMilliseconds()) -> TraceID {
        var bytes: TraceID.Bytes = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        let high = (unixMilliseconds & 0xFFFF_FFFF_FFFF) << 16 | generator.next() & 0xFFFF
        let low = generator.next()
        withUnsafeMutableBytes(of: &bytes) { raw in
            raw.storeBytes(of: high.bigEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        return TraceID(bytes: bytes)
    }

    /// The wall clock in milliseconds since 1970.
    public static func nowMilliseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
    }
}
