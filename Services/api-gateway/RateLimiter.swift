import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Prometheus
import TitaniumAuth
import TitaniumHTTP
import TitaniumProxy
import TitaniumRedis

/// One rate-limited group of routes: at most `limit` requests per `window` per key.
struct RateLimitRule: Sendable, Equatable {
    /// Whom a limit counts.
    enum Key: String, Sendable {
        /// The client's address (``ClientIPResolver``).
        case clientIP = "ip"
        /// The `username` of a JSON body (a login), lower-cased.
        case username = "user"
        /// The subject of a valid bearer token; the client's address without one.
        case tokenSubject = "sub"
    }

    var group: String
    var limit: Int
    var window: Duration
    var key: Key
    /// Matched against the canonical path (``CanonicalPath``), which is what the router and the
    /// upstream see: no other spelling of a route escapes its limit.
    var matches: @Sendable (HTTPRequest.Method, String) -> Bool

    static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.group == rhs.group && lhs.limit == rhs.limit && lhs.window == rhs.window && lhs.key == rhs.key
    }

    /// `COUNT/SECONDS`, e.g. `5/60`.
    static func parse(_ text: String, key: String) throws(ConfigurationError) -> (Int, Duration) {
        let parts = text.split(separator: "/").compactMap { Int($0) }
        guard parts.count == 2, parts[0] > 0, parts[1] > 0 else {
            throw ConfigurationError(key: key, value: text, expected: "COUNT/SECONDS, e.g. 5/60")
        }
        return (parts[0], .seconds(parts[1]))
    }
}

/// Sliding-window rate limiting in Redis: one sorted set per key and group, trimmed and
/// counted atomically by a Lua script on Redis's clock (so gateway replicas agree). Every rule
/// a request matches is checked (a login counts per address and per username). Over a limit →
/// 429 with `Retry-After`; every limited answer carries `RateLimit-Limit/Remaining/Reset` of
/// its tightest rule. Redis unreachable → the request passes (fail-open) and
/// `rate_limit_errors_total` counts it.
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = TitaniumRequestContext

    let redis: RedisClient
    let rules: [RateLimitRule]
    let clientIP: ClientIPResolver
    let verifier: TokenVerifier
    let rejections: @Sendable (String) -> Counter
    let errors: Counter
    let logger: Logger

    private struct LoginName: Decodable {
        var username: String?
    }

    /// A login body is read to find its username: at most this much of it.
    static let usernameBodyLimit = 16 * 1024

    static let script = """
        local now = redis.call('TIME')
        local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
        local window = tonumber(ARGV[1])
        local limit = tonumber(ARGV[2])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, nowMs - window)
        local count = redis.call('ZCARD', KEYS[1])
        if count < limit then
          redis.call('ZADD', KEYS[1], nowMs, nowMs .. '-' .. ARGV[3])
          redis.call('PEXPIRE', KEYS[1], window)
          local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
          return {1, limit - count - 1, window - (nowMs - tonumber(oldest[2]))}
        end
        local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
        return {0, 0, window - (nowMs - tonumber(oldest[2]))}
        """

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = CanonicalPath.of(request.uri.path)
        let matching = self.rules.filter { $0.matches(request.method, path) }
        guard !matching.isEmpty else { return try await next(request, context) }
        var request = request
        var tightest: (rule: RateLimitRule, remaining: Int, resetSeconds: Int)?
        for rule in matching {
            let key = try await self.key(rule.key, request: &request, context: context)
            guard let (allowed, remaining, resetSeconds) = await self.check(rule, key: key, requestID: context.requestID) else { continue }
            guard allowed else {
                self.rejections(rule.group).increment()
                var headers = Self.headers(rule: rule, remaining: 0, resetSeconds: resetSeconds)
                headers[.retryAfter] = String(resetSeconds)
                throw APIError(.tooManyRequests, message: "too many requests; retry in \(resetSeconds) s", headers: headers)
            }
            if tightest.map({ remaining < $0.remaining }) ?? true { tightest = (rule, remaining, resetSeconds) }
        }
        var response = try await next(request, context)
        if let tightest {
            for field in Self.headers(rule: tightest.rule, remaining: tightest.remaining, resetSeconds: tightest.resetSeconds) {
                response.headers[field.name] = field.value
            }
        }
        return response
    }

    /// The key a rule counts this request under (the body is read for a username, and kept).
    private func key(_ key: RateLimitRule.Key, request: inout Request, context: Context) async throws -> String {
        let client = self.clientIP.resolve(peer: context.peerIP, forwardedFor: request.headers[.xForwardedFor])
        switch key {
        case .clientIP:
            return "ip:" + client
        case .username:
            let body = try await request.collectBody(upTo: Self.usernameBodyLimit)
            // Decoded as the services decode it, so a repeated key means the same username to both.
            let login = try? JSONDecoder().decode(LoginName.self, from: Data(body.readableBytesView))
            guard let username = login?.username else { return "ip:" + client }
            return "user:" + username.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        case .tokenSubject:
            guard let claims = try? await self.verifier.claims(for: request, context: context) else { return "ip:" + client }
            return "sub:" + claims.subject
        }
    }

    /// (allowed, remaining, seconds until a slot frees), or nil when Redis could not say (the request passes).
    private func check(_ rule: RateLimitRule, key: String, requestID: String) async -> (Bool, Int, Int)? {
        let windowMs = Int(rule.window.components.seconds) * 1000
        let reply: RedisReply
        do {
            reply = try await self.redis.eval(
                Self.script, keys: ["rl:\(rule.group):\(key)"],
                arguments: [String(windowMs), String(rule.limit), requestID.isEmpty ? RequestID.make() : requestID]
            )
        } catch {
            self.errors.increment()
            self.logger.debug("rate limiter unavailable, request passes", metadata: ["error": "\(error)"])
            return nil
        }
        guard case .array(let values) = reply, values.count == 3,
            let allowed = values[0].integer, let remaining = values[1].integer, let resetMs = values[2].integer
        else {
            self.errors.increment()
            return nil
        }
        return (allowed == 1, remaining, max(1, (resetMs + 999) / 1000))
    }

    private static func headers(rule: RateLimitRule, remaining: Int, resetSeconds: Int) -> HTTPFields {
        [.rateLimitLimit: String(rule.limit), .rateLimitRemaining: String(remaining), .rateLimitReset: String(resetSeconds)]
    }
}

/// The client's address: the socket peer, unless the peer is a trusted proxy (`TRUSTED_PROXIES`,
/// CIDRs), in which case the right-most `X-Forwarded-For` entry that is not itself trusted.
/// A client cannot pick its own address by sending the header.
struct ClientIPResolver: Sendable {
    let trusted: [CIDR]

    func resolve(peer: String, forwardedFor: String?) -> String {
        guard self.isTrusted(peer), let forwardedFor else { return peer }
        let hops = forwardedFor.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for hop in hops.reversed() where !self.isTrusted(hop) { return hop }
        return hops.first ?? peer
    }

    func isTrusted(_ address: String) -> Bool {
        self.trusted.contains { $0.contains(address) }
    }
}

extension HTTPField.Name {
    static let rateLimitLimit = HTTPField.Name("RateLimit-Limit")!
    static let rateLimitRemaining = HTTPField.Name("RateLimit-Remaining")!
    static let rateLimitReset = HTTPField.Name("RateLimit-Reset")!
}
