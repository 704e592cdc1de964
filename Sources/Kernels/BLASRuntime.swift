import COpenBLAS
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// OpenBLAS as loaded in this process: which kernel it runs and how many threads it uses.
public enum BLASRuntime {
    /// The kernel family OpenBLAS selected when it loaded (`SkylakeX`, `Haswell`, `Prescott`, ...).
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// The build configuration string (version, DYNAMIC_ARCH, threading model).
    public static var configuration: String {
        guard let config = openblas_get_config() else { return "unknown" }
        return String(cString: config)
    }

    /// The OpenBLAS version, parsed from the build configuration (`0.3.21`).
    public static var version: String {
        let words = configuration.split(separator: " ")
        if let index = words.firstIndex(of: "OpenBLAS"), index + 1 < words.count {
            return String(words[index + 1])
        }
        return configuration
    }

    public static var threadCount: Int { Int(openblas_get_num_threads()) }

    public static func setThreadCount(_ count: Int) {
        precondition(count >= 1, "BLAS thread count must be at least 1")
        openblas_set_num_threads(Int32(count))
    }

    /// True for the generic fallback kernels that OpenBLAS's DYNAMIC_ARCH picks when it does not
    /// recognise the CPU: correct but several times slower than the CPU's own kernels.
    public static var isGenericKernel: Bool {
        let name = coreName.lowercased()
        return name == "prescott" || name == "core2" || name == "katmai" || name == "coppermine"
            || name == "northwood" || name == "banias" || name == "atom" || name == "unknown"
    }
}

/// Chooses the OpenBLAS kernel for this CPU.
///
/// Debian's DYNAMIC_ARCH OpenBLAS falls back to its generic `Prescott` kernels on CPUs newer than the
/// library, even when they support AVX-512. The kernel is chosen from `OPENBLAS_CORETYPE` when the
/// library loads, which happens before `main`, so the tool sets the variable and re-executes itself
/// (`ensureBestKernel`) before its first BLAS call.
public enum BLASKernelSelection {
    public static let environmentKey = "OPENBLAS_CORETYPE"
    /// Set in the re-executed process so that it never loops, and so it can report what happened.
    public static let reexecMarkerKey = "SWIFTBERT_BLAS_REEXEC"

    /// The best OpenBLAS 0.3.21 core type for the features of this CPU, or nil when the library's
    /// own choice is already right (no AVX2).
    public static func bestCoreType(features: CPUFeatures = .current) -> String? {
        if features.avx512f && features.avx512bw && features.avx512vl && features.avx512dq {
            return features.avx512bf16 ? "COOPERLAKE" : "SKYLAKEX"
        }
        if features.avx2 && features.fma { return "HASWELL" }
        return nil
    }

    /// What decided the kernel of this process.
    public enum Origin: Equatable, Sendable {
        /// The user set `OPENBLAS_CORETYPE`; it is never overridden.
        case user(String)
        /// This process re-executed itself with the core type chosen for the CPU.
        case selected(String)
        /// OpenBLAS chose by itself (no better core type is known for this CPU).
        case library
    }

    public static var origin: Origin {
        let env = ProcessInfo.processInfo.environment
        if let value = env[environmentKey], !value.isEmpty {
            return env[reexecMarkerKey] == value ? .selected(value) : .user(value)
        }
        return .library
    }

    /// Re-executes the current process with `OPENBLAS_CORETYPE` set to the best core type when the
    /// variable is unset. Returns normally when nothing needs to change or re-execution failed
    /// (the process then runs on the library's own choice, which `doctor` reports).
    public static func ensureBestKernel() {
        let env = ProcessInfo.processInfo.environment
        if let value = env[environmentKey], !value.isEmpty { return }
        if env[reexecMarkerKey] != nil { return }
        guard let coreType = bestCoreType() else { return }
        setenv(environmentKey, coreType, 1)
        setenv(reexecMarkerKey, coreType, 1)
        let arguments = CommandLine.unsafeArgv
        execv("/proc/self/exe", arguments)
        // execv only returns on failure: undo, so that nothing claims a kernel that is not loaded.
        unsetenv(environmentKey)
        unsetenv(reexecMarkerKey)
    }
}
