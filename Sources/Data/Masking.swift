import Kernels

/// Masked-language-model settings (Google's `create_masked_lm_predictions`).
public struct MaskingSettings: Codable, Equatable, Sendable {
    /// Share of a sequence's tokens to predict (`masked_lm_prob`).
    public var maskedLMProbability: Double
    /// Cap on predictions per sequence (`max_predictions_per_seq`).
    public var maxPredictionsPerSequence: Int
    /// Mask whole words: a word's WordPieces are chosen together.
    public var wholeWordMasking: Bool

    public init(maskedLMProbability: Double = 0.15, maxPredictionsPerSequence: Int = 20, wholeWordMasking: Bool = false) {
        self.maskedLMProbability = maskedLMProbability
        self.maxPredictionsPerSequence = maxPredictionsPerSequence
        self.wholeWordMasking = wholeWordMasking
    }

    enum CodingKeys: String, CodingKey {
        case maskedLMProbability = "masked_lm_prob"
        case maxPredictionsPerSequence = "max_predictions_per_seq"
        case wholeWordMasking = "whole_word_masking"
    }

    public func validate() throws {
        guard maskedLMProbability > 0 && maskedLMProbability < 1 else {
            throw DataError.invalidSetting(name: "--masked-lm-prob", reason: "must be in (0, 1), got \(maskedLMProbability)")
        }
        guard maxPredictionsPerSequence >= 1 else {
            throw DataError.invalidSetting(name: "--max-predictions-per-seq", reason: "must be at least 1, got \(maxPredictionsPerSequence)")
        }
    }

    /// Google's `num_to_predict = min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))`,
    /// Python's round (half to even); `len(tokens)` counts [CLS] and [SEP].
    public func predictionCount(sequenceLength: Int) -> Int {
        let rounded = Int((Double(sequenceLength) * maskedLMProbability).rounded(.toNearestOrEven))
        return min(maxPredictionsPerSequence, max(1, rounded))
    }
}

/// What masking did to one or more sequences (for statistics).
public struct MaskingCounts: Equatable, Sendable {
    /// Tokens chosen for prediction.
    public var predicted = 0
    /// ... replaced by [MASK] (80%).
    public var replacedByMask = 0
    /// ... replaced by a random token (10%).
    public var replacedByRandom = 0
    /// ... left unchanged (10%).
    public var kept = 0

    public init() {}

    public static func += (a: inout MaskingCounts, b: MaskingCounts) {
        a.predicted += b.predicted
        a.replacedByMask += b.replacedByMask
        a.replacedByRandom += b.replacedByRandom
        a.kept += b.kept
    }
}

/// Applies masking to one stored instance with a counter-based RNG, so the result depends only on
/// (seed, epoch, sample index), never on the rank or micro-batch that reads the sample.
///
/// Candidates are all tokens but [CLS] and the [SEP]s (and padding, which is never stored). With
/// whole-word masking a WordPiece continuation (`##...`, the continuation bit of a stored token)
/// joins the candidate before it. The candidate groups are shuffled; groups are taken while they fit
/// in `predictionCount`, as Google does; each chosen token becomes [MASK] with probability 0.8, stays
/// with 0.1, and becomes a random token drawn from the whole vocabulary (specials included, as in
/// Google's code) with 0.1.
public struct Masker: Sendable {
    public let settings: MaskingSettings
    public let maskID: Int32
    public let vocabularySize: Int

    public init(settings: MaskingSettings, maskID: Int32, vocabularySize: Int) {
        self.settings = settings
        self.maskID = maskID
        self.vocabularySize = vocabularySize
    }

    /// Reusable buffers, so masking a batch does not allocate per sequence.
    public struct Scratch {
        var groupStarts: [Int32] = []
        var order: [Int32] = []
        var chosen: [(position: Int32, label: Int32)] = []
        public init() {}
    }

    /// Writes the masked ids of `tokens` to `inputIDs[0..<tokens.count]` and appends the masked
    /// positions (plus `positionOffset`, e.g. b*T) and original ids, in position order.
    ///
    /// - `tokens`: stored tokens, `[CLS] A [SEP] B [SEP]` or `[CLS] A [SEP]`.
    @discardableResult
    public func mask(
        inputIDs: UnsafeMutablePointer<Int32>, positions: inout [Int32], labels: inout [Int32],
        tokens: UnsafeBufferPointer<UInt32>, segmentALength: Int, random generator: Philox,
        positionOffset: Int = 0, scratch: inout Scratch
    ) -> MaskingCounts {
        let n = tokens.count
        for t in 0..<n { inputIDs[t] = Int32(bitPattern: tokens[t] & ShardFormat.tokenIDMask) }
        let firstSeparator = segmentALength + 1

        // Candidate groups: scratch.groupStarts[g] is the first position of group g; a group runs
        // to the next group's start, skipping the separator between A and B.
        scratch.groupStarts.removeAll(keepingCapacity: true)
        var previousWasCandidate = false
        for p in 1..<(n - 1) {
            if p == firstSeparator {
                previousWasCandidate = false
                continue
            }
            let continues = settings.wholeWordMasking && previousWasCandidate
                && tokens[p] & ShardFormat.continuationBit != 0
            if !continues { scratch.groupStarts.append(Int32(p)) }
            previousWasCandidate = true
        }
        let groupCount = scratch.groupStarts.count
        guard groupCount > 0 else { return MaskingCounts() }

        var rng = RandomStream(generator)
        scratch.order.removeAll(keepingCapacity: true)
        for g in 0..<groupCount { scratch.order.append(Int32(g)) }
        for g in stride(from: groupCount - 1, to: 0, by: -1) {
            let j = rng.integer(below: g + 1)
            scratch.order.swapAt(g, j)
        }

        let target = settings.predictionCount(sequenceLength: n)
        var counts = MaskingCounts()
        scratch.chosen.removeAll(keepingCapacity: true)
        for g in scratch.order {
            if counts.predicted >= target { break }
            let start = Int(scratch.groupStarts[Int(g)])
            var end = Int(g) + 1 < groupCount ? Int(scratch.groupStarts[Int(g) + 1]) : n - 1
            if start < firstSeparator && end > firstSeparator { end = firstSeparator }
            if counts.predicted + (end - start) > target { continue }
            for p in start..<end {
                let original = inputIDs[p]
                let draw = rng.uniform()
                if draw < 0.8 {
                    inputIDs[p] = maskID
                    counts.replacedByMask += 1
                } else if draw < 0.9 {
                    counts.kept += 1
                } else {
                    inputIDs[p] = Int32(rng.integer(below: vocabularySize))
                    counts.replacedByRandom += 1
                }
                counts.predicted += 1
                scratch.chosen.append((Int32(p), original))
            }
        }
        scratch.chosen.sort { $0.position < $1.position }
        for (position, label) in scratch.chosen {
            positions.append(position + Int32(positionOffset))
            labels.append(label)
        }
        return counts
    }
}
