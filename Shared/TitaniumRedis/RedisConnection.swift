import CHiredis
#if canImport(Glibc)
import Glibc
#endif

/// A Redis reply.
public enum RedisReply: Sendable, Equatable {
    case string(String)
    case integer(Int)
    case status(String)
    case array([RedisReply])
    case null

    public var string: String? {
        switch self {
        case .string(let value), .status(let value): value
        case .integer(let value): String(value)
        default: nil
        }
    }

    public var integer: Int? {
        switch self {
        case .integer(let value): value
        case .string(let value): Int(value)
        default: nil
        }
    }
}

public enum RedisError: Error, CustomStringConvertible, Equatable {
    /// Redis could not be reached (or was not tried again yet after a failure).
    case unavailable(String)
    /// The connection broke or timed out during a command.
    case connection(String)
    /// Redis answered with an error reply (wrong type, script error …).
    case reply(String)

    public var description: String {
        switch self {
        case .unavailable(let message): "redis unavailable: \(message)"
        case .connection(let message): "redis connection error: \(message)"
        case .reply(let message): "redis error reply: \(message)"
        }
    }
}

/// One hiredis connection. Blocking: use it from one thread at a time, off the event loops.
final class RedisConnection: @unchecked Sendable {
    private let context: UnsafeMutablePointer<redisContext>

    init(configuration: RedisConfiguration) throws(RedisError) {
        guard let context = redisConnectWithTimeout(configuration.host, Int32(configuration.port), Self.timeval(configuration.connectTimeout))
        else { throw .unavailable("out of memory") }
        if context.pointee.err != 0 {
            let message = Self.errorString(context)
            redisFree(context)
            throw .unavailable("\(configuration.host):\(configuration.port): \(message)")
        }
        self.context = context
        redisSetTimeout(context, Self.timeval(configuration.commandTimeout))
        redisEnableKeepAlive(context)
        do {
            if let password = configuration.password {
                _ = try self.send(["AUTH", password])
            }
            if configuration.database != 0 {
                _ = try self.send(["SELECT", String(configuration.database)])
            }
        } catch {
            redisFree(context)
            throw .unavailable("\(error)")
        }
    }

    deinit {
        redisFree(self.context)
    }

    /// Sends one command and waits for its reply. Arguments are binary-safe.
    func send(_ arguments: [String]) throws(RedisError) -> RedisReply {
        var storage: [UInt8] = []
        var offsets: [Int] = []
        var lengths: [Int] = []
        for argument in arguments {
            offsets.append(storage.count)
            lengths.append(argument.utf8.count)
            storage.append(contentsOf: argument.utf8)
            storage.append(0)
        }
        let raw: UnsafeMutableRawPointer? = storage.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            var argv: [UnsafePointer<CChar>?] = offsets.map { base + $0 }
            return redisCommandArgv(self.context, Int32(arguments.count), &argv, lengths)
        }
        guard let raw else {
            throw .connection(Self.errorString(self.context))
        }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        return try Self.convert(reply)
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) throws(RedisError) -> RedisReply {
        let value = reply.pointee
        switch Int32(value.type) {
        case REDIS_REPLY_STRING:
            return .string(Self.text(value))
        case REDIS_REPLY_STATUS:
            return .status(Self.text(value))
        case REDIS_REPLY_ERROR:
            throw .reply(Self.text(value))
        case REDIS_REPLY_INTEGER:
            return .integer(Int(value.integer))
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_ARRAY:
            var elements: [RedisReply] = []
            for index in 0..<Int(value.elements) {
                guard let element = value.element[index] else { elements.append(.null); continue }
                elements.append(try Self.convert(element))
            }
            return .array(elements)
        default:
            throw .reply("unexpected reply type \(value.type)")
        }
    }

    private static func text(_ reply: redisReply) -> String {
        guard let pointer = reply.str else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: Int(reply.len)), as: UTF8.self)
    }

    private static func errorString(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { bytes in
            String(cString: bytes.bindMemory(to: CChar.self).baseAddress!)
        }
    }

    private static func timeval(_ duration: Duration) -> Glibc.timeval {
        let (seconds, attoseconds) = duration.components
        return Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
