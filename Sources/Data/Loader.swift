import Foundation
import Kernels

/// One micro-batch of pretraining sequences, masking already applied.
public struct PretrainingBatch: Sendable {
    public var sequenceCount: Int            // B
    public var sequenceLength: Int           // T (max_seq_length; padded)
    public var inputIDs: [Int32]             // [B, T], after masking, padded with [PAD]
    public var tokenTypeIDs: [Int32]         // [B, T], 0 for segment A, 1 for B (0 on padding)
    public var attentionMask: [Int32]        // [B, T], 1 real token, 0 padding
    public var maskedPositions: [Int32]      // flat positions b*T + t of every masked token, batch order
    public var maskedLabels: [Int32]         // original token id at each masked position
    public var nspLabels: [Int32]            // [B]; binary: 0 next, 1 random; three-way: 0 next, 1 same doc not next, 2 other doc
    public var sampleIndices: [Int]          // [B] global sample index of each sequence (keys dropout RNG)

    public init(sequenceCount: Int, sequenceLength: Int, inputIDs: [Int32], tokenTypeIDs: [Int32],
                attentionMask: [Int32], maskedPositions: [Int32], maskedLabels: [Int32], nspLabels: [Int32],
                sampleIndices: [Int]) {
        self.sequenceCount = sequenceCount
        self.sequenceLength = sequenceLength
        self.inputIDs = inputIDs
        self.tokenTypeIDs = tokenTypeIDs
        self.attentionMask = attentionMask
        self.maskedPositions = maskedPositions
        self.maskedLabels = maskedLabels
        self.nspLabels = nspLabels
        self.sampleIndices = sampleIndices
    }
}

/// One split of a prepared data directory, memory-mapped, with masking applied at load time.
///
/// Global sample index `i` is instance `i` of the split in shard order (shards in manifest order).
/// Causal LM data (`manifest.objective`) opens the same way; its sequences are read with
/// `location(of:)` and `Shard.tokens(of:)`, since `batch` builds masked MLM batches only.
/// Opening checks the manifest, each shard's header and size, and that the shards agree with the
/// manifest and with `expectedVocabularyFingerprint`; `verifyChecksums()` reads everything; `batch`
/// checks the values of each record it reads.
public final class PretrainingDataset: @unchecked Sendable {
    public let directory: String
    public let split: DataSplit
    public let manifest: DatasetManifest
    public let shards: [Shard]
    /// Masking used by `batch(...)`; the manifest's settings unless replaced.
    public var masker: Masker
    private let shardStarts: [Int]

    /// Number of instances (samples) in the split.
    public let count: Int
    /// T: the padded sequence length of every batch.
    public var sequenceLength: Int { manifest.instances.maxSequenceLength }

    public init(directory: String, split: DataSplit = .train, expectedVocabularyFingerprint: String? = nil) throws {
        self.directory = directory
        self.split = split
        manifest = try DatasetManifest.load(directory: directory)
        let manifestPath = (directory as NSString).appendingPathComponent(DatasetManifest.fileName)
        if let expected = expectedVocabularyFingerprint, expected != manifest.vocabulary.fingerprint {
            throw DataError.vocabularyMismatch(path: manifestPath, expected: expected, found: manifest.vocabulary.fingerprint)
        }
        var shards: [Shard] = []
        var starts: [Int] = []
        var total = 0
        for info in manifest.split(split).shards {
            let path = (directory as NSString).appendingPathComponent(info.file)
            let shard = try Shard(
                path: path, expectedVocabularyFingerprint: manifest.vocabulary.fingerprint, objective: manifest.objective)
            guard shard.header.instanceCount == info.instances, shard.header.tokenCount == info.tokens,
                  hexString(shard.header.payloadSHA256) == info.sha256,
                  shard.header.sequenceLength == manifest.instances.maxSequenceLength else {
                throw DataError.invalidShard(
                    path: path, reason: "its header does not match \(manifestPath) (a shard from another preparation?)")
            }
            starts.append(total)
            total += shard.instanceCount
            shards.append(shard)
        }
        starts.append(total)
        self.shards = shards
        shardStarts = starts
        count = total
        masker = Masker(settings: manifest.masking, maskID: manifest.vocabulary.maskID,
                        vocabularySize: manifest.vocabulary.size)
    }

    /// Reads every shard and compares its payload with the SHA-256 in its header.
    public func verifyChecksums() throws {
        for shard in shards { try shard.verifyChecksum() }
    }

    /// The shard and local index of global sample `index`.
    @inline(__always)
    public func location(of index: Int) -> (shard: Shard, local: Int) {
        precondition(index >= 0 && index < count, "sample \(index) outside 0..<\(count)")
        var low = 0, high = shards.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if shardStarts[mid] <= index { low = mid } else { high = mid - 1 }
        }
        return (shards[low], index - shardStarts[low])
    }

    /// The RNG that masks sample `sampleIndex` in `epoch`: keyed only by these and the seed.
    public static func maskingGenerator(seed: UInt64, epoch: Int, sampleIndex: Int) -> Philox {
        Philox(seed: seed, UInt64(epoch), UInt64(sampleIndex))
    }

    /// Builds the batch of `sampleIndices`, masked for `epoch` with `seed`. Throws, naming the shard
    /// and record, when a record holds an id outside the vocabulary or an unknown NSP label.
    public func batch(sampleIndices: [Int], epoch: Int, seed: UInt64) throws -> PretrainingBatch {
        var counts = MaskingCounts()
        return try batch(sampleIndices: sampleIndices, epoch: epoch, seed: seed, counts: &counts)
    }

    /// As `batch(sampleIndices:epoch:seed:)`, adding what masking did to `counts`.
    public func batch(sampleIndices: [Int], epoch: Int, seed: UInt64, counts: inout MaskingCounts) throws -> PretrainingBatch {
        guard manifest.objective == .mlm else {
            throw DataError.invalidSetting(
                name: directory,
                reason: "the data is \(manifest.objective.rawValue), not mlm; masked batches need data prepared with --objective mlm")
        }
        let B = sampleIndices.count, T = sequenceLength
        var inputIDs = [Int32](repeating: manifest.vocabulary.padID, count: B * T)
        var tokenTypeIDs = [Int32](repeating: 0, count: B * T)
        var attentionMask = [Int32](repeating: 0, count: B * T)
        var positions: [Int32] = [], labels: [Int32] = []
        positions.reserveCapacity(B * masker.settings.maxPredictionsPerSequence)
        labels.reserveCapacity(B * masker.settings.maxPredictionsPerSequence)
        var nspLabels = [Int32](repeating: 0, count: B)
        var scratch = Masker.Scratch()
        // Without NSP the stored label is 0.
        let nspLabelCount = max(1, manifest.instances.nextSentenceMode.classCount)
        try inputIDs.withUnsafeMutableBufferPointer { ids in
            for (b, index) in sampleIndices.enumerated() {
                let (shard, local) = location(of: index)
                try shard.checkRecord(local, vocabularySize: manifest.vocabulary.size, nspLabelCount: nspLabelCount)
                let tokens = shard.tokens(of: local)
                let n = tokens.count
                let aLength = Int(shard.segmentALengths[local])
                counts += masker.mask(
                    inputIDs: ids.baseAddress! + b * T, positions: &positions, labels: &labels,
                    tokens: tokens, segmentALength: aLength,
                    random: PretrainingDataset.maskingGenerator(seed: seed, epoch: epoch, sampleIndex: index),
                    positionOffset: b * T, scratch: &scratch)
                for t in 0..<n { attentionMask[b * T + t] = 1 }
                for t in (aLength + 2)..<n { tokenTypeIDs[b * T + t] = 1 }
                nspLabels[b] = Int32(shard.nspLabels[local])
            }
        }
        return PretrainingBatch(
            sequenceCount: B, sequenceLength: T, inputIDs: inputIDs, tokenTypeIDs: tokenTypeIDs,
            attentionMask: attentionMask, maskedPositions: positions, maskedLabels: labels,
            nspLabels: nspLabels, sampleIndices: sampleIndices)
    }
}

func hexString(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Produces items `0..<count` in order on a background thread, at most `depth` ahead of the
/// consumer, so the trainer does not wait on data while the next micro-batches are read and masked.
public final class Prefetcher<Element>: @unchecked Sendable {
    /// Shared with the background thread, which must not reference the prefetcher itself: the
    /// prefetcher's deinit waits for the thread.
    private final class State: @unchecked Sendable {
        let condition = NSCondition()
        var ready: [Int: Result<Element, Error>] = [:]
        var nextToConsume = 0
        var cancelled = false
        var running = true
    }

    private let state = State()
    private let count: Int

    /// Starts producing at once; `produce(i)` runs on the background thread, in order of `i`.
    public init(count: Int, depth: Int = 2, produce: @escaping (Int) throws -> Element) {
        precondition(depth >= 1)
        self.count = count
        let state = self.state
        let thread = Thread {
            for i in 0..<count {
                state.condition.lock()
                while !state.cancelled && i - state.nextToConsume >= depth { state.condition.wait() }
                let stop = state.cancelled
                state.condition.unlock()
                if stop { break }
                let result = Result { try produce(i) }
                state.condition.lock()
                state.ready[i] = result
                state.condition.broadcast()
                state.condition.unlock()
            }
            state.condition.lock()
            state.running = false
            state.condition.broadcast()
            state.condition.unlock()
        }
        thread.name = "swiftbert.prefetch"
        thread.start()
    }

    deinit { cancel() }

    /// The next item in order, waiting for it if needed; nil after the last one.
    public func next() throws -> Element? {
        state.condition.lock()
        defer { state.condition.unlock() }
        guard state.nextToConsume < count, !state.cancelled else { return nil }
        while state.ready[state.nextToConsume] == nil { state.condition.wait() }
        let result = state.ready.removeValue(forKey: state.nextToConsume)!
        state.nextToConsume += 1
        state.condition.broadcast()
        return try result.get()
    }

    /// Stops the background thread after its current item and waits for it to end.
    public func cancel() {
        state.condition.lock()
        state.cancelled = true
        state.condition.broadcast()
        while state.running { state.condition.wait() }
        state.condition.unlock()
    }
}
