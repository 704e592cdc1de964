import Data
import Distributed
import Foundation
import Transformer

/// One objective the engine trains: pre-training, or a fine-tuning head on labelled data.
///
/// The engine (`Engine`) owns everything tasks share: ranks and the gradient all-reduce, sampling,
/// the optimizer and schedule, non-finite steps, logging, evaluation rounds, checkpoints, resume,
/// signals and the watchdog. A task supplies what differs: its model (a `BertModel` subclass, or
/// `GPT2Model`), its batches, one pass over a micro-batch, the sums that pass produces and its
/// evaluation metrics. Adding a task is one file with a type conforming to this protocol, plus its
/// case in `TaskKind`.
protocol TrainingTask: AnyObject {
    associatedtype Model: TrainableModel
    associatedtype Batch: TaskBatch
    associatedtype Sums: TaskSums
    /// The global counts a step's loss sums are divided by (so ranks and micro-batches add up to
    /// the mean over the global batch).
    associatedtype Normalizers
    /// One example's prediction, gathered from all ranks for the validation metrics.
    associatedtype Output: Codable

    /// The least memory a rank needs for micro-batches of `sequences` sequences (checked before
    /// anything is allocated).
    func memoryFloor(sequences: Int) -> MemoryFloor
    /// Examples of the training split; global batches are drawn from `0 ..< trainCount`.
    var trainCount: Int { get }
    /// Examples of the validation split; 0 turns evaluation off.
    var validationCount: Int { get }
    /// The longest sequence the model holds.
    var sequenceLength: Int { get }
    /// Sequences per example (the choices of multiple choice, else 1): the model's buffers hold
    /// `micro_batch_size` x this many sequences.
    var sequencesPerExample: Int { get }
    /// Identifies the data: every rank must agree on it, and a run resumes only on the same data.
    var dataFingerprint: String { get }

    /// A model for micro-batches of `microBatchSize` examples; `inferenceOnly`: for evaluation alone
    /// (no gradients, no buffers backward needs), where the task's pass allows it.
    func makeModel(microBatchSize: Int, inferenceOnly: Bool) -> Model
    /// This rank's micro-batches: `share` (example indices of `split`) cut into micro-batches of
    /// `microBatchSize`. `global` is the whole global batch (all ranks' shares), for what must not
    /// depend on how it is shared, such as the padded length.
    func batches(_ split: DataSplit, global: [Int], share: [Int], microBatchSize: Int, epoch: Int) throws -> [Batch]
    /// The normalisers of a step from this rank's micro-batches (a collective: counts are summed
    /// over ranks). `globalExamples` is the global batch's size; an evaluation that averages over
    /// several global batches multiplies the counts by `averagedOver`.
    func normalizers(_ batches: [Batch], globalExamples: Int, averagedOver: Int, comm: Communicator) throws -> Normalizers
    /// Forward (and backward, when `options.computeGradients`) over one micro-batch.
    func pass(_ model: Model, _ batch: Batch, _ normalizers: Normalizers, _ options: PassOptions)
        -> (sums: Sums, outputs: [Output])
    /// Validation metrics from the summed loss and every example's output, in example order.
    func validationMetrics(_ sums: Sums, outputs: [Output]) throws -> [NamedMetric]
    /// Checks that `init_from` (a Hugging Face directory) suits the task's data and model.
    func checkInitFrom(_ directory: String) throws
    /// Writes the tokenizer files beside a checkpoint's weights.
    func writeTokenizer(to directory: String) throws
}

/// A task whose model is BERT with a head.
protocol BertTrainingTask: TrainingTask where Model: BertModel {
    /// The model's config: its head and labels set.
    var modelConfig: BertConfig { get }
}

extension BertTrainingTask {
    func memoryFloor(sequences: Int) -> MemoryFloor {
        // A frozen base needs its weights alone (the adapter's own 16 B per parameter are a rounding error).
        MemoryFloor(
            parameters: modelConfig.parameterCount ?? Int.max, bytesPerParameter: modelConfig.hasAdapter ? 4 : 16,
            activationBytes: Benchmark.activationFloor(modelConfig, sequences: sequences, length: sequenceLength))
    }
}

/// What a rank needs at least: weights (with gradients and both Adam moments, 16 B per parameter,
/// when they all train) and the activations backward keeps for one micro-batch.
struct MemoryFloor {
    var parameters: Int
    var bytesPerParameter: Double
    var activationBytes: Double
}

/// A micro-batch of any task.
protocol TaskBatch {
    /// Global example index of each example (keys dropout).
    var exampleIndices: [Int] { get }
    /// The tokens the throughput figures count.
    var throughputTokens: Int { get }
}

/// What passes over micro-batches add up to: loss sums and metric counts. They add across
/// micro-batches and are all-reduced across ranks as one vector.
protocol TaskSums {
    init()
    /// The values in a fixed order, for the all-reduce.
    var values: [Double] { get }
    init(values: [Double])
    /// The normalised loss the gradient is taken of.
    var loss: Double { get }
    /// Sets a record's loss and the task's fields from sums over `steps` steps (losses are averaged
    /// over the steps, accuracies are totals over totals).
    func fill(_ record: inout MetricsRecord, steps: Int)
}

extension TaskSums {
    static func + (left: Self, right: Self) -> Self {
        Self(values: zip(left.values, right.values).map { $0 + $1 })
    }

    static func += (left: inout Self, right: Self) { left = left + right }

    /// The sums of every rank, on every rank.
    func allReduced(_ comm: Communicator) throws -> Self {
        var values = values
        try comm.allReduceSum(&values)
        return Self(values: values)
    }

    var isFinite: Bool { values.allSatisfy(\.isFinite) }
}

/// Sums of the fine-tuning tasks: the loss, and how many predictions were right.
struct FineTuningSums: TaskSums {
    /// Sum of the losses divided by the step's normaliser (the gradient's loss).
    var loss = 0.0
    /// Sum of the losses and the number of items they are summed over, for the mean an evaluation
    /// reports whatever its batches.
    var lossSum = 0.0
    var lossItems = 0.0
    var correct = 0.0
    var count = 0.0

    init() {}

    init(lossSum: Double, normalizer: Float, lossItems: Double) {
        loss = lossSum / Double(normalizer)
        self.lossSum = lossSum
        self.lossItems = lossItems
    }

    var values: [Double] { [loss, lossSum, lossItems, correct, count] }

    init(values: [Double]) {
        (loss, lossSum, lossItems, correct, count) = (values[0], values[1], values[2], values[3], values[4])
    }

    func fill(_ record: inout MetricsRecord, steps: Int) {
        record.loss = record.split == .train ? loss / Double(max(1, steps)) : (lossItems > 0 ? lossSum / lossItems : nil)
        if count > 0 { record.taskFields.append(NamedMetric("accuracy", correct / count)) }
    }
}
