import Foundation

/// The instruction-set extensions of this CPU that matter for kernel choice, read from the `flags`
/// line of `/proc/cpuinfo`.
public struct CPUFeatures: Sendable, Equatable {
    public var avx2 = false
    public var fma = false
    public var avx512f = false
    public var avx512bw = false
    public var avx512vl = false
    public var avx512dq = false
    public var avx512bf16 = false

    public init(flags: Set<String>) {
        avx2 = flags.contains("avx2")
        fma = flags.contains("fma")
        avx512f = flags.contains("avx512f")
        avx512bw = flags.contains("avx512bw")
        avx512vl = flags.contains("avx512vl")
        avx512dq = flags.contains("avx512dq")
        avx512bf16 = flags.contains("avx512_bf16")
    }

    public static let current: CPUFeatures = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else {
            return CPUFeatures(flags: [])
        }
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let flags = line[line.index(after: colon)...].split(separator: " ").map(String.init)
            return CPUFeatures(flags: Set(flags))
        }
        return CPUFeatures(flags: [])
    }()

    /// Logical processors of this machine.
    public static var onlineCoreCount: Int { ProcessInfo.processInfo.activeProcessorCount }

    /// Logical processors this process may run on: fewer than `onlineCoreCount` when a launcher binds
    /// it (mpirun --bind-to, srun --cpu-bind, taskset). Read from `Cpus_allowed_list` in
    /// /proc/self/status (`0-3,8,10-11`).
    public static var allowedCoreCount: Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
        else { return onlineCoreCount }
        var count = 0
        for part in line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces).split(separator: ",") {
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            if bounds.count == 2 { count += bounds[1] - bounds[0] + 1 } else if bounds.count == 1 { count += 1 }
        }
        return count > 0 ? min(count, onlineCoreCount) : onlineCoreCount
    }
}
