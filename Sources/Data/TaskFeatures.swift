import Dispatch
import Foundation

// Examples to token ids as Hugging Face's tokenizer call makes them (`tokenizer(a, b, truncation=True,
// max_length=...)` on `BertTokenizerFast`), and batches of them padded to their longest sequence.

/// One encoded sequence: `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`.
public struct EncodedSequence: Equatable, Sendable {
    /// Token ids, [sequenceLength].
    public var inputIDs: [Int32]
    /// 0 for [CLS] A [SEP], 1 for B [SEP]; [sequenceLength].
    public var tokenTypeIDs: [Int32]

    public init(inputIDs: [Int32], tokenTypeIDs: [Int32]) {
        self.inputIDs = inputIDs
        self.tokenTypeIDs = tokenTypeIDs
    }
}

/// The model input of one example.
public struct TaskFeature: Equatable, Sendable {
    /// The line of the data file the example starts on.
    public var line: Int
    /// One sequence, or one per choice of a multiple-choice question.
    public var sequences: [EncodedSequence]
    public var label: TaskLabel?
    /// Token classification: per token, the index of its word, -1 for [CLS] and [SEP]; [sequenceLength].
    public var wordIDs: [Int32]
    /// Token classification: per token, the word's tag on its first WordPiece, -100 elsewhere (and
    /// everywhere when the example has no tags); [sequenceLength].
    public var tokenLabels: [Int32]

    public init(line: Int, sequences: [EncodedSequence], label: TaskLabel? = nil, wordIDs: [Int32] = [],
                tokenLabels: [Int32] = []) {
        self.line = line
        self.sequences = sequences
        self.label = label
        self.wordIDs = wordIDs
        self.tokenLabels = tokenLabels
    }
}

/// The label that loss functions skip (PyTorch's `ignore_index`).
public let ignoredLabel: Int32 = -100

/// Encodes examples with a BERT tokenizer into `TaskFeature`s, on `workerCount` threads.
public struct TaskEncoder: Sendable {
    public let tokenizer: BertTokenizer
    /// Tokens per sequence, [CLS] and [SEP] included.
    public let maxLength: Int
    /// Threads for `features(_:)`: all cores by default; a rank that shares its node with others
    /// passes its share, as `prepare` does.
    public let workerCount: Int

    public init(tokenizer: BertTokenizer, maxLength: Int,
                workerCount: Int = ProcessInfo.processInfo.activeProcessorCount) throws {
        guard maxLength >= 3 else {
            throw DataError.invalidSetting(name: "max_length", reason: "\(maxLength) leaves no room for a text "
                                               + "beside [CLS] and [SEP]; give at least 3")
        }
        self.tokenizer = tokenizer
        self.maxLength = maxLength
        self.workerCount = max(1, workerCount)
    }

    /// `[CLS] text [SEP]`, or `[CLS] text [SEP] pair [SEP]`, truncated to `maxLength`. An empty
    /// `pair` is no pair, as in Hugging Face (which tests the string's truth value).
    public func encode(_ text: String, pair: String? = nil) -> EncodedSequence {
        var first = tokenizer.encode(text)
        guard let pair, !pair.isEmpty else {
            if first.count > maxLength - 2 { first.removeSubrange((maxLength - 2)...) }
            return assemble(first, nil)
        }
        var second = tokenizer.encode(pair)
        let (firstCount, secondCount) = Self.longestFirstLengths(first.count, second.count, budget: maxLength - 3)
        first.removeSubrange(firstCount...)
        second.removeSubrange(secondCount...)
        return assemble(first, second)
    }

    /// The lengths that Hugging Face's `longest_first` truncation keeps of a pair, as the Rust
    /// `tokenizers` library (behind every fast tokenizer) computes them: when only the longer text
    /// is over budget it loses what is needed; when both are, they get `budget / 2` each and the
    /// longer one the odd token (the second one when they are equally long). The slow Python
    /// tokenizer differs by one token in those cases (the first text keeps the odd token); AutoTokenizer
    /// and the example scripts use the fast one.
    static func longestFirstLengths(_ first: Int, _ second: Int, budget: Int) -> (Int, Int) {
        if first + second <= budget { return (first, second) }
        let swapped = first > second
        var shorter = swapped ? second : first
        var longer: Int
        if shorter > budget {
            longer = shorter
        } else {
            longer = max(shorter, budget - shorter)
        }
        if shorter + longer > budget {
            shorter = budget / 2
            longer = shorter + budget % 2
        }
        let (a, b) = swapped ? (longer, shorter) : (shorter, longer)
        return (min(a, first), min(b, second))
    }

    private func assemble(_ first: [Int32], _ second: [Int32]?) -> EncodedSequence {
        let vocabulary = tokenizer.vocabulary
        var ids = [vocabulary.classifierID] + first + [vocabulary.separatorID]
        var types = [Int32](repeating: 0, count: ids.count)
        if let second {
            ids += second + [vocabulary.separatorID]
            types += [Int32](repeating: 1, count: second.count + 1)
        }
        return EncodedSequence(inputIDs: ids, tokenTypeIDs: types)
    }

    public func encode(_ example: TextExample) -> TaskFeature {
        TaskFeature(line: example.line, sequences: [encode(example.text, pair: example.pair)], label: example.label)
    }

    /// `is_split_into_words`: each word tokenized on its own (a word that gives no tokens gets none),
    /// its tag on the first WordPiece and -100 on the others, truncated to `maxLength`.
    public func encode(_ example: TaggedExample) -> TaskFeature {
        var ids: [Int32] = [tokenizer.vocabulary.classifierID]
        var wordIDs: [Int32] = [-1]
        var labels: [Int32] = [ignoredLabel]
        let budget = maxLength - 1
        words: for (index, word) in example.words.enumerated() {
            let pieces = tokenizer.encode(word)
            for (position, piece) in pieces.enumerated() {
                if ids.count == budget { break words }
                ids.append(piece)
                wordIDs.append(Int32(index))
                labels.append(position == 0 && !example.tags.isEmpty ? example.tags[index] : ignoredLabel)
            }
        }
        ids.append(tokenizer.vocabulary.separatorID)
        wordIDs.append(-1)
        labels.append(ignoredLabel)
        return TaskFeature(line: example.line,
                           sequences: [EncodedSequence(inputIDs: ids, tokenTypeIDs: [Int32](repeating: 0, count: ids.count))],
                           wordIDs: wordIDs, tokenLabels: labels)
    }

    /// One `[CLS] context [SEP] prefix ending [SEP]` per choice, as run_swag encodes them.
    public func encode(_ example: ChoiceExample) -> TaskFeature {
        TaskFeature(line: example.line,
                    sequences: example.endings.indices.map { encode(example.context, pair: example.secondText($0)) },
                    label: example.label.map { .classIndex($0) })
    }

    /// `encode` of every example, in order, on all cores.
    public func features(_ examples: [TextExample]) -> [TaskFeature] { concurrentMap(examples, encode) }
    public func features(_ examples: [TaggedExample]) -> [TaskFeature] { concurrentMap(examples, encode) }
    public func features(_ examples: [ChoiceExample]) -> [TaskFeature] { concurrentMap(examples, encode) }

    /// Chunks of examples taken by `workerCount` threads as they free up (texts differ a lot in length).
    private func concurrentMap<Example>(_ examples: [Example], _ body: (Example) -> TaskFeature) -> [TaskFeature] {
        let chunk = 64
        let chunkCount = (examples.count + chunk - 1) / chunk
        var results = [TaskFeature?](repeating: nil, count: examples.count)
        results.withUnsafeMutableBufferPointer { output in
            let output = output
            let lock = NSLock()
            var next = 0
            DispatchQueue.concurrentPerform(iterations: min(workerCount, max(1, chunkCount))) { _ in
                while true {
                    lock.lock()
                    let c = next
                    next += 1
                    lock.unlock()
                    if c >= chunkCount { return }
                    for i in (c * chunk)..<min(examples.count, (c + 1) * chunk) { output[i] = body(examples[i]) }
                }
            }
        }
        return results.map { $0! }
    }
}

// MARK: - Collation

/// The labels of a batch, shaped as the task's loss takes them.
public enum BatchLabels: Equatable, Sendable {
    /// Some feature has no label (data to predict on).
    case none
    /// Class index per example, [exampleCount] (per question for multiple choice).
    case classIndices([Int32])
    /// Multi-hot targets, [exampleCount, labelCount] row-major.
    case multiHot([Float], labelCount: Int)
    /// Regression targets, [exampleCount].
    case values([Float])
    /// Tag per token, -100 on tokens without one and on padding; [sequenceCount, sequenceLength].
    case tokenLabels([Int32])
}

/// Features padded to the longest sequence of the batch (dynamic padding).
public struct PaddedBatch: Equatable, Sendable {
    /// [sequenceCount, sequenceLength] row-major; padding is the vocabulary's [PAD].
    public var inputIDs: [Int32]
    /// [sequenceCount, sequenceLength]; 0 on padding.
    public var tokenTypeIDs: [Int32]
    /// [sequenceCount, sequenceLength]; 1 on tokens, 0 on padding.
    public var attentionMask: [Int32]
    /// B: sequences in the batch (examples times `sequencesPerExample`).
    public var sequenceCount: Int
    /// T: the longest sequence of the batch.
    public var sequenceLength: Int
    /// 1, or the number of choices of multiple-choice questions (their sequences are consecutive).
    public var sequencesPerExample: Int
    public var labels: BatchLabels

    /// Pads `features` (which come from one dataset: same label kind, same choice count) to their
    /// longest sequence, or to `length` when given (at least as long). `labelCount` is the number of
    /// classes, needed for multi-label targets.
    public init<Features: Collection>(features: Features, padID: Int32, labelCount: Int = 0, length: Int? = nil)
        where Features.Element == TaskFeature
    {
        let perExample = features.first?.sequences.count ?? 1
        let longest = features.lazy.flatMap(\.sequences).map(\.inputIDs.count).max() ?? 0
        precondition(length.map { $0 >= longest } ?? true, "padding to \(length!) tokens, shorter than a sequence of \(longest)")
        let length = length ?? longest
        let count = features.count * perExample
        var ids = [Int32](repeating: padID, count: count * length)
        var types = [Int32](repeating: 0, count: count * length)
        var mask = [Int32](repeating: 0, count: count * length)
        for (row, sequence) in features.lazy.flatMap(\.sequences).enumerated() {
            let start = row * length
            ids.replaceSubrange(start..<(start + sequence.inputIDs.count), with: sequence.inputIDs)
            types.replaceSubrange(start..<(start + sequence.tokenTypeIDs.count), with: sequence.tokenTypeIDs)
            for t in 0..<sequence.inputIDs.count { mask[start + t] = 1 }
        }
        inputIDs = ids
        tokenTypeIDs = types
        attentionMask = mask
        sequenceCount = count
        sequenceLength = length
        sequencesPerExample = perExample
        labels = Self.collectLabels(features, sequenceLength: length, labelCount: labelCount)
    }

    private static func collectLabels<Features: Collection>(_ features: Features, sequenceLength: Int, labelCount: Int)
        -> BatchLabels where Features.Element == TaskFeature
    {
        if let first = features.first, !first.tokenLabels.isEmpty {
            var labels = [Int32](repeating: ignoredLabel, count: features.count * sequenceLength)
            for (row, feature) in features.enumerated() {
                labels.replaceSubrange((row * sequenceLength)..<(row * sequenceLength + feature.tokenLabels.count),
                                       with: feature.tokenLabels)
            }
            return .tokenLabels(labels)
        }
        var classes: [Int32] = [], multiHot: [Float] = [], values: [Float] = []
        for feature in features {
            switch feature.label {
            case nil: return .none
            case let .classIndex(index): classes.append(index)
            case let .classIndices(indices):
                var row = [Float](repeating: 0, count: labelCount)
                for index in indices { row[Int(index)] = 1 }
                multiHot += row
            case let .value(value): values.append(value)
            }
        }
        switch features.first?.label {
        case .classIndex?: return .classIndices(classes)
        case .classIndices?: return .multiHot(multiHot, labelCount: labelCount)
        case .value?: return .values(values)
        case nil: return .none
        }
    }
}
