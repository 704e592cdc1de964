import Data
import Distributed
import Foundation
import Transformer

/// Extractive question answering (`BertForQuestionAnswering`) on SQuAD v1.1/v2.0 files, as
/// transformers' run_qa.py trains and evaluates it. The engine's examples are the windows of the
/// questions (`SquadFeatureBuilder`: `batch.sequence_length` tokens, `task.doc_stride`); validation
/// decodes every question over its windows (`SquadDecoder`) and scores it with `SquadMetrics`.
final class QuestionAnsweringTask: FineTuningTask {
    typealias Model = BertForQuestionAnswering
    typealias Sums = FineTuningSums

    let config: TrainingConfig
    let data: FineTuningData
    let modelConfig: BertConfig
    let train: Split
    let validation: Split

    /// The questions of a file and their windows (`data`'s features, in the same order).
    struct Split {
        var examples: [SquadExample] = []
        var windows: [SquadFeature] = []
    }

    init(config: TrainingConfig, communicator: Communicator, log: (String) -> Void) throws {
        self.config = config
        if let format = config.task.format, format != .squad {
            throw ConfigError(
                source: "config", keyPath: "task.format",
                message: "is \"\(format.rawValue)\"; question answering reads SQuAD JSON: set it to \"squad\" or leave it out")
        }
        var train = Split(), validation = Split()
        let docStride = config.task.docStride
        data = try communicator.collectively {
            try FineTuningData(config: config, log: log) { path, names, encoder in
                let dataset = try SquadDataset(contentsOfFile: path)
                let builder = SquadFeatureBuilder(tokenizer: encoder.tokenizer, maxLength: encoder.maxLength, docStride: docStride)
                let windows: [SquadFeature]
                do {
                    windows = try builder.features(for: dataset.examples)
                } catch let error as SquadError {
                    throw SquadError(path: path, location: error.location, message: error.message)
                }
                let split = Split(examples: dataset.examples, windows: windows)
                if path == config.task.trainFile { train = split }
                if path == config.task.validationFile { validation = split }
                let features = windows.map {
                    TaskFeature(line: 0, sequences: [EncodedSequence(inputIDs: $0.inputIDs, tokenTypeIDs: $0.tokenTypeIDs)])
                }
                return (features, [])
            }
        }
        // FineTuningData reads a file given as both splits once.
        if config.task.validationFile == config.task.trainFile { validation = train }
        self.train = train
        self.validation = validation
        log("\(train.examples.count) training questions in \(train.windows.count) windows, "
            + "\(validation.examples.count) validation questions in \(validation.windows.count) windows")
        if !config.task.versionTwoWithNegative && validation.examples.contains(where: \.isImpossible) {
            log("note: the validation file has unanswerable questions, scored as SQuAD v1.1 (never right); "
                + "set task.version_2_with_negative for SQuAD v2.0 decoding and scores")
        }
        var model = config.model
        model.head = .questionAnswering
        model.labels = []
        modelConfig = model
    }

    func makeModel(microBatchSize: Int, inferenceOnly: Bool) -> BertForQuestionAnswering {
        BertForQuestionAnswering(
            config: modelConfig, maxSequenceCount: microBatchSize, sequenceLength: sequenceLength, inferenceOnly: inferenceOnly)
    }

    func batches(_ split: DataSplit, global: [Int], share: [Int], microBatchSize: Int, epoch: Int) throws -> [Batch] {
        let windows = (split == .train ? train : validation).windows
        return data.batches(split, global: global, share: share, microBatchSize: microBatchSize, labelCount: 0).map {
            Batch(base: $0, startPositions: $0.exampleIndices.map { Int32(windows[$0].startPosition) },
                  endPositions: $0.exampleIndices.map { Int32(windows[$0].endPosition) })
        }
    }

    /// transformers' loss is (mean start loss + mean end loss) / 2 over the batch's windows.
    func normalizers(_ batches: [Batch], globalExamples: Int, averagedOver: Int, comm: Communicator) throws -> Float {
        Float(2 * globalExamples * averagedOver)
    }

    func pass(_ model: BertForQuestionAnswering, _ batch: Batch, _ normalizer: Float, _ options: PassOptions)
        -> (sums: FineTuningSums, outputs: [Output])
    {
        let result = model.step(
            batch.base.inputs, startPositions: batch.startPositions, endPositions: batch.endPositions,
            normalizer: normalizer, options: options)
        let B = batch.base.padded.sequenceCount, T = batch.base.padded.sequenceLength
        let sums = FineTuningSums(lossSum: result.lossSum, normalizer: normalizer, lossItems: Double(2 * B))
        let outputs = (0..<B).map { b -> Output in
            let row = (b * T * 2)..<((b + 1) * T * 2)
            let starts = stride(from: row.lowerBound, to: row.upperBound, by: 2).map { result.logits[$0] }
            let ends = stride(from: row.lowerBound + 1, to: row.upperBound, by: 2).map { result.logits[$0] }
            return Output(window: batch.base.exampleIndices[b], starts: starts, ends: ends, count: config.task.nBestSize)
        }
        return (sums, outputs)
    }

    /// run_qa.py's metrics: exact match and F1 (percentages) of the decoded answers; for SQuAD v2.0
    /// also over the questions with answers (HasAns_) and without (NoAns_). Only questions whose
    /// windows were all evaluated are decoded.
    func validationMetrics(_ sums: FineTuningSums, outputs: [Output]) throws -> [NamedMetric] {
        var outputOfWindow: [Int: Output] = [:]
        for output in outputs { outputOfWindow[output.window] = output }
        var windowsOfExample = [[Int]](repeating: [], count: validation.examples.count)
        for (index, window) in validation.windows.enumerated() { windowsOfExample[window.exampleIndex].append(index) }
        var examples: [SquadExample] = [], windows: [SquadFeature] = [], starts: [[Float]] = [], ends: [[Float]] = []
        for (exampleIndex, indices) in windowsOfExample.enumerated()
        where !indices.isEmpty && indices.allSatisfy({ outputOfWindow[$0] != nil }) {
            for index in indices {
                var window = validation.windows[index]
                window.exampleIndex = examples.count
                windows.append(window)
                let logits = outputOfWindow[index]!.logits
                starts.append(logits.starts)
                ends.append(logits.ends)
            }
            examples.append(validation.examples[exampleIndex])
        }
        guard !examples.isEmpty else { return [] }
        let task = config.task
        let decoder = SquadDecoder(
            nBestSize: task.nBestSize, maxAnswerLength: task.maxAnswerLength, allowsNoAnswer: task.versionTwoWithNegative,
            nullScoreDifferenceThreshold: Float(task.nullScoreDiffThreshold))
        let predictions = decoder.predictions(examples: examples, features: windows, startLogits: starts, endLogits: ends)
        let answers = Dictionary(uniqueKeysWithValues: predictions.map { ($0.id, $0.text) })
        guard task.versionTwoWithNegative else {
            let result = SquadMetrics.evaluateV1(examples: examples, predictions: answers)
            return [NamedMetric("exact_match", result.overall.exact), NamedMetric("f1", result.overall.f1)]
        }
        let result = try SquadMetrics.evaluateV2(examples: examples, predictions: answers)
        var metrics = [NamedMetric("exact_match", result.overall.exact), NamedMetric("f1", result.overall.f1)]
        for (prefix, score) in [("HasAns", result.hasAnswer), ("NoAns", result.noAnswer)] {
            guard let score else { continue }
            metrics += [NamedMetric("\(prefix)_exact", score.exact), NamedMetric("\(prefix)_f1", score.f1)]
        }
        return metrics
    }

    /// A micro-batch of windows with their answers' first and last tokens (0, [CLS], for none).
    struct Batch: TaskBatch {
        var base: FineTuningBatch
        var startPositions: [Int32]
        var endPositions: [Int32]

        var exampleIndices: [Int] { base.exampleIndices }
        var throughputTokens: Int { base.throughputTokens }
    }

    /// What decoding needs of a window, small enough to gather from every rank: the n-best start and
    /// end logits with their positions, and [CLS]'s (the null answer), instead of all T of each.
    struct Output: Codable {
        var window: Int
        /// The padded length the logits had.
        var length: Int
        var clsStart: Float
        var clsEnd: Float
        var startPositions: [Int32]
        var startLogits: [Float]
        var endPositions: [Int32]
        var endLogits: [Float]

        init(window: Int, starts: [Float], ends: [Float], count: Int) {
            self.window = window
            length = starts.count
            (clsStart, clsEnd) = (starts[0], ends[0])
            startPositions = Self.largest(count, of: starts)
            startLogits = startPositions.map { starts[Int($0)] }
            endPositions = Self.largest(count, of: ends)
            endLogits = endPositions.map { ends[Int($0)] }
        }

        /// Full rows again, -infinity where a logit was not kept: `SquadDecoder` picks the same n-best
        /// from them (anything kept outranks -infinity) and reads [CLS] for the null answer.
        var logits: (starts: [Float], ends: [Float]) {
            var starts = [Float](repeating: -.infinity, count: length), ends = starts
            (starts[0], ends[0]) = (clsStart, clsEnd)
            for (position, logit) in zip(startPositions, startLogits) { starts[Int(position)] = logit }
            for (position, logit) in zip(endPositions, endLogits) { ends[Int(position)] = logit }
            return (starts, ends)
        }

        /// The positions of the `count` largest values, in `SquadDecoder`'s order (equal values: the
        /// later position first), so that the kept set is the one it would pick.
        static func largest(_ count: Int, of values: [Float]) -> [Int32] {
            values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 > $1) }
                .prefix(count).map { Int32($0) }
        }
    }
}
