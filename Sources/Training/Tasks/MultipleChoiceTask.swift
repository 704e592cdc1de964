import Data
import Distributed
import Foundation
import Transformer

/// Multiple choice (`BertForMultipleChoice`) from SWAG-style CSV/TSV/JSON-lines files: every
/// choice is one (context, prefix + ending) sequence, and the choices of an example are scored
/// against each other.
final class MultipleChoiceTask: FineTuningTask {
    typealias Model = BertForMultipleChoice
    typealias Batch = FineTuningBatch
    typealias Sums = FineTuningSums

    let config: TrainingConfig
    let data: FineTuningData
    let modelConfig: BertConfig
    /// Choices per question (the same for every question of both files).
    let choices: Int

    init(config: TrainingConfig, communicator: Communicator, log: (String) -> Void) throws {
        self.config = config
        data = try communicator.collectively {
            try FineTuningData(config: config, log: log) { path, _, encoder in
                var options = ChoiceTaskOptions(format: config.task.format?.fileFormat)
                options.labelField = config.task.labelField ?? options.labelField
                let set = try encoder.cachedFeatures(path: path, options: options)
                return (set.features, set.labelNames)
            }
        }
        let count = data.train[0].sequences.count
        if let odd = data.validation.first(where: { $0.sequences.count != count }), let file = config.task.validationFile {
            throw TaskDataError(
                path: file, "questions have \(odd.sequences.count) choices, the training file's have \(count); "
                    + "give both files the same number of choices")
        }
        choices = count
        var model = config.model
        model.head = .multipleChoice
        model.problemType = nil
        model.labels = []
        modelConfig = model
    }

    var sequencesPerExample: Int { choices }

    func makeModel(microBatchSize: Int, inferenceOnly: Bool) -> BertForMultipleChoice {
        BertForMultipleChoice(
            config: modelConfig, maxSequenceCount: microBatchSize * choices, sequenceLength: sequenceLength, inferenceOnly: inferenceOnly)
    }

    func batches(_ split: DataSplit, global: [Int], share: [Int], microBatchSize: Int, epoch: Int) throws -> [FineTuningBatch] {
        data.batches(split, global: global, share: share, microBatchSize: microBatchSize, labelCount: choices)
    }

    /// transformers' loss is the mean over the batch's examples (not their choices).
    func normalizers(_ batches: [FineTuningBatch], globalExamples: Int, averagedOver: Int, comm: Communicator) throws -> Float {
        Float(globalExamples * averagedOver)
    }

    func pass(_ model: BertForMultipleChoice, _ batch: FineTuningBatch, _ normalizer: Float, _ options: PassOptions)
        -> (sums: FineTuningSums, outputs: [Output])
    {
        var labels: [Int32]?
        if case let .classIndices(classes) = batch.padded.labels { labels = classes }
        let result = model.step(batch.inputs, choices: choices, labels: labels, normalizer: normalizer, options: options)
        let examples = batch.padded.sequenceCount / choices
        var sums = FineTuningSums(lossSum: result.lossSum, normalizer: normalizer, lossItems: labels == nil ? 0 : Double(examples))
        var outputs: [Output] = []
        for e in 0..<examples {
            let output = Output(logits: Array(result.logits[(e * choices)..<((e + 1) * choices)]), label: labels.map { Int($0[e]) })
            if let label = output.label {
                sums.correct += argmax(output.logits) == label ? 1 : 0
                sums.count += 1
            }
            outputs.append(output)
        }
        return (sums, outputs)
    }

    /// run_swag's metric: the share of questions whose highest-scored choice is the right one.
    func validationMetrics(_ sums: FineTuningSums, outputs: [Output]) throws -> [NamedMetric] {
        let labelled = outputs.filter { $0.label != nil }
        guard !labelled.isEmpty else { return [] }
        let right = labelled.filter { argmax($0.logits) == $0.label! }.count
        return [NamedMetric("accuracy", Double(right) / Double(labelled.count))]
    }

    /// One question's choice scores and the right choice.
    struct Output: Codable {
        var logits: [Float]
        var label: Int?
    }
}
