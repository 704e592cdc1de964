import Data
import Distributed
import Foundation
import Transformer

/// Single-text and sentence-pair classification (`BertForSequenceClassification`): single-label,
/// multi-label or regression, from CSV/TSV/JSON-lines files.
final class SequenceClassificationTask: FineTuningTask {
    typealias Model = BertForSequenceClassification
    typealias Batch = FineTuningBatch
    typealias Sums = FineTuningSums

    let config: TrainingConfig
    let data: FineTuningData
    let modelConfig: BertConfig

    init(config: TrainingConfig, communicator: Communicator, log: (String) -> Void) throws {
        self.config = config
        let problemType = config.task.problemType ?? .singleLabel
        data = try communicator.collectively {
            try FineTuningData(config: config, log: log) { path, names, encoder in
                var options = TextTaskOptions(
                    format: config.task.format?.fileFormat, textField: config.task.textField, pairField: config.task.textPairField)
                options.labelField = config.task.labelField ?? options.labelField
                options.labelKind = LabelKind(rawValue: problemType.rawValue)!
                options.labelNames = names
                let set = try encoder.cachedFeatures(path: path, options: options)
                return (set.features, set.labelNames)
            }
        }
        var model = config.model
        model.head = .sequenceClassification
        model.problemType = problemType
        model.labels = problemType == .regression ? ["LABEL_0"] : data.labelNames
        modelConfig = model
    }

    var labelCount: Int { modelConfig.headOutputCount }

    func makeModel(microBatchSize: Int, inferenceOnly: Bool) -> BertForSequenceClassification {
        BertForSequenceClassification(
            config: modelConfig, maxSequenceCount: microBatchSize, sequenceLength: sequenceLength, inferenceOnly: inferenceOnly)
    }

    func batches(_ split: DataSplit, global: [Int], share: [Int], microBatchSize: Int, epoch: Int) throws -> [FineTuningBatch] {
        data.batches(split, global: global, share: share, microBatchSize: microBatchSize, labelCount: labelCount)
    }

    /// transformers' losses are means over the batch's sequences (over sequences x labels for
    /// binary cross-entropy).
    func normalizers(_ batches: [FineTuningBatch], globalExamples: Int, averagedOver: Int, comm: Communicator) throws -> Float {
        let perExample = modelConfig.resolvedProblemType == .multiLabel ? labelCount : 1
        return Float(globalExamples * averagedOver * perExample)
    }

    func pass(_ model: BertForSequenceClassification, _ batch: FineTuningBatch, _ normalizer: Float, _ options: PassOptions)
        -> (sums: FineTuningSums, outputs: [Output])
    {
        let targets: SequenceTargets?
        switch batch.padded.labels {
        case let .classIndices(classes): targets = .classes(classes)
        case let .multiHot(values, _): targets = .multiHot(values)
        case let .values(values): targets = .values(values)
        case .none, .tokenLabels: targets = nil
        }
        let result = model.step(batch.inputs, targets: targets, normalizer: normalizer, options: options)
        let K = labelCount
        let items = modelConfig.resolvedProblemType == .multiLabel ? K : 1
        var sums = FineTuningSums(
            lossSum: result.lossSum, normalizer: normalizer, lossItems: targets == nil ? 0 : Double(batch.padded.sequenceCount * items))
        var outputs: [Output] = []
        for b in 0..<batch.padded.sequenceCount {
            let logits = Array(result.logits[(b * K)..<((b + 1) * K)])
            let output = Output(logits: logits, label: targets.map { Output.label(of: $0, b, K) })
            if let correct = output.isCorrect {
                sums.correct += correct ? 1 : 0
                sums.count += 1
            }
            outputs.append(output)
        }
        return (sums, outputs)
    }

    /// sklearn's (and transformers' run_glue's) metrics of the problem type; the training
    /// accuracy field is replaced, not repeated.
    func validationMetrics(_ sums: FineTuningSums, outputs: [Output]) throws -> [NamedMetric] {
        let labelled = outputs.filter { $0.label != nil }
        guard !labelled.isEmpty else { return [] }
        let metrics: any TaskMetricValues
        switch modelConfig.resolvedProblemType {
        case .singleLabel:
            metrics = try ClassificationMetrics(
                labels: labelled.map { Int($0.label![0]) }, predictions: labelled.map { argmax($0.logits) })
        case .multiLabel:
            metrics = try MultiLabelMetrics(
                labels: labelled.map { $0.label!.map { $0 > 0.5 } }, predictions: labelled.map { $0.logits.map { $0 > 0 } })
        case .regression:
            metrics = try RegressionMetrics(
                labels: labelled.map { Double($0.label![0]) }, predictions: labelled.map { Double($0.logits[0]) })
        }
        return metrics.namedValues
    }

    /// One example's logits and target.
    struct Output: Codable {
        var logits: [Float]
        /// The class id, the multi-hot targets, or the regression value; nil without a label.
        var label: [Float]?

        static func label(of targets: SequenceTargets, _ b: Int, _ K: Int) -> [Float] {
            switch targets {
            case let .classes(classes): return [Float(classes[b])]
            case let .multiHot(values): return Array(values[(b * K)..<((b + 1) * K)])
            case let .values(values): return [values[b]]
            }
        }

        /// Whether the prediction is right, for the classifications: the arg-max class is the label
        /// (single-label), or every label's sigmoid > 0.5 matches (multi-label); nil for regression.
        var isCorrect: Bool? {
            guard let label else { return nil }
            if label.count == logits.count && logits.count > 1 {
                return zip(logits, label).allSatisfy { ($0 > 0) == ($1 > 0.5) }
            }
            if logits.count == 1 { return nil }
            return argmax(logits) == Int(label[0])
        }
    }
}

/// The index of the largest value, the first of equal ones (as torch.argmax).
func argmax(_ values: [Float]) -> Int {
    var best = 0
    for i in values.indices where values[i] > values[best] { best = i }
    return best
}
