import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import TitaniumHTTP

/// One `/stats` endpoint to ask: a service name and its base URL.
struct StatsTarget: Sendable, Equatable {
    var name: String
    var url: String

    /// `name=url` pairs, comma-separated.
    static func parse(_ entries: [String]) throws(ConfigurationError) -> [StatsTarget] {
        try entries.map { entry throws(ConfigurationError) in
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, parts[1].hasPrefix("http://") || parts[1].hasPrefix("https://") else {
                throw ConfigurationError(key: "stats.targets", value: entry, expected: "name=http://host:port pairs, comma-separated")
            }
            return StatsTarget(name: parts[0], url: parts[1].hasSuffix("/") ? String(parts[1].dropLast()) : parts[1])
        }
    }
}

/// Asks every service instance the same question, in parallel: the `/stats` aggregate and the
/// merged `/traces*` are built on it. A target whose host name resolves to several IPv4
/// addresses (a headless Kubernetes Service) is asked at each address, so every pod answers.
/// Each answer is decoded to its type and bounded by `perTargetTimeout`; the calls go through
/// the outbound client, so they carry the current trace context and request id.
struct InstanceFanOut: Sendable {
    let targets: [StatsTarget]
    let client: OutboundHTTPClient
    let perTargetTimeout: Duration

    /// One instance's answer: its target (one address of it) and the decoded body, or why not.
    struct Answer<Body: Sendable>: Sendable {
        var target: StatsTarget
        var latency: Duration
        var result: Result<Body, any Error>
    }

    init(
        targets: [StatsTarget], client: OutboundHTTPClient,
        // 1.9 s rather than 2: what follows the fan-out (the window, encoding, writing) and a busy
        // machine's late timer wake-ups must still fit in the 2.1 s `/stats` is promised in.
        perTargetTimeout: Duration = .milliseconds(1900)
    ) {
        self.targets = targets
        self.client = client
        self.perTargetTimeout = perTargetTimeout
    }

    /// Every instance's answer to `GET path`, in the order of the targets.
    func gather<Body: Decodable & Sendable>(_ path: String, as type: Body.Type, headers: [(String, String)] = []) async -> [Answer<Body>] {
        await self.call(.GET, path, headers: headers).map { answer in
            let result = answer.result.flatMap { reply -> Result<Body, any Error> in
                guard reply.status == 200 else { return .failure(FanOutError("answered \(reply.status)")) }
                return Result { try JSONDecoder().decode(Body.self, from: Data(reply.body.readableBytesView)) }
            }
            return Answer(target: answer.target, latency: answer.latency, result: result)
        }
    }

    /// An instance's answer as it came: its status and body.
    struct Reply: Sendable {
        var status: Int
        var body: ByteBuffer
    }

    /// Every instance's answer to `method path` (of the targets named `name`, or all), in the
    /// order of the targets.
    func call(
        _ method: HTTPMethod, _ path: String, body: ByteBuffer? = nil, headers: [(String, String)] = [], name: String? = nil
    ) async -> [Answer<Reply>] {
        let instances = await self.expand().filter { name == nil || $0.name == name }
        return await withTaskGroup(of: (Int, Answer<Reply>).self) { group in
            for (index, target) in instances.enumerated() {
                group.addTask {
                    let start = ContinuousClock.now
                    let result = await self.exchange(method, target.url + path, body: body, headers: headers)
                    return (index, Answer(target: target, latency: start.duration(to: .now), result: result))
                }
            }
            var answers: [(Int, Answer<Reply>)] = []
            for await answer in group { answers.append(answer) }
            return answers.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    /// `url`'s answer (a body of at most 8 MB), or why not: no answer within the per-target
    /// timeout (the answer is abandoned, so a hanging target never holds the caller).
    private func exchange(_ method: HTTPMethod, _ url: String, body: ByteBuffer?, headers: [(String, String)]) async -> Result<Reply, any Error> {
        let timeout = self.perTargetTimeout
        return await withTaskGroup(of: Result<Reply, any Error>?.self) { group in
            group.addTask {
                do {
                    var request = HTTPClientRequest(url: url)
                    request.method = method
                    for (name, value) in headers { request.headers.add(name: name, value: value) }
                    if let body {
                        request.headers.add(name: "Content-Type", value: "application/json")
                        request.body = .bytes(body)
                    }
                    let response = try await self.client.execute(request, timeout: timeout)
                    return .success(Reply(status: Int(response.status.code), body: try await response.body.collect(upTo: 8 << 20)))
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .failure(FanOutError("no answer within \(timeout)"))
        }
    }

    /// One target per address when a host name resolves to several IPv4 addresses.
    func expand() async -> [StatsTarget] {
        var expanded: [StatsTarget] = []
        for target in self.targets {
            guard let components = URLComponents(string: target.url), let host = components.host,
                !host.isEmpty, host.first?.isNumber == false, host != "localhost"
            else {
                expanded.append(target)
                continue
            }
            let addresses = (try? await NIOThreadPool.singleton.runIfActive { Self.resolveIPv4(host) }) ?? []
            if addresses.count > 1 {
                for address in addresses {
                    var copy = components
                    copy.host = address
                    expanded.append(StatsTarget(name: target.name, url: copy.string ?? target.url))
                }
            } else {
                expanded.append(target)
            }
        }
        return expanded
    }

    /// Every IPv4 address of `host` (blocking getaddrinfo: run it on the thread pool).
    static func resolveIPv4(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            if let address = info.pointee.ai_addr {
                var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { inet in
                    var addr = inet.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &addr, &text, socklen_t(INET_ADDRSTRLEN))
                }
                let string = String(decoding: text.prefix { $0 != 0 }.map(UInt8.init(bitPattern:)), as: UTF8.self)
                if !addresses.contains(string) { addresses.append(string) }
            }
            cursor = info.pointee.ai_next
        }
        return addresses
    }
}

struct FanOutError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
