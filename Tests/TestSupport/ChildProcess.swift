import Foundation
import Synchronization

/// A program a test starts: spawned with `posix_spawn`, its standard streams files the child
/// opens itself, its exit learned with `waitpid`. It lives no longer than this object: deinit
/// kills it (SIGKILL) if it still runs, and reaps it.
///
/// Written by hand because neither library fits. Foundation's `Process` watches each child
/// through libdispatch on Linux, and `Pipe`'s `readabilityHandler` arms a dispatch source per
/// pipe: with tests starting and ending processes concurrently, libdispatch's epoll bookkeeping
/// is corrupted and the whole test process dies with SIGSEGV in `_dispatch_event_loop_drain`
/// (swift-corelibs-libdispatch#949; it ended a clean-clone CI run). swift-subprocess scopes a
/// child to one closure, and these tests keep servers across many awaits, kill them and start
/// them again.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    /// The program's path and arguments, for messages.
    public let command: [String]
    private let status = Mutex<Int32?>(nil)

    /// Starts `command[0]` (a path) with the rest as its arguments. The child reads standard
    /// input from the file `input` and appends standard output to `output` (created if missing),
    /// and standard error to `errors`, or to `output` when nil. `environment` nil passes the
    /// test's own. Signal dispositions and mask start at their defaults; no descriptor of the
    /// test process is inherited.
    public init(
        _ command: [String], environment: [String: String]? = nil, workingDirectory: String? = nil,
        input: String = "/dev/null", output: String = "/dev/null", errors: String? = nil
    ) throws {
        guard let executable = command.first else { throw ProcessFailure("ChildProcess: no command") }
        self.command = command
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, input, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if let errors {
            posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        try GNUSpawnActions.closeFrom(&actions, 3)
        if let workingDirectory { try GNUSpawnActions.changeDirectory(&actions, workingDirectory) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var everySignal = sigset_t()
        sigfillset(&everySignal)
        posix_spawnattr_setsigdefault(&attributes, &everySignal)
        var noSignal = sigset_t()
        sigemptyset(&noSignal)
        posix_spawnattr_setsigmask(&attributes, &noSignal)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let variables = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var pid = pid_t()
        let result = withCStringArray(command) { argv in
            withCStringArray(variables) { envp in posix_spawn(&pid, executable, &actions, &attributes, argv, envp) }
        }
        guard result == 0 else { throw ProcessFailure("cannot start \(executable): \(String(cString: strerror(result)))") }
        self.pid = pid
    }

    /// The exit status (the signal's number for a killed process), or nil while it runs.
    public var exitStatus: Int32? {
        self.status.withLock { status in
            if let status { return status }
            var raw: Int32 = 0
            switch waitpid(self.pid, &raw, WNOHANG) {
            case 0: return nil
            case self.pid: status = Self.decode(raw)
            default: if errno == EINTR { return nil } else { status = -1 }
            }
            return status
        }
    }

    public var isRunning: Bool { self.exitStatus == nil }

    /// Sends `signal` unless the process has been reaped (until then its pid cannot be reused).
    public func signal(_ signal: Int32) {
        self.status.withLock { status in
            if status == nil { _ = Glibc.kill(self.pid, signal) }
        }
    }

    /// Waits for the exit; after `timeout` kills the process and throws.
    public func waitForExit(timeout: Duration = .seconds(10)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let status = self.exitStatus { return status }
            if ContinuousClock.now > deadline { throw self.killForTimeout(timeout) }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// What ``run(_:input:workingDirectory:timeout:)`` returns; output and errors trimmed.
    public struct Outcome: Sendable {
        public let status: Int32
        public let output: String
        public let errors: String
    }

    /// Runs `command` to its end, blocking the calling thread, and returns its status, output
    /// and errors (read from files: a pipe could be held open by a process another test starts
    /// meanwhile). After `timeout` the process is killed and this throws.
    public static func run(
        _ command: [String], input: String = "/dev/null", workingDirectory: String? = nil, timeout: Duration = .seconds(30)
    ) throws -> Outcome {
        let directory = try temporaryDirectory("titanium-run")
        defer { try? FileManager.default.removeItem(at: directory) }
        let output = directory.appendingPathComponent("output").path
        let errors = directory.appendingPathComponent("errors").path
        let child = try ChildProcess(command, workingDirectory: workingDirectory, input: input, output: output, errors: errors)
        let deadline = ContinuousClock.now + timeout
        var status = child.exitStatus
        while status == nil {
            if ContinuousClock.now > deadline { throw child.killForTimeout(timeout) }
            usleep(2_000)
            status = child.exitStatus
        }
        func read(_ path: String) -> String {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return Outcome(status: status ?? -1, output: read(output), errors: read(errors))
    }

    private func killForTimeout(_ timeout: Duration) -> ProcessFailure {
        self.signal(SIGKILL)
        return ProcessFailure("\(self.command.joined(separator: " ")) did not finish within \(timeout)")
    }

    private static func decode(_ raw: Int32) -> Int32 {
        let signal = raw & 0x7f
        return signal == 0 ? (raw >> 8) & 0xff : signal
    }

    deinit {
        if self.exitStatus == nil {
            _ = Glibc.kill(self.pid, SIGKILL)
            var raw: Int32 = 0
            while waitpid(self.pid, &raw, 0) == -1 && errno == EINTR {}
        }
    }
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` and `…_addchdir_np`, looked up at run
/// time: Swift's Glibc module does not declare them (they need `_GNU_SOURCE`).
private enum GNUSpawnActions {
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private typealias ChangeDirectory = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    private static func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
        guard let pointer = dlsym(dlopen(nil, RTLD_NOW), name) else { throw ProcessFailure("glibc has no \(name)") }
        return pointer
    }

    static func closeFrom(_ actions: inout posix_spawn_file_actions_t, _ lowest: Int32) throws {
        let function = unsafeBitCast(try symbol("posix_spawn_file_actions_addclosefrom_np"), to: CloseFrom.self)
        guard function(&actions, lowest) == 0 else { throw ProcessFailure("posix_spawn_file_actions_addclosefrom_np failed") }
    }

    static func changeDirectory(_ actions: inout posix_spawn_file_actions_t, _ path: String) throws {
        let function = unsafeBitCast(try symbol("posix_spawn_file_actions_addchdir_np"), to: ChangeDirectory.self)
        guard function(&actions, path) == 0 else { throw ProcessFailure("posix_spawn_file_actions_addchdir_np failed") }
    }
}

/// `strings` as a NULL-terminated array of C strings, valid during `body`.
private func withCStringArray<T>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> T) -> T {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}
