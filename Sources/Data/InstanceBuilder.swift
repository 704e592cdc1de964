/// How next-sentence prediction pairs are made.
public enum NextSentenceMode: String, Codable, CaseIterable, Sendable {
    /// Google's BERT: B is the actual next segment (label 0) or, half the time, a segment of another
    /// document (label 1).
    case binary
    /// Three classes: next (0), same document but not next (1), another document (2), a third each.
    case threeWay = "three-way"
    /// No pairs: each instance is one run of contiguous sentences, `[CLS] A [SEP]`, label 0.
    case none

    /// Number of NSP classes the model needs (0 when there is no NSP head).
    public var classCount: Int {
        switch self {
        case .binary: return 2
        case .threeWay: return 3
        case .none: return 0
        }
    }
}

/// Settings of Google's `create_pretraining_data.py` that shape instances (masking is separate).
public struct InstanceSettings: Codable, Equatable, Sendable {
    public var maxSequenceLength: Int
    public var shortSequenceProbability: Double
    public var nextSentenceMode: NextSentenceMode

    public init(maxSequenceLength: Int = 128, shortSequenceProbability: Double = 0.1,
                nextSentenceMode: NextSentenceMode = .binary) {
        self.maxSequenceLength = maxSequenceLength
        self.shortSequenceProbability = shortSequenceProbability
        self.nextSentenceMode = nextSentenceMode
    }

    enum CodingKeys: String, CodingKey {
        case maxSequenceLength = "max_seq_length"
        case shortSequenceProbability = "short_seq_prob"
        case nextSentenceMode = "nsp_mode"
    }

    public func validate() throws {
        guard (5...65_535).contains(maxSequenceLength) else {
            throw DataError.invalidSetting(name: "--max-seq-length", reason: "must be in 5...65535, got \(maxSequenceLength)")
        }
        guard (0...1).contains(shortSequenceProbability) else {
            throw DataError.invalidSetting(name: "--short-seq-prob", reason: "must be in [0, 1], got \(shortSequenceProbability)")
        }
    }
}

/// One pretraining sequence before masking: `[CLS] A [SEP] B [SEP]` (or `[CLS] A [SEP]`), stored
/// tokens carrying the WordPiece continuation bit (see `ShardFormat`).
public struct TrainingInstance: Equatable, Sendable {
    public var tokens: [UInt32]
    /// Tokens in segment A, between [CLS] and the first [SEP].
    public var segmentALength: Int
    public var nspLabel: Int

    public init(tokens: [UInt32], segmentALength: Int, nspLabel: Int) {
        self.tokens = tokens
        self.segmentALength = segmentALength
        self.nspLabel = nspLabel
    }
}

/// A tokenized document: its sentences, each a non-empty list of stored tokens.
public typealias TokenizedDocument = [[UInt32]]

/// Google's `create_instances_from_document`, on token ids.
///
/// Chunks of contiguous sentences are gathered up to a target length (the maximum, or with
/// probability `short_seq_prob` a random shorter one), split at a random sentence boundary into A
/// and B, B replaced by a segment of another document for random-next pairs (the unused sentences
/// go back to the document), the pair truncated by `truncate_seq_pair` (from the longer side, front
/// or back at random) and wrapped as `[CLS] A [SEP] B [SEP]`.
///
/// "Another document" comes from `pool`: Google holds the whole corpus in memory; the streaming
/// `prepare` passes the documents of the current and the previous chunk instead (see `Preparer`).
public struct InstanceBuilder: Sendable {
    public let settings: InstanceSettings
    public let classifierID: UInt32
    public let separatorID: UInt32

    public init(settings: InstanceSettings, classifierID: Int32, separatorID: Int32) {
        self.settings = settings
        self.classifierID = UInt32(classifierID)
        self.separatorID = UInt32(separatorID)
    }

    /// Appends the instances of `pool[documentIndex]` to `output`. `pool` must hold at least one
    /// other non-empty document when the mode has NSP.
    public func appendInstances(
        of documentIndex: Int, pool: [TokenizedDocument], random rng: inout RandomStream,
        to output: inout [TrainingInstance]
    ) {
        let document = pool[documentIndex]
        let pairs = settings.nextSentenceMode != .none
        let maxTokenCount = settings.maxSequenceLength - (pairs ? 3 : 2)
        var targetLength = maxTokenCount
        if rng.uniformDouble() < settings.shortSequenceProbability {
            targetLength = rng.integer(in: 2...maxTokenCount)
        }

        var chunkStart = 0      // index in `document` of the first sentence of the chunk
        var chunkCount = 0
        var chunkLength = 0
        var i = 0
        while i < document.count {
            if chunkCount == 0 { chunkStart = i }
            chunkCount += 1
            chunkLength += document[i].count
            if i == document.count - 1 || chunkLength >= targetLength {
                if pairs {
                    i -= appendPair(
                        chunk: chunkStart..<(chunkStart + chunkCount), of: documentIndex, pool: pool,
                        targetLength: targetLength, maxTokenCount: maxTokenCount, random: &rng, to: &output)
                } else {
                    appendSingle(chunk: chunkStart..<(chunkStart + chunkCount), of: document,
                                 maxTokenCount: maxTokenCount, to: &output)
                }
                chunkCount = 0
                chunkLength = 0
            }
            i += 1
        }
    }

    /// Builds one pair from the chunk; returns the number of chunk sentences left unused (Google
    /// puts them back for random-next pairs).
    private func appendPair(
        chunk: Range<Int>, of documentIndex: Int, pool: [TokenizedDocument], targetLength: Int,
        maxTokenCount: Int, random rng: inout RandomStream, to output: inout [TrainingInstance]
    ) -> Int {
        let document = pool[documentIndex]
        let aEnd = chunk.count >= 2 ? chunk.lowerBound + rng.integer(in: 1...(chunk.count - 1)) : chunk.lowerBound + 1
        var a: [UInt32] = []
        for s in chunk.lowerBound..<aEnd { a.append(contentsOf: document[s]) }
        var b: [UInt32] = []

        // Label: 0 next, and for the other cases the mode's label for "random document" or
        // "same document, not next".
        var label = 0
        let draw = rng.uniformDouble()
        switch settings.nextSentenceMode {
        case .binary:
            if chunk.count == 1 || draw < 0.5 { label = 1 }
        case .threeWay:
            if draw < 1.0 / 3.0 {
                label = 2
            } else if draw < 2.0 / 3.0 || chunk.count == 1 {
                label = 1
            }
        case .none:
            break
        }
        let otherDocumentLabel = settings.nextSentenceMode == .binary ? 1 : 2
        var unused = 0
        if label == 1 && settings.nextSentenceMode == .threeWay {
            // B starts at a sentence of this document that is neither in A nor the true next one;
            // it stops before A if it starts ahead of it, so B never repeats A.
            let before = chunk.lowerBound           // starts 0..<before
            let after = max(0, document.count - (aEnd + 1))  // starts aEnd+1..<count
            if before + after == 0 {
                label = otherDocumentLabel
            } else {
                let pick = rng.integer(below: before + after)
                let start = pick < before ? pick : aEnd + 1 + (pick - before)
                let limit = pick < before ? before : document.count
                let targetB = targetLength - a.count
                for s in start..<limit {
                    b.append(contentsOf: document[s])
                    if b.count >= targetB { break }
                }
                unused = chunk.upperBound - aEnd
            }
        }
        if label == otherDocumentLabel {
            let targetB = targetLength - a.count
            var other = documentIndex
            for _ in 0..<10 {
                other = rng.integer(below: pool.count)
                if other != documentIndex && !pool[other].isEmpty { break }
            }
            if other == documentIndex || pool[other].isEmpty {
                // Ten misses happen only with a tiny pool; take the nearest other document.
                other = (1..<pool.count).lazy.map { (documentIndex + $0) % pool.count }
                    .first { !pool[$0].isEmpty } ?? documentIndex
            }
            let randomDocument = pool[other]
            let start = rng.integer(below: randomDocument.count)
            for s in start..<randomDocument.count {
                b.append(contentsOf: randomDocument[s])
                if b.count >= targetB { break }
            }
            unused = chunk.upperBound - aEnd
        } else if label == 0 {
            for s in aEnd..<chunk.upperBound { b.append(contentsOf: document[s]) }
        }

        var aRange = 0..<a.count, bRange = 0..<b.count
        truncatePair(&aRange, &bRange, maxTokenCount: maxTokenCount, random: &rng)
        var tokens: [UInt32] = []
        tokens.reserveCapacity(aRange.count + bRange.count + 3)
        tokens.append(classifierID)
        tokens.append(contentsOf: a[aRange])
        tokens.append(separatorID)
        tokens.append(contentsOf: b[bRange])
        tokens.append(separatorID)
        output.append(TrainingInstance(tokens: tokens, segmentALength: aRange.count, nspLabel: label))
        return unused
    }

    private func appendSingle(
        chunk: Range<Int>, of document: TokenizedDocument, maxTokenCount: Int,
        to output: inout [TrainingInstance]
    ) {
        var tokens: [UInt32] = [classifierID]
        for s in chunk { tokens.append(contentsOf: document[s]) }
        if tokens.count > maxTokenCount + 1 { tokens.removeLast(tokens.count - maxTokenCount - 1) }
        tokens.append(separatorID)
        output.append(TrainingInstance(tokens: tokens, segmentALength: tokens.count - 2, nspLabel: 0))
    }

    /// Google's `truncate_seq_pair`: shortens the longer segment by one token at a time, from the
    /// front or the back at random, until the pair fits. One random word gives 32 coin flips.
    func truncatePair(_ a: inout Range<Int>, _ b: inout Range<Int>, maxTokenCount: Int, random rng: inout RandomStream) {
        var coins: UInt32 = 0
        var coinsLeft = 0
        while a.count + b.count > maxTokenCount {
            if coinsLeft == 0 {
                coins = rng.nextWord()
                coinsLeft = 32
            }
            let fromFront = coins & 1 == 1
            coins >>= 1
            coinsLeft -= 1
            if a.count > b.count {
                a = fromFront ? (a.lowerBound + 1)..<a.upperBound : a.lowerBound..<(a.upperBound - 1)
            } else {
                b = fromFront ? (b.lowerBound + 1)..<b.upperBound : b.lowerBound..<(b.upperBound - 1)
            }
        }
    }
}
