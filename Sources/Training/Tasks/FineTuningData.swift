import Crypto
import Data
import Distributed
import Foundation
import Transformer

/// What every fine-tuning task shares: the model's tokenizer (from `init_from`), the encoded
/// training and validation examples, the data fingerprint, and batches padded to the longest
/// sequence of their global batch, so that how a global batch is shared between ranks and
/// micro-batches never changes a sequence's padding (nor, through it, any result).
struct FineTuningData {
    let tokenizer: BertTokenizer
    let train: [TaskFeature]
    let validation: [TaskFeature]
    /// The label (or tag) names, index = class id.
    let labelNames: [String]
    let dataFingerprint: String

    /// Reads the tokenizer of `config.initFrom` and both files through `read` (path, label names to
    /// use: nil for the training file, its names for the validation file), encoding them on all cores.
    init(
        config: TrainingConfig, log: (String) -> Void,
        read: (_ path: String, _ labelNames: [String]?, _ encoder: TaskEncoder) throws -> (features: [TaskFeature], labelNames: [String])
    ) throws {
        guard let initFrom = config.initFrom else {
            throw ConfigError(
                source: "config", keyPath: "init_from",
                message: "missing; fine-tuning starts from a pre-trained model directory (a SwiftBERT checkpoint or a "
                    + "Hugging Face BERT directory), whose tokenizer also encodes the data")
        }
        tokenizer = try PretrainedTokenizer.load(directory: initFrom).tokenizer
        let encoder = try TaskEncoder(tokenizer: tokenizer, maxLength: config.batch.sequenceLength)
        let trainFile = config.task.trainFile!
        let started = Date()
        let (train, names) = try read(trainFile, config.task.labels, encoder)
        guard !train.isEmpty else { throw TaskDataError(path: trainFile, "holds no examples; give labelled data") }
        var validation: [TaskFeature] = []
        if let file = config.task.validationFile {
            validation = file == trainFile ? train : try read(file, names, encoder).features
        }
        self.train = train
        self.validation = validation
        labelNames = names
        log(String(format: "read %d training and %d validation examples, %d labels, in %.1f s", train.count,
                   validation.count, names.count, Date().timeIntervalSince(started)))
        var digest = SHA256()
        for file in [trainFile, config.task.validationFile].compactMap({ $0 }) {
            digest.update(data: try Data(contentsOf: URL(fileURLWithPath: file), options: .alwaysMapped))
        }
        digest.update(data: Data(names.joined(separator: "\n").utf8))
        dataFingerprint = digest.finalize().map { String(format: "%02x", $0) }.joined()
    }

    func features(_ split: DataSplit) -> [TaskFeature] { split == .train ? train : validation }

    /// This rank's micro-batches of `share`, padded to the longest sequence of `global`.
    func batches(
        _ split: DataSplit, global: [Int], share: [Int], microBatchSize: Int, labelCount: Int
    ) -> [FineTuningBatch] {
        let features = features(split)
        let length = global.lazy.flatMap { features[$0].sequences }.map(\.inputIDs.count).max() ?? 1
        return stride(from: 0, to: share.count, by: microBatchSize).map { start in
            let indices = Array(share[start..<min(share.count, start + microBatchSize)])
            let padded = PaddedBatch(
                features: indices.map { features[$0] }, padID: tokenizer.vocabulary.padID, labelCount: labelCount,
                length: length)
            return FineTuningBatch(padded: padded, exampleIndices: indices)
        }
    }

    /// Writes the tokenizer files of a checkpoint (the same vocabulary and settings as `init_from`'s).
    func writeTokenizer(to directory: String, modelMaxLength: Int) throws {
        try PretrainedTokenizer.write(
            tokens: tokenizer.vocabulary.tokens, settings: tokenizer.settings, modelMaxLength: modelMaxLength, to: directory)
    }
}

/// A micro-batch of a fine-tuning task.
struct FineTuningBatch: TaskBatch {
    var padded: PaddedBatch
    var exampleIndices: [Int]

    /// Real tokens only: padding is not work done.
    var throughputTokens: Int { padded.attentionMask.reduce(0) { $0 + Int($1) } }

    /// The encoder's inputs; every sequence of an example is keyed by the example for dropout.
    var inputs: EncoderInputs {
        let perExample = padded.sequencesPerExample
        return EncoderInputs(
            inputIDs: padded.inputIDs, tokenTypeIDs: padded.tokenTypeIDs, attentionMask: padded.attentionMask,
            sequenceCount: padded.sequenceCount, sequenceLength: padded.sequenceLength,
            sampleIndices: exampleIndices.flatMap { index in (0..<perExample).map { index * perExample + $0 } })
    }
}

/// A fine-tuning task: a head on `FineTuningData`. What every such task answers the same way is
/// written once here; a task with several sequences per example (multiple choice) says so itself.
protocol FineTuningTask: BertTrainingTask {
    var config: TrainingConfig { get }
    var data: FineTuningData { get }
}

extension FineTuningTask {
    var trainCount: Int { data.train.count }
    var validationCount: Int { data.validation.count }
    var sequenceLength: Int { config.batch.sequenceLength }
    var sequencesPerExample: Int { 1 }
    var dataFingerprint: String { data.dataFingerprint }

    /// The tokenizer is `init_from`'s own, so model and data cannot disagree on it.
    func checkInitFrom(_ directory: String) throws {}

    func writeTokenizer(to directory: String) throws {
        try data.writeTokenizer(to: directory, modelMaxLength: modelConfig.maxPositionEmbeddings)
    }
}
