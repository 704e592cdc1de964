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

    /// Logical processors this process may run on.
    public static var onlineCoreCount: Int { ProcessInfo.processInfo.activeProcessorCount }
}
