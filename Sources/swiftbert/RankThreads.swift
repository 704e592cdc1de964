import Distributed
import Kernels

/// How many threads each rank of an MPI job runs: the host's cores shared among the ranks placed on
/// it, and no more than the CPUs the launcher bound the rank to. Sets OpenBLAS's threads and the
/// element-wise workers to that count.
struct RankThreads {
    let layout: HostLayout
    let count: Int

    init(_ comm: MPICommunicator) throws {
        layout = try HostLayout.gather(comm, hostname: try comm.processorName())
        count = layout.threadsPerRank(cores: CPUFeatures.onlineCoreCount, allowedCores: CPUFeatures.allowedCoreCount)
        BLASRuntime.setThreadCount(count)
        Parallel.workerCount = count
    }

    var summary: String { "ranks: \(layout.summary); \(count) thread\(count == 1 ? "" : "s") per rank, OpenBLAS \(BLASRuntime.coreName)" }

    /// More threads than cores on this host, or nil.
    var oversubscription: String? {
        guard layout.localSize * count > CPUFeatures.onlineCoreCount else { return nil }
        return "\(layout.localSize) ranks x \(count) thread\(count == 1 ? "" : "s") exceed the "
            + "\(CPUFeatures.onlineCoreCount) cores of this host (oversubscribed: expect slow steps)"
    }
}
