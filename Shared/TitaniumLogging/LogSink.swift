#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
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
/// thread, every `interval` or as soon as `threshold` bytes are waiting (the appender only
/// wakes the thread). A request never waits for a `write(2)`: when the descriptor is slower than
/// the lines (a full pipe, a disk under writeback), lines beyond `maxPending` bytes are dropped
/// and counted, and a warning line says how many once the writer catches up. Lines are only ever
/// written whole, so they never interleave.
/// `flush()` writes everything pending (``ServiceMain`` calls it after the server has drained,
/// and an `atexit` handler calls it for any other exit).
public final class BufferedLogWriter: Sendable {
    private struct State {
        var pending: [UInt8] = []
        var wakeRequested = false
        var dropped = 0
        var droppedTotal = 0
    }
    private let fileDescriptor: Int32
    private let threshold: Int
    private let interval: UInt32
    private let maxPending: Int
    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    // Serialises writers of the descriptor (the flusher thread and explicit flushes).
    private let writeLock = Mutex(())

    public init(fileDescriptor: Int32, threshold: Int = 64 * 1024, intervalMicroseconds: UInt32 = 50_000, maxPending: Int = 32 << 20) {
        self.fileDescriptor = fileDescriptor
        self.threshold = threshold
        self.interval = intervalMicroseconds
        self.maxPending = max(maxPending, threshold)
        self.startFlusher()
        BufferedLogWriter.registerAtExit(self)
    }

    public func append(_ line: [UInt8]) {
        let wake = self.state.withLock { state -> Bool in
            guard state.pending.count + line.count <= self.maxPending else {
                state.dropped += 1
                state.droppedTotal += 1
                return false
            }
            state.pending.append(contentsOf: line)
            guard state.pending.count >= self.threshold, !state.wakeRequested else { return false }
            state.wakeRequested = true
            return true
        }
        if wake { self.wake.signal() }
    }

    /// Lines dropped so far because the descriptor could not keep up.
    public var droppedLines: Int { self.state.withLock { $0.droppedTotal } }

    public func flush() {
        self.writeLock.withLock { _ in
            var chunk: [UInt8] = []
            let dropped = self.state.withLock { state -> Int in
                swap(&chunk, &state.pending)
                state.pending.reserveCapacity(self.threshold + self.threshold / 2)
                state.wakeRequested = false
                defer { state.dropped = 0 }
                return state.dropped
            }
            if dropped > 0 {
                var now = timespec()
                clock_gettime(CLOCK_REALTIME, &now)
                let timestamp = RFC3339.format(seconds: Int(now.tv_sec), milliseconds: Int(now.tv_nsec / 1_000_000))
                chunk.append(contentsOf: Array(#"{"timestamp":"\#(timestamp)","level":"warning","message":"log lines dropped: the output could not keep up","dropped_lines":\#(dropped)}"#.utf8))
                chunk.append(UInt8(ascii: "\n"))
            }
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
                _ = writer.wake.wait(timeout: .now() + .microseconds(Int(writer.interval)))
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
