/// Statistics of one split of a prepared data directory, with masking as the loader applies it.
public struct DatasetStatistics: Sendable {
    public var instances = 0
    /// Real tokens, [CLS] and [SEP] included (no padding).
    public var tokens = 0
    public var shortestSequence = Int.max
    public var longestSequence = 0
    /// Instances per NSP label.
    public var nspLabelCounts: [Int] = []
    /// What masking did over the instances examined.
    public var masking = MaskingCounts()
    /// Instances that went through masking (all, or the first `maskingSampleLimit`).
    public var maskedInstances = 0
    /// Tokens of the instances that went through masking.
    public var maskedInstanceTokens = 0

    public var meanSequenceLength: Double { instances == 0 ? 0 : Double(tokens) / Double(instances) }
    /// Predicted tokens over all tokens of the masked instances.
    public var maskRate: Double { maskedInstanceTokens == 0 ? 0 : Double(masking.predicted) / Double(maskedInstanceTokens) }

    /// Reads every instance of `dataset`; masks up to `maskingSampleLimit` of them as epoch `epoch`
    /// with `seed` would.
    public init(dataset: PretrainingDataset, seed: UInt64, epoch: Int = 0, maskingSampleLimit: Int = 200_000) throws {
        let labelCount = max(1, dataset.manifest.instances.nextSentenceMode.classCount)
        nspLabelCounts = Array(repeating: 0, count: labelCount)
        for shard in dataset.shards {
            for i in 0..<shard.instanceCount {
                let length = Int(shard.offsets[i + 1] - shard.offsets[i])
                tokens += length
                shortestSequence = min(shortestSequence, length)
                longestSequence = max(longestSequence, length)
                let label = Int(shard.nspLabels[i])
                if label >= nspLabelCounts.count { nspLabelCounts += Array(repeating: 0, count: label + 1 - nspLabelCounts.count) }
                nspLabelCounts[label] += 1
            }
            instances += shard.instanceCount
        }
        if instances == 0 { shortestSequence = 0 }
        // Causal LM data is not masked.
        let limit = dataset.manifest.objective == .mlm ? min(instances, maskingSampleLimit) : 0
        let batchSize = 256
        var start = 0
        while start < limit {
            let indices = Array(start..<min(limit, start + batchSize))
            let batch = try dataset.batch(sampleIndices: indices, epoch: epoch, seed: seed, counts: &masking)
            for value in batch.attentionMask { maskedInstanceTokens += Int(value) }
            maskedInstances += indices.count
            start += batchSize
        }
    }
}
