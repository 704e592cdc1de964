import Dispatch

/// Checks of the collectives as they run in this job: results against sums computed from each rank's
/// known input, and all-reduce bandwidth. Used by `swiftbert doctor --verify` and the MPI tests.
public enum CollectiveCheck {
    /// Rank r's input at index i: small integers, so every float sum over ranks is exact.
    @inline(__always)
    static func input(rank: Int, index: Int) -> Float {
        Float((index &* 7 &+ rank &* 13) % 1000) - 250
    }

    static func expectedSum(ranks: Int, index: Int) -> Float {
        var sum = 0.0
        for rank in 0..<ranks { sum += Double(input(rank: rank, index: index)) }
        return Float(sum)
    }

    /// Runs all-reduce (blocking and started), broadcast and all-gather on buffers
    /// of each of `counts` elements and returns a description of every wrong result (empty when all
    /// are right). A collective: every rank calls it with the same counts.
    public static func verify(_ comm: Communicator, counts: [Int]) throws -> [String] {
        var problems: [String] = []
        func report(_ name: String, _ count: Int, _ index: Int?) {
            if let index { problems.append("rank \(comm.rank): \(name) of \(count) elements wrong at index \(index)") }
        }
        let ranks = comm.size
        for count in counts {
            var buffer = (0..<count).map { input(rank: comm.rank, index: $0) }
            try comm.allReduceSum(&buffer)
            report("allReduce", count, (0..<count).first { buffer[$0] != expectedSum(ranks: ranks, index: $0) })

            buffer = (0..<count).map { input(rank: comm.rank, index: $0) }
            try buffer.withUnsafeMutableBufferPointer { try comm.startAllReduceSum($0).wait() }
            report("started allReduce", count, (0..<count).first { buffer[$0] != expectedSum(ranks: ranks, index: $0) })

            let root = count % ranks
            buffer = (0..<count).map { input(rank: comm.rank, index: $0) }
            try comm.broadcast(&buffer, root: root)
            report("broadcast", count, (0..<count).first { buffer[$0] != input(rank: root, index: $0) })

            let send = (0..<count).map { input(rank: comm.rank, index: $0) }
            var gathered = [Float](repeating: .nan, count: count * ranks)
            try send.withUnsafeBufferPointer { send in
                try gathered.withUnsafeMutableBufferPointer { try comm.allGather(send, into: $0) }
            }
            report("allGather", count, (0..<(count * ranks)).first {
                gathered[$0] != input(rank: $0 / count, index: $0 % count)
            })
        }
        return problems
    }

    /// All-reduce bus bandwidth in GB/s for a message of `bytes` (NCCL's definition: algorithm
    /// bandwidth times 2(n-1)/n, comparable across rank counts); the median over repetitions.
    /// A collective. Nil for a single rank, where nothing crosses a link.
    public static func allReduceBusBandwidth(_ comm: Communicator, bytes: Int, repetitions: Int = 9) throws -> Double? {
        guard comm.size > 1 else { return nil }
        var buffer = [Float](repeating: 1, count: max(1, bytes / 4))
        var times: [Double] = []
        try comm.barrier()
        for repetition in 0...repetitions {
            let start = DispatchTime.now().uptimeNanoseconds
            try comm.allReduceSum(&buffer)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if repetition > 0 { times.append(seconds) }
        }
        // Every rank reports rank 0's timing: the slowest rank decides a collective's time anyway.
        var median = [times.sorted()[times.count / 2]]
        try comm.broadcast(&median, root: 0)
        let n = Double(comm.size)
        return Double(buffer.count * 4) / median[0] * 2 * (n - 1) / n / 1e9
    }
}
