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
