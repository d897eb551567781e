#if canImport(Glibc)
import Glibc
#endif

/// The standard Prometheus process metrics, read from `/proc/self` at scrape time.
/// swift-prometheus has no process collector, so these few lines are written here.
public struct ProcessMetrics: Sendable {
    public let startTimeSeconds: Double

    public init(startTimeSeconds: Double = ProcessMetrics.processStartTime()) {
        self.startTimeSeconds = startTimeSeconds
    }

    /// Appends the process metrics in Prometheus text format 0.0.4.
    public func emit(into buffer: inout [UInt8]) {
        var text = ""
        if let rss = Self.residentMemoryBytes() {
            text += "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
            text += "# TYPE process_resident_memory_bytes gauge\n"
            text += "process_resident_memory_bytes \(rss)\n"
        }
        if let virtual = Self.virtualMemoryBytes() {
            text += "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
            text += "# TYPE process_virtual_memory_bytes gauge\n"
            text += "process_virtual_memory_bytes \(virtual)\n"
        }
        text += "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        text += "# TYPE process_cpu_seconds_total counter\n"
        text += "process_cpu_seconds_total \(Self.cpuSeconds())\n"
        if let fds = Self.openFileDescriptors() {
            text += "# HELP process_open_fds Number of open file descriptors.\n"
            text += "# TYPE process_open_fds gauge\n"
            text += "process_open_fds \(fds)\n"
        }
        let maxFDs = Self.maxFileDescriptors()
        text += "# HELP process_max_fds Maximum number of open file descriptors.\n"
        text += "# TYPE process_max_fds gauge\n"
        text += "process_max_fds \(maxFDs)\n"
        text += "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
        text += "# TYPE process_start_time_seconds gauge\n"
        text += "process_start_time_seconds \(self.startTimeSeconds)\n"
        buffer.append(contentsOf: text.utf8)
    }

    public static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ value: timeval) -> Double { Double(value.tv_sec) + Double(value.tv_usec) / 1_000_000 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    public static func residentMemoryBytes() -> Int? {
        guard let statm = readFile("/proc/self/statm") else { return nil }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    static func virtualMemoryBytes() -> Int? {
        guard let statm = readFile("/proc/self/statm") else { return nil }
        guard let pages = statm.split(separator: " ").first.flatMap({ Int($0) }) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    public static func openFileDescriptors() -> Int? {
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { name in name[0] == UInt8(ascii: ".") }
            if !isDot { count += 1 }
        }
        return max(count - 1, 0)  // the directory stream itself holds one descriptor
    }

    static func maxFileDescriptors() -> Int {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        return Int(limit.rlim_cur)
    }

    /// Process start in seconds since the epoch: boot time plus the start tick in `/proc/self/stat`.
    public static func processStartTime() -> Double {
        guard let stat = readFile("/proc/self/stat"),
            let closing = stat.lastIndex(of: ")")
        else { return Self.now() }
        // Fields after the command name; starttime is field 22 overall, index 19 here.
        let fields = stat[stat.index(after: closing)...].split(separator: " ")
        guard fields.count > 19, let ticks = Double(fields[19]),
            let bootTime = readFile("/proc/stat")?.split(separator: "\n").first(where: { $0.hasPrefix("btime ") })
                .flatMap({ Double($0.dropFirst(6)) })
        else { return Self.now() }
        return bootTime + ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func now() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    static func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let read = fread(&chunk, 1, chunk.count, file)
            if read <= 0 { break }
            bytes.append(contentsOf: chunk[0..<read])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
