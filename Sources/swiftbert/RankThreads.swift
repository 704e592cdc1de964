import ArgumentParser
import Dispatch
import Distributed
import Kernels
import Training

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

/// Runs `body` as this process's rank of the MPI job, threads set up (and announced when `announce`).
/// A `CollectiveError` (every rank reaches it at the same point) is reported once, by rank 0, and all
/// ranks end MPI normally; should a rank not get there, the job is aborted after a grace period
/// instead of hanging. Any other error is this rank's alone: it is printed with the rank and the job
/// is aborted at once, so that ranks waiting for this one in a collective end within seconds, not
/// when their watchdog fires.
func runOnRanks(announce: Bool, _ body: (MPICommunicator, Console) throws -> Void) throws {
    let comm = try MPICommunicator.initialize(threadLevel: .multiple)
    let console = Console(rank: comm.rank, size: comm.size)
    do {
        let threads = try RankThreads(comm)
        if announce { console.say(threads.summary) }
        if let warning = threads.oversubscription { console.warn(warning) }
        try body(comm, console)
        try comm.finalize()
    } catch let error as CollectiveError {
        if comm.rank == 0 { Console.standalone.fail("\(error)") }
        DispatchQueue.global().asyncAfter(deadline: .now() + 30) { comm.abort(code: 1) }
        try? comm.finalize()
        throw ExitCode.failure
    } catch {
        console.fail("\(error)")
        if comm.size > 1 { comm.abort(code: 1) }
        throw ExitCode.failure
    }
}
