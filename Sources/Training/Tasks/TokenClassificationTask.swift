import Data
import Distributed
import Foundation
import Transformer

/// Token classification (`BertForTokenClassification`: NER, POS tagging, slot filling) from CoNLL
/// columns, `word/TAG` lines, People's Daily 1998 or JSON lines with `tokens`/`ner_tags`. A word's
/// tag sits on its first WordPiece (the others are -100, as transformers' run_ner labels them), and
/// predictions are read back per word from that piece.
final class TokenClassificationTask: FineTuningTask {
    typealias Model = BertForTokenClassification
    typealias Batch = TokenClassificationBatch
    typealias Sums = FineTuningSums

    let config: TrainingConfig
    let data: FineTuningData
    let modelConfig: BertConfig
    /// Each example's word index per token (-1 on [CLS]/[SEP]), by split.
    private let wordIDs: [DataSplit: [[Int32]]]

    init(config: TrainingConfig, communicator: Communicator, log: (String) -> Void) throws {
        self.config = config
        data = try communicator.collectively {
            try FineTuningData(config: config, log: log) { path, names, encoder in
                var options = TaggedTaskOptions(format: config.task.format?.fileFormat)
                options.peoplesDailyEntities = config.task.format == .peoplesDaily
                options.labelNames = names
                let set = try encoder.cachedFeatures(path: path, options: options)
                return (set.features, set.labelNames)
            }
        }
        wordIDs = [.train: data.train.map(\.wordIDs), .validation: data.validation.map(\.wordIDs)]
        var model = config.model
        model.head = .tokenClassification
        model.labels = data.labelNames
        modelConfig = model
    }

    var labelCount: Int { modelConfig.headOutputCount }

    /// seqeval's default (lenient) mode reads IOB1 and IOB2 as run_ner does; BIOES data is read with
    /// the strict IOBES rules, the only mode in which an E-/S- tag bounds a chunk as written.
    var entityMatching: EntityMatching {
        config.task.labelScheme == .bioes ? .strict(.iobes) : .lenient
    }

    func makeModel(microBatchSize: Int, inferenceOnly: Bool) -> BertForTokenClassification {
        BertForTokenClassification(
            config: modelConfig, maxSequenceCount: microBatchSize, sequenceLength: sequenceLength, inferenceOnly: inferenceOnly)
    }

    func batches(_ split: DataSplit, global: [Int], share: [Int], microBatchSize: Int, epoch: Int) throws
        -> [TokenClassificationBatch]
    {
        let words = wordIDs[split]!
        return data.batches(split, global: global, share: share, microBatchSize: microBatchSize, labelCount: labelCount)
            .map { TokenClassificationBatch(batch: $0, wordIDs: $0.exampleIndices.map { words[$0] }) }
    }

    /// transformers' loss is the mean over the labelled tokens, so the normaliser is their number in
    /// the whole global batch (summed over ranks), whatever share of them this rank holds.
    func normalizers(_ batches: [TokenClassificationBatch], globalExamples: Int, averagedOver: Int, comm: Communicator)
        throws -> Float
    {
        let local = batches.reduce(0) { $0 + $1.labelledTokens }
        let labelled = try comm.allReduceSum(Int64(local))
        return Float(max(1, labelled)) * Float(averagedOver)
    }

    func pass(_ model: BertForTokenClassification, _ batch: TokenClassificationBatch, _ normalizer: Float,
              _ options: PassOptions) -> (sums: FineTuningSums, outputs: [Output])
    {
        let padded = batch.batch.padded
        var labels: [Int32]?
        if case let .tokenLabels(tokenLabels) = padded.labels { labels = tokenLabels }
        let result = model.step(batch.batch.inputs, labels: labels, normalizer: normalizer, options: options)
        let K = labelCount, T = padded.sequenceLength
        var sums = FineTuningSums(
            lossSum: result.lossSum, normalizer: normalizer, lossItems: labels == nil ? 0 : Double(batch.labelledTokens))
        var outputs: [Output] = []
        for (b, words) in batch.wordIDs.enumerated() {
            var output = Output(predictions: [], labels: [])
            // A word's first WordPiece carries its prediction (and its tag); truncated words have none.
            var next: Int32 = 0
            for (t, word) in words.enumerated() where word == next {
                next += 1
                let row = (b * T + t) * K
                output.predictions.append(argmax(Array(result.logits[row..<(row + K)])))
                let label = labels.map { Int($0[b * T + t]) } ?? Int(ignoredLabel)
                output.labels.append(label)
                if label != Int(ignoredLabel) {
                    sums.count += 1
                    sums.correct += output.predictions.last == label ? 1 : 0
                }
            }
            outputs.append(output)
        }
        return (sums, outputs)
    }

    /// run_ner's metrics: token accuracy and seqeval's entity precision, recall and F1, overall and
    /// per entity type, over the labelled words.
    func validationMetrics(_ sums: FineTuningSums, outputs: [Output]) throws -> [NamedMetric] {
        let labelled = outputs.filter { $0.labels.contains { $0 != Int(ignoredLabel) } }
        guard !labelled.isEmpty else { return [] }
        return try TokenClassificationMetrics(
            labels: labelled.map(\.labels), predictions: labelled.map(\.predictions), labelNames: modelConfig.labels,
            matching: entityMatching
        ).namedValues
    }

    /// One example's predicted and true tag ids, one per word that fits the sequence (-100 for a
    /// word without a tag).
    struct Output: Codable {
        var predictions: [Int]
        var labels: [Int]
    }
}

/// A micro-batch of token classification: the padded batch and each example's word per token.
struct TokenClassificationBatch: TaskBatch {
    var batch: FineTuningBatch
    var wordIDs: [[Int32]]

    var exampleIndices: [Int] { batch.exampleIndices }
    var throughputTokens: Int { batch.throughputTokens }

    /// Tokens with a tag (the loss's terms).
    var labelledTokens: Int {
        guard case let .tokenLabels(labels) = batch.padded.labels else { return 0 }
        return labels.reduce(0) { $0 + ($1 == ignoredLabel ? 0 : 1) }
    }
}
