import Data
import Distributed
import Foundation
import Kernels
import Transformer

/// GPT-2 causal language modelling as a task: next-token prediction on a prepared data directory
/// (`swiftbert prepare --objective causal_lm`: documents packed into sequences of
/// `batch.sequence_length` tokens separated by the end-of-text token), or instruction tuning on
/// prompt/response JSON lines (`task.train_file`, `InstructionExample`), where only the responses
/// are learned, starting from `init_from` with its tokenizer.
///
/// A step's loss is the mean over the global batch's predicted tokens (every position whose next
/// token is learned), whatever the ranks and micro-batches, as `GPT2LMHeadModel`'s loss is over
/// one batch. Validation reports the loss and its perplexity.
final class CausalLMTask: TrainingTask {
    typealias Model = GPT2Model

    let config: TrainingConfig
    let model: GPT2Config
    let train: any CausalSequences
    let validation: (any CausalSequences)?
    let dataFingerprint: String
    let sequenceLength: Int
    /// Pads sequences shorter than the batch's longest (the padding counts for nothing).
    let padID: Int32
    /// The directory and names of the tokenizer files the checkpoints carry.
    let tokenizerFiles: (directory: String, names: [String])

    /// Opens and verifies the data (a collective).
    init(config: TrainingConfig, communicator: Communicator, log: (String) -> Void) throws {
        guard let model = config.gpt2 else { preconditionFailure("a causal_lm run reads a GPT-2 model section") }
        self.config = config
        self.model = model
        sequenceLength = config.batch.sequenceLength
        if let trainFile = config.task.trainFile {
            guard let initFrom = config.initFrom else {
                throw ConfigError(source: "config", keyPath: "init_from", message: "missing; instruction tuning (causal_lm with "
                    + "task.train_file) starts from a GPT-2 directory, whose tokenizer it uses")
            }
            let data = try communicator.collectively { try InstructionSequences.open(config: config, trainFile: trainFile, from: initFrom) }
            (train, validation, padID, dataFingerprint) = (data.train, data.validation, data.endOfText, data.fingerprint)
            tokenizerFiles = (initFrom, try ByteLevelBPE.files(inDirectory: initFrom).map { ($0 as NSString).lastPathComponent })
            return
        }
        let (train, validation) = try PreparedData.open(
            config: config, objective: .causalLM, communicator: communicator, log: log
        ) { train in
            try CausalLMTask.check(train, against: model)
        }
        (self.train, self.validation) = (PackedSequences(dataset: train), validation.map(PackedSequences.init))
        padID = train.manifest.vocabulary.padID
        dataFingerprint = try fileDigest((config.data.directory as NSString).appendingPathComponent(DatasetManifest.fileName))
        let main = train.manifest.vocabulary.file
        tokenizerFiles = (config.data.directory, [main] + (main == ByteLevelBPE.vocabularyFile ? [ByteLevelBPE.mergesFile] : []))
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
            parameters: model.parameterCount, bytesPerParameter: model.lora == nil ? 16 : 4,
            activationBytes: 4 * perToken * Double(sequences) * T)
    }

    func makeModel(microBatchSize: Int, inferenceOnly: Bool) -> GPT2Model { GPT2Model(config: model, inferenceOnly: inferenceOnly) }

    func batches(_ split: DataSplit, global: [Int], share: [Int], microBatchSize: Int, epoch: Int) throws -> [CausalLMBatch] {
        guard let sequences = split == .train ? train : validation else {
            throw TrainingError("no \(split) data to read batches from")
        }
        // Padded to the longest sequence of the global batch, the same on every rank.
        let length = global.map(sequences.length(of:)).max() ?? sequenceLength
        return try stride(from: 0, to: share.count, by: microBatchSize).map { start in
            let indices = Array(share[start..<min(share.count, start + microBatchSize)])
            var batch = CausalLMBatch(sequences: indices.count, length: length, exampleIndices: indices)
            batch.ids = [Int32](repeating: padID, count: indices.count * length)
            batch.mask = [Int32](repeating: 0, count: indices.count * length)
            batch.labels = [Int32](repeating: GPT2Model.ignoredLabel, count: indices.count * length)
            for (b, index) in indices.enumerated() {
                let (ids, labels) = try sequences.sequence(index)
                for t in ids.indices {
                    batch.ids[b * length + t] = ids[t]
                    batch.mask[b * length + t] = 1
                    batch.labels[b * length + t] = labels[t]
                }
                batch.realTokens += ids.count
                // Position t predicts token t + 1 where that token is learned.
                batch.predictedTokens += labels.dropFirst().filter { $0 != GPT2Model.ignoredLabel }.count
            }
            return batch
        }
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

    /// The tokenizer files (the data's, as given to `prepare`, or `init_from`'s) and tokenizer_config.json,
    /// so `AutoTokenizer.from_pretrained` loads the checkpoint.
    func writeTokenizer(to directory: String) throws {
        let configPath = (directory as NSString).appendingPathComponent(ByteLevelBPE.configFile)
        do {
            try ByteLevelBPE.tokenizerConfig(endOfText: true).prettyText().write(toFile: configPath, atomically: true, encoding: .utf8)
        } catch {
            throw TrainingError("cannot write \(configPath): \(error.localizedDescription)")
        }
        for file in tokenizerFiles.names where file != ByteLevelBPE.configFile {
            let source = (tokenizerFiles.directory as NSString).appendingPathComponent(file)
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

/// The sequences of one split of a causal LM run: token ids and their labels (the ids, or
/// `GPT2Model.ignoredLabel` where nothing is learned).
protocol CausalSequences {
    var count: Int { get }
    func length(of index: Int) -> Int
    func sequence(_ index: Int) throws -> (ids: [Int32], labels: [Int32])
}

/// Packed sequences of a prepared split: every token is learned.
struct PackedSequences: CausalSequences {
    let dataset: PretrainingDataset

    var count: Int { dataset.count }

    func length(of index: Int) -> Int {
        let (shard, local) = dataset.location(of: index)
        return shard.tokens(of: local).count
    }

    func sequence(_ index: Int) throws -> (ids: [Int32], labels: [Int32]) {
        let (shard, local) = dataset.location(of: index)
        try shard.checkRecord(local, vocabularySize: dataset.manifest.vocabulary.size, nspLabelCount: 1)
        let ids = shard.tokens(of: local).map { Int32(bitPattern: $0 & ShardFormat.tokenIDMask) }
        return (ids, ids)
    }
}

/// Instruction examples, encoded once with `init_from`'s tokenizer.
struct InstructionSequences: CausalSequences {
    let ids: [[Int32]]
    let labels: [[Int32]]

    var count: Int { ids.count }
    func length(of index: Int) -> Int { ids[index].count }
    func sequence(_ index: Int) throws -> (ids: [Int32], labels: [Int32]) { (ids[index], labels[index]) }

    /// Both files read and encoded; the fingerprint covers the files, the tokenizer and the length.
    static func open(config: TrainingConfig, trainFile: String, from initFrom: String) throws
        -> (train: InstructionSequences, validation: InstructionSequences?, endOfText: Int32, fingerprint: String)
    {
        let tokenizer: ByteLevelBPE
        do {
            tokenizer = try ByteLevelBPE.load(directory: initFrom)
        } catch {
            throw ConfigError(source: "config", keyPath: "init_from", message: "\(error)")
        }
        guard let endOfText = tokenizer.id(ofSpelled: ByteLevelBPE.endOfText) else {
            throw ConfigError(source: "config", keyPath: "init_from",
                              message: "\(initFrom)'s tokenizer has no \(ByteLevelBPE.endOfText); instruction tuning ends every example with it")
        }
        let vocabulary = config.gpt2?.vocabSize ?? 0
        func encode(_ path: String) throws -> InstructionSequences {
            var ids: [[Int32]] = [], labels: [[Int32]] = []
            for example in try InstructionExample.read(path: path) {
                let encoded = example.encoded(
                    tokenizer, endOfText: endOfText, maxLength: config.batch.sequenceLength, ignored: GPT2Model.ignoredLabel)
                guard encoded.labels.dropFirst().contains(where: { $0 != GPT2Model.ignoredLabel }) else {
                    throw TaskDataError(path: path, line: example.line, "the prompt fills all batch.sequence_length "
                                            + "(\(config.batch.sequenceLength)) tokens, so nothing of the response is learned; "
                                            + "shorten the prompt or raise batch.sequence_length")
                }
                if let large = encoded.ids.first(where: { Int($0) >= vocabulary }) {
                    throw ConfigError(source: "config", keyPath: "model.vocab_size",
                                      message: "is \(vocabulary) but \(initFrom)'s tokenizer gives id \(large); use the model's own tokenizer")
                }
                ids.append(encoded.ids)
                labels.append(encoded.labels)
            }
            return InstructionSequences(ids: ids, labels: labels)
        }
        let train = try encode(trainFile)
        let validation = try config.task.validationFile.map(encode)
        let digests = try [trainFile] + (config.task.validationFile.map { [$0] } ?? []).map(fileDigest)
        let fingerprint = ([tokenizer.fingerprint, "\(config.batch.sequenceLength)"] + digests).joined(separator: "/")
        return (train, validation, endOfText, fingerprint)
    }
}
