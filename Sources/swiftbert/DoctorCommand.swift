import ArgumentParser
import Distributed
import Foundation
import Kernels

/// `swiftbert doctor`: what this job runs on, how fast it is, and what is wrong with it.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report the toolchain, MPI, OpenBLAS kernel, GEMM speed and all-reduce bandwidth.",
        discussion: """
            Runs standalone or under mpirun (`mpirun -np 2 swiftbert doctor`); only rank 0 prints. \
            With --verify it also checks GEMM results against a double-precision reference on the \
            kernel in use and every collective's results across the ranks, and exits non-zero on \
            any wrong result.
            """)

    @Flag(help: "Check GEMM and collective results, not only speed.")
    var verify = false

    @Option(help: "Square matrix size for the SGEMM speed measurement.")
    var gemmSize = 1024

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Option(help: ArgumentHelp("Make this rank fail before the checks (tests the failure path).", visibility: .hidden))
    var failRank: Int?

    func validate() throws {
        guard gemmSize >= 16 && gemmSize <= 8192 else {
            throw ValidationError("--gemm-size must be between 16 and 8192, got \(gemmSize)")
        }
    }

    func run() throws {
        let comm = try MPICommunicator.initialize(threadLevel: .multiple)
        let console = Console(rank: comm.rank, size: comm.size)
        do {
            try diagnose(comm, console)
            try comm.finalize()
        } catch {
            console.fail("\(error)")
            comm.abort(code: 1)
        }
    }

    private func diagnose(_ comm: MPICommunicator, _ console: Console) throws {
        let rankThreads = try RankThreads(comm)
        let layout = rankThreads.layout, threads = rankThreads.count
        let cores = CPUFeatures.onlineCoreCount
        if let failRank, failRank == comm.rank {
            console.fail("failing on purpose (--fail-rank \(failRank))")
            Foundation.exit(3)
        }

        // Ranks measure one after another, so that each figure is a rank's own, uncontended; the
        // others wait in a barrier that sleeps instead of polling.
        var gflops = [Double](repeating: 0, count: comm.size)
        for rank in 0..<comm.size {
            try comm.quietBarrier()
            if rank == comm.rank { gflops[rank] = GEMMCheck.measureGFLOPS(size: gemmSize) }
        }
        try comm.quietBarrier()
        try comm.allReduceSum(&gflops)

        var bandwidths: [(bytes: Int, gbps: Double?)] = []
        for bytes in [4 << 10, 1 << 20, 16 << 20, 64 << 20] {
            bandwidths.append((bytes, try CollectiveCheck.allReduceBusBandwidth(comm, bytes: bytes)))
        }

        var problems: [String] = []
        var gemmCases = 0
        if verify {
            let report = GEMMCheck.verify()
            gemmCases = report.caseCount
            problems += report.mismatches.map { "rank \(comm.rank): GEMM \($0)" }
            problems += try CollectiveCheck.verify(comm, counts: [0, 1, 7, 1_000_003, 16 << 20])
            var count = [Int64(problems.count)]
            try comm.allReduceSum(&count)
            if count[0] > 0 && problems.isEmpty {
                problems.append("other ranks reported \(count[0]) wrong results")
            }
        }
        // Problems are printed by the rank that found them; rank 0 summarises.
        for problem in problems { console.fail(problem) }

        var totalProblems = [Int64(problems.count)]
        try comm.allReduceSum(&totalProblems)

        let report = DoctorReport(
            swift: Self.swiftVersion, build: Self.buildConfiguration,
            mpi: try comm.libraryVersion().split(separator: "\n").first.map(String.init) ?? "unknown",
            threadLevel: comm.threadLevel.description, ranks: comm.size, hosts: layout.hosts,
            layout: layout.summary, cores: cores,
            openBLASVersion: BLASRuntime.version, openBLASCore: BLASRuntime.coreName,
            openBLASCoreOrigin: Self.describe(BLASKernelSelection.origin), threadsPerRank: BLASRuntime.threadCount,
            sgemmGFLOPS: gflops, gemmSize: gemmSize,
            allReduceBusBandwidthGBps: bandwidths.map { .init(bytes: $0.bytes, gbps: $0.gbps) },
            verified: verify ? (totalProblems[0] == 0) : nil, gemmCasesChecked: gemmCases,
            warnings: warnings(layout: layout, threads: threads, cores: cores))
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            console.say(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            console.say(report.text)
            for warning in report.warnings { console.warn(warning) }
        }
        if totalProblems[0] > 0 {
            throw DoctorFailure(count: Int(totalProblems[0]))
        }
    }

    struct DoctorFailure: Error, CustomStringConvertible {
        let count: Int
        var description: String { "\(count) wrong results (see the lines above)" }
    }

    private func warnings(layout: HostLayout, threads: Int, cores: Int) -> [String] {
        var warnings: [String] = []
        if BLASRuntime.isGenericKernel {
            warnings.append(
                "OpenBLAS runs its generic \(BLASRuntime.coreName) kernels, several times slower than this "
                    + "CPU's own; unset OPENBLAS_CORETYPE or set it to \(BLASKernelSelection.bestCoreType() ?? "the CPU's type")")
        }
        if case .user(let value) = BLASKernelSelection.origin,
            let best = BLASKernelSelection.bestCoreType(), value.uppercased() != best
        {
            warnings.append("OPENBLAS_CORETYPE=\(value) was set by the user; \(best) is the best kernel for this CPU")
        }
        if layout.localSize > cores {
            warnings.append(
                "\(layout.localSize) ranks share \(cores) cores on \(layout.hostOfRank[layout.rank]) "
                    + "(oversubscribed): each rank gets less than a core, steps will be slow")
        } else if layout.localSize * threads > cores {
            warnings.append("\(layout.localSize) ranks x \(threads) threads exceed the \(cores) cores of this host")
        }
        return warnings
    }

    static func describe(_ origin: BLASKernelSelection.Origin) -> String {
        switch origin {
        case .user(let value): return "OPENBLAS_CORETYPE=\(value), set by the user"
        case .selected(let value): return "OPENBLAS_CORETYPE=\(value), selected for this CPU"
        case .library: return "chosen by OpenBLAS"
        }
    }

    static var swiftVersion: String {
        #if compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1)
        return "6.1"
        #elseif compiler(>=6.0)
        return "6.0"
        #else
        return "5.x"
        #endif
    }

    static var buildConfiguration: String {
        #if DEBUG
        return "debug"
        #else
        return "release"
        #endif
    }
}

/// The report; its JSON keys are snake_case like those of `bench --json` and `metrics.jsonl`, and a
/// quantity both print has the same key (`openblas_core`, `threads_per_rank`).
struct DoctorReport: Encodable {
    struct Bandwidth: Encodable {
        let bytes: Int
        let gbps: Double?
    }

    let swift: String
    let build: String
    let mpi: String
    let threadLevel: String
    let ranks: Int
    let hosts: [String]
    let layout: String
    let cores: Int
    let openBLASVersion: String
    let openBLASCore: String
    let openBLASCoreOrigin: String
    let threadsPerRank: Int
    let sgemmGFLOPS: [Double]
    let gemmSize: Int
    let allReduceBusBandwidthGBps: [Bandwidth]
    let verified: Bool?
    let gemmCasesChecked: Int
    let warnings: [String]

    enum CodingKeys: String, CodingKey {
        case swift, build, mpi, ranks, hosts, layout, cores, verified, warnings
        case threadLevel = "thread_level"
        case openBLASVersion = "openblas_version"
        case openBLASCore = "openblas_core"
        case openBLASCoreOrigin = "openblas_core_origin"
        case threadsPerRank = "threads_per_rank"
        case sgemmGFLOPS = "sgemm_gflops"
        case gemmSize = "gemm_size"
        case allReduceBusBandwidthGBps = "all_reduce_bus_bandwidth_gbps"
        case gemmCasesChecked = "gemm_cases_checked"
    }

    var text: String {
        func bytes(_ count: Int) -> String {
            count >= 1 << 20 ? "\(count >> 20) MiB" : "\(count >> 10) KiB"
        }
        let gemm = sgemmGFLOPS.enumerated()
            .map { "rank \($0.offset) \(String(format: "%.1f", $0.element))" }.joined(separator: ", ")
        let bandwidth = allReduceBusBandwidthGBps.map { entry in
            "\(bytes(entry.bytes)) " + (entry.gbps.map { String(format: "%.2f", $0) } ?? "n/a")
        }.joined(separator: ", ")
        var lines = [
            "SwiftBERT doctor",
            "  swift          \(swift) (\(build) build)",
            "  mpi            \(mpi)",
            "  thread level   \(threadLevel)",
            "  ranks          \(ranks) on \(hosts.count) host\(hosts.count == 1 ? "" : "s"): \(layout)",
            "  cores          \(cores) on this host",
            "  openblas       \(openBLASVersion), kernel \(openBLASCore) (\(openBLASCoreOrigin)), \(threadsPerRank) thread\(threadsPerRank == 1 ? "" : "s") per rank",
            "  sgemm          \(gemm) GFLOP/s (\(gemmSize)x\(gemmSize), one rank at a time)",
            "  all-reduce     bus bandwidth GB/s: \(ranks > 1 ? bandwidth : "n/a (one rank)")",
        ]
        if let verified {
            lines.append("  verify         " + (verified
                ? "GEMM (\(gemmCasesChecked) cases) and collectives correct on every rank"
                : "WRONG RESULTS (see errors above)"))
        }
        return lines.joined(separator: "\n")
    }
}
