import Kernels

/// The global sample order: a pure function of (seed, epoch), independent of world size and rank.
///
/// Epoch `e` visits the samples in the order of a pseudo-random permutation of `0..<sampleCount`
/// (a keyed Feistel network with cycle walking, so no O(N) table is built and any position can be
/// computed directly). Step `s` of the epoch takes positions `s*G ..< (s+1)*G` of that order, G the
/// global batch size. The last global batch of an epoch holds the remaining `sampleCount % G`
/// samples when that is not zero: nothing is dropped and nothing repeated, so every sample is used
/// exactly once per epoch (the loss is normalised by the global counts, so a smaller last batch
/// needs no special case in the trainer; ranks may get an empty share of it).
public struct Sampler: Sendable, Equatable {
    public let sampleCount: Int
    public let globalBatchSize: Int
    public let seed: UInt64

    public init(sampleCount: Int, globalBatchSize: Int, seed: UInt64) {
        precondition(sampleCount >= 0 && globalBatchSize >= 1)
        self.sampleCount = sampleCount
        self.globalBatchSize = globalBatchSize
        self.seed = seed
        var bits = 0
        while (1 << bits) < sampleCount { bits += 1 }
        halfBits = max(1, (bits + 1) / 2)
    }

    private let halfBits: Int

    /// Global steps in one epoch, the last one possibly smaller.
    public var stepsPerEpoch: Int { (sampleCount + globalBatchSize - 1) / globalBatchSize }

    /// Samples in the global batch of `step` (equal to `globalBatchSize` except maybe the last).
    public func batchSize(step: Int) -> Int {
        max(0, min(globalBatchSize, sampleCount - step * globalBatchSize))
    }

    /// Global sample indices of the global batch at `step` of `epoch`.
    public func globalBatch(epoch: Int, step: Int) -> [Int] {
        precondition(step >= 0 && step < stepsPerEpoch, "step \(step) outside 0..<\(stepsPerEpoch)")
        let generator = Philox(seed: seed, 0x5A4D_504C_4552, UInt64(epoch))
        let start = step * globalBatchSize
        return (start..<(start + batchSize(step: step))).map { permuted($0, generator) }
    }

    /// The sample at `position` of the order of `epoch`.
    public func sampleIndex(epoch: Int, position: Int) -> Int {
        permuted(position, Philox(seed: seed, 0x5A4D_504C_4552, UInt64(epoch)))
    }

    /// Rank `rank`'s contiguous share of a global batch: positions `len*r/W ..< len*(r+1)/W`, so the
    /// shares tile the batch with sizes differing by at most one and never overlap.
    public func share(of batch: [Int], rank: Int, worldSize: Int) -> ArraySlice<Int> {
        precondition(worldSize >= 1 && rank >= 0 && rank < worldSize)
        let count = batch.count
        return batch[(count * rank / worldSize)..<(count * (rank + 1) / worldSize)]
    }

    /// Bijection of `0..<sampleCount`: a 6-round balanced Feistel network over 2 * halfBits bits,
    /// re-applied while the value falls outside the range (cycle walking keeps it a bijection).
    private func permuted(_ position: Int, _ generator: Philox) -> Int {
        precondition(position >= 0 && position < sampleCount)
        let mask = (UInt64(1) << UInt64(halfBits)) - 1
        var x = UInt64(position)
        repeat {
            var left = x >> UInt64(halfBits), right = x & mask
            for round in 0..<6 {
                let f = UInt64(generator.uint32(at: UInt64(round) << 40 | right))
                    | UInt64(generator.uint32(at: UInt64(round + 8) << 40 | right)) << 32
                (left, right) = (right, (left ^ f) & mask)
            }
            x = left << UInt64(halfBits) | right
        } while x >= UInt64(sampleCount)
        return Int(x)
    }
}
