#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Where log lines go.
public struct LogSink: Sendable {
    public let write: @Sendable ([UInt8]) -> Void
    public let flush: @Sendable () -> Void

    public init(write: @escaping @Sendable ([UInt8]) -> Void, flush: @escaping @Sendable () -> Void = {}) {
        self.write = write
        self.flush = flush
    }

    /// Standard output through a ``BufferedLogWriter``: whole lines, at most ~50 ms late,
    /// flushed at exit.
    public static let standardOutput: LogSink = {
        let writer = BufferedLogWriter(fileDescriptor: 1)
        return LogSink(write: { writer.append($0) }, flush: { writer.flush() })
    }()
}

/// Collects log lines in memory and writes them to a file descriptor from one background
/// thread, every `interval` or as soon as `threshold` bytes are waiting. A request never
/// waits for a `write(2)`; lines are only ever written whole, so they never interleave.
/// `flush()` writes everything pending (``ServiceMain`` calls it after the server has drained,
/// and an `atexit` handler calls it for any other exit).
public final class BufferedLogWriter: Sendable {
    private struct State {
        var pending: [UInt8] = []
    }
    private let fileDescriptor: Int32
    private let threshold: Int
    private let interval: UInt32
    private let state = Mutex(State())
    // Serialises writers of the descriptor (the flusher thread and explicit flushes).
    private let writeLock = Mutex(())

    public init(fileDescriptor: Int32, threshold: Int = 64 * 1024, intervalMicroseconds: UInt32 = 50_000) {
        self.fileDescriptor = fileDescriptor
        self.threshold = threshold
        self.interval = intervalMicroseconds
        self.startFlusher()
        BufferedLogWriter.registerAtExit(self)
    }

    public func append(_ line: [UInt8]) {
        let full = self.state.withLock { state -> Bool in
            state.pending.append(contentsOf: line)
            return state.pending.count >= self.threshold
        }
        if full { self.flush() }
    }

    public func flush() {
        self.writeLock.withLock { _ in
            var chunk: [UInt8] = []
            self.state.withLock { state in swap(&chunk, &state.pending) }
            guard !chunk.isEmpty else { return }
            chunk.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Glibc.write(self.fileDescriptor, buffer.baseAddress! + offset, buffer.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
            }
        }
    }

    private func startFlusher() {
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            let writer = Unmanaged<BufferedLogWriter>.fromOpaque(argument!).takeUnretainedValue()
            while true {
                usleep(writer.interval)
                writer.flush()
            }
        }, box.toOpaque())
        if result == 0 { pthread_detach(thread) }
    }

    private static let atExitWriters = Mutex<[BufferedLogWriter]>([])

    private static func registerAtExit(_ writer: BufferedLogWriter) {
        let first = atExitWriters.withLock { writers in
            writers.append(writer)
            return writers.count == 1
        }
        if first {
            atexit {
                for writer in BufferedLogWriter.atExitWriters.withLock({ $0 }) { writer.flush() }
            }
        }
    }
}
