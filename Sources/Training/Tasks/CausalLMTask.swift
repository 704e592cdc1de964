import Data
import Distributed
import Foundation
import Kernels
import Transformer

/// GPT-2 causal language modelling as a task: next-token prediction on a prepared data directory
/// (`swiftbert prepare --objective causal_lm`, documents packed into sequences of
/// `batch.sequence_length` tokens separated by the end-of-text token).
///
/// A step's loss is the mean over the global batch's predicted tokens (every token but each
/// sequence's first), whatever the ranks and micro-batches, as `GPT2LMHeadModel`'s loss is over
/// one batch. Validation reports the loss and its perplexity.
final class CausalLMTask: TrainingTask {
    typealias Model = GPT2Model

    let config: TrainingConfig
    let model: GPT2Config
    let train: PretrainingDataset
    let validation: PretrainingDataset?
    let dataFingerprint: String
    let sequenceLength: Int
    /// Pads the last, shorter sequence of a split (its positions count for nothing).
    let padID: Int32

    /// Opens and verifies the data directory (a collective).
    init(config: TrainingConfig, communicator: Communicator, log: (String) -> Void) throws {
        guard let model = config.gpt2 else { preconditionFailure("a causal_lm run reads a GPT-2 model section") }
        self.config = config
        self.model = model
        (train, validation) = try PreparedData.open(config: config, objective: .causalLM, communicator: communicator, log: log) { train in
            try CausalLMTask.check(train, against: model)
        }
        sequenceLength = train.sequenceLength
        padID = train.manifest.vocabulary.padID
        dataFingerprint = try fileDigest((config.data.directory as NSString).appendingPathComponent(DatasetManifest.fileName))
    }

    private static func check(_ train: PretrainingDataset, against model: GPT2Config) throws {
        if train.manifest.vocabulary.size > model.vocabSize {
            throw ConfigError(
                source: "config", keyPath: "model.vocab_size",
                message: "is \(model.vocabSize) but the data's tokenizer has \(train.manifest.vocabulary.size) ids; "
                    + "set vocab_size to at least \(train.manifest.vocabulary.size)")
        }
        if train.sequenceLength > model.positionCount {
            throw ConfigError(
                source: "config", keyPath: "model.n_positions",
                message: "is \(model.positionCount), shorter than the data's sequences of \(train.sequenceLength)")
        }
    }

    var trainCount: Int { train.count }
    var validationCount: Int { validation?.count ?? 0 }
    var sequencesPerExample: Int { 1 }

    func memoryFloor(sequences: Int) -> MemoryFloor {
        // Per token and layer, what backward keeps: the block's input, two LayerNorm outputs, q/k/v,
        // the context, the residual, the MLP's pre-activation and activation; per head the T x T probabilities.
        let C = Double(model.hiddenSize), I = Double(model.inner), T = Double(sequenceLength)
        let perToken = Double(model.layerCount) * (8 * C + 2 * I + Double(model.headCount) * T) + 2 * C
        return MemoryFloor(
            parameters: model.parameterCount, bytesPerParameter: 16,
            activationBytes: 4 * perToken * Double(sequences) * T)
    }

    func makeModel(microBatchSize: Int, inferenceOnly: Bool) -> GPT2Model { GPT2Model(config: model) }

    func batches(_ split: DataSplit, global: [Int], share: [Int], microBatchSize: Int, epoch: Int) throws -> [CausalLMBatch] {
        guard let dataset = split == .train ? train : validation else {
            throw TrainingError("no \(split) data to read batches from")
        }
        // Padded to the longest sequence of the global batch (all full but a split's last), the same on every rank.
        let length = global.map { index -> Int in
            let (shard, local) = dataset.location(of: index)
            return shard.tokens(of: local).count
        }.max() ?? sequenceLength
        return try stride(from: 0, to: share.count, by: microBatchSize).map { start in
            try batch(Array(share[start..<min(share.count, start + microBatchSize)]), from: dataset, length: length)
        }
    }

    private func batch(_ indices: [Int], from dataset: PretrainingDataset, length T: Int) throws -> CausalLMBatch {
        var batch = CausalLMBatch(sequences: indices.count, length: T, exampleIndices: indices)
        batch.ids = [Int32](repeating: padID, count: indices.count * T)
        batch.mask = [Int32](repeating: 0, count: indices.count * T)
        batch.labels = [Int32](repeating: GPT2Model.ignoredLabel, count: indices.count * T)
        for (b, index) in indices.enumerated() {
            let (shard, local) = dataset.location(of: index)
            try shard.checkRecord(local, vocabularySize: dataset.manifest.vocabulary.size, nspLabelCount: 1)
            let tokens = shard.tokens(of: local)
            for (t, token) in tokens.enumerated() {
                let id = Int32(bitPattern: token & ShardFormat.tokenIDMask)
                batch.ids[b * T + t] = id
                batch.mask[b * T + t] = 1
                batch.labels[b * T + t] = id
            }
            batch.realTokens += tokens.count
            batch.predictedTokens += max(0, tokens.count - 1)
        }
        return batch
    }

    struct Normalizers {
        /// Predicted tokens of the global batch (times the batches an evaluation averages).
        var predictedTokens: Float
    }

    func normalizers(_ batches: [CausalLMBatch], globalExamples: Int, averagedOver: Int, comm: Communicator) throws -> Normalizers {
        let predicted = try comm.allReduceSum(Int64(batches.reduce(0) { $0 + $1.predictedTokens }))
        return Normalizers(predictedTokens: Float(max(1, predicted)) * Float(averagedOver))
    }

    func pass(_ model: GPT2Model, _ batch: CausalLMBatch, _ normalizers: Normalizers, _ options: PassOptions)
        -> (sums: Sums, outputs: [Output])
    {
        let dropout = options.training
            ? GPT2Model.Dropout(seed: options.dropoutSeed, step: options.dropoutStep, sampleIndices: batch.exampleIndices) : nil
        let (output, _) = model.forward(
            ids: batch.ids, mask: batch.mask, labels: batch.labels, sequences: batch.sequences, length: batch.length,
            dropout: dropout)
        if options.computeGradients {
            model.backward(output, dloss: 1 / normalizers.predictedTokens, onGradientsReady: options.onGradientsReady)
        }
        var sums = Sums()
        sums.loss = output.lossSum / Double(normalizers.predictedTokens)
        sums.lossSum = output.lossSum
        sums.tokens = Double(output.count)
        return (sums, [])
    }

    func validationMetrics(_ sums: Sums, outputs: [Output]) -> [NamedMetric] { [] }

    /// `init_from` must be a GPT-2 directory of the run's shape.
    func checkInitFrom(_ directory: String) throws {
        let found = try GPT2Model.config(in: directory)
        let keys: [(String, (GPT2Config) -> String)] = [
            ("vocab_size", { "\($0.vocabSize)" }), ("n_positions", { "\($0.positionCount)" }), ("n_embd", { "\($0.hiddenSize)" }),
            ("n_layer", { "\($0.layerCount)" }), ("n_head", { "\($0.headCount)" }), ("n_inner", { "\($0.inner)" }),
            ("activation_function", { $0.activation.rawValue }),
        ]
        if let (key, value) = keys.first(where: { $0.1(found) != $0.1(model) }) {
            throw ConfigError(
                source: "config", keyPath: "model." + key,
                message: "is \(value(model)) but init_from \(directory) has \(value(found)); leave the model section out to "
                    + "take the directory's config.json, or make it match")
        }
    }

    /// The data's tokenizer files, as they were given to `prepare` (tokenizer.json, or vocab.json and merges.txt).
    func writeTokenizer(to directory: String) throws {
        let main = train.manifest.vocabulary.file
        for file in [main] + (main == ByteLevelBPE.vocabularyFile ? [ByteLevelBPE.mergesFile] : []) {
            let source = (config.data.directory as NSString).appendingPathComponent(file)
            let destination = (directory as NSString).appendingPathComponent(file)
            do {
                try FileManager.default.copyItem(atPath: source, toPath: destination)
            } catch {
                throw TrainingError("cannot copy the tokenizer \(source) into \(directory): \(error.localizedDescription)")
            }
        }
    }

    /// Causal LM validation has no per-example outputs.
    struct Output: Codable {}

    struct Sums: TaskSums {
        /// Sum of the token losses divided by the step's predicted tokens (the gradient's loss).
        var loss = 0.0
        /// Sum of the token losses and the tokens they are summed over, for the mean an evaluation reports.
        var lossSum = 0.0
        var tokens = 0.0

        init() {}

        var values: [Double] { [loss, lossSum, tokens] }

        init(values: [Double]) { (loss, lossSum, tokens) = (values[0], values[1], values[2]) }

        func fill(_ record: inout MetricsRecord, steps: Int) {
            let mean = record.split == .train ? loss / Double(max(1, steps)) : (tokens > 0 ? lossSum / tokens : .nan)
            record.loss = mean
            record.perplexity = exp(mean)
        }
    }
}

/// A micro-batch of packed sequences.
struct CausalLMBatch: TaskBatch {
    var sequences: Int
    var length: Int
    var exampleIndices: [Int]
    /// [B, T] token ids (padding: the end-of-text id), 1 on real tokens, and the ids again as labels
    /// (`GPT2Model.ignoredLabel` on padding).
    var ids: [Int32] = []
    var mask: [Int32] = []
    var labels: [Int32] = []
    var realTokens = 0
    var predictedTokens = 0

    init(sequences: Int, length: Int, exampleIndices: [Int]) {
        (self.sequences, self.length, self.exampleIndices) = (sequences, length, exampleIndices)
    }

    var throughputTokens: Int { realTokens }
}
