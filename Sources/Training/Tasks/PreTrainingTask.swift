import Crypto
import Data
import Distributed
import Foundation
import Transformer

/// BERT pre-training as a task: masked LM and next-sentence prediction on a prepared data directory
/// (`swiftbert prepare`), masking applied as batches are read.
final class PreTrainingTask: BertTrainingTask {
    typealias Model = BertForPreTraining
    typealias Batch = PretrainingBatch

    let config: TrainingConfig
    /// nil for the benchmark, which runs synthetic batches.
    let train: PretrainingDataset?
    let validation: PretrainingDataset?
    let dataFingerprint: String
    /// The vocabulary of the data, written as the checkpoints' tokenizer (nil when unreadable).
    let vocabularyTokens: [String]?
    let sequenceLength: Int

    /// Opens and verifies the data directory (a collective: see `openData`).
    init(config: TrainingConfig, communicator: Communicator, log: (String) -> Void) throws {
        self.config = config
        let (train, validation) = try PreTrainingTask.openData(config: config, communicator: communicator, log: log)
        (self.train, self.validation) = (train, validation)
        sequenceLength = train.sequenceLength
        let directory = config.data.directory
        let manifestPath = (directory as NSString).appendingPathComponent(DatasetManifest.fileName)
        dataFingerprint = try fileDigest(manifestPath)
        let vocabularyPath = (directory as NSString).appendingPathComponent(train.manifest.vocabulary.file)
        vocabularyTokens = try? Vocabulary(contentsOfFile: vocabularyPath).tokens
    }

    /// The task without data, for the benchmark's synthetic batches of `sequenceLength` tokens.
    init(syntheticDataFor config: TrainingConfig, sequenceLength: Int) {
        self.config = config
        (train, validation, vocabularyTokens) = (nil, nil, nil)
        self.sequenceLength = sequenceLength
        dataFingerprint = ""
    }

    var modelConfig: BertConfig { config.model }
    var trainCount: Int { train?.count ?? 0 }
    var validationCount: Int { validation?.count ?? 0 }
    var sequencesPerExample: Int { 1 }

    /// Always a training model: pre-training's evaluation runs through `step`, which needs its buffers.
    func makeModel(microBatchSize: Int, inferenceOnly: Bool) -> BertForPreTraining {
        BertForPreTraining(config: config.model, maxSequenceCount: microBatchSize, sequenceLength: sequenceLength)
    }

    func batches(_ split: DataSplit, global: [Int], share: [Int], microBatchSize: Int, epoch: Int) throws -> [PretrainingBatch] {
        guard let dataset = split == .train ? train : validation else {
            throw TrainingError("no \(split) data to read batches from")
        }
        return try stride(from: 0, to: share.count, by: microBatchSize).map { start in
            try dataset.batch(
                sampleIndices: Array(share[start..<min(share.count, start + microBatchSize)]), epoch: epoch, seed: config.seed)
        }
    }

    struct Normalizers {
        /// Masked tokens and sequences of the global batch (times the batches an evaluation averages).
        var maskedTokens: Float
        var sequences: Float
    }

    func normalizers(
        _ batches: [PretrainingBatch], globalExamples: Int, averagedOver: Int, comm: Communicator
    ) throws -> Normalizers {
        let masked = try comm.allReduceSum(Int64(batches.reduce(0) { $0 + $1.maskedPositions.count }))
        return Normalizers(
            maskedTokens: Float(max(1, masked)) * Float(averagedOver), sequences: Float(globalExamples) * Float(averagedOver))
    }

    func checkInitFrom(_ directory: String) throws {
        try InitFromCheck.check(
            directory: directory, model: config.model, dataVocabulary: vocabularyTokens,
            dataLowercase: train?.manifest.vocabulary.lowercase ?? true)
    }

    func pass(_ model: BertForPreTraining, _ batch: PretrainingBatch, _ normalizers: Normalizers, _ options: PassOptions)
        -> (sums: Sums, outputs: [Output])
    {
        let inputs = EncoderInputs(
            inputIDs: batch.inputIDs, tokenTypeIDs: batch.tokenTypeIDs, attentionMask: batch.attentionMask,
            sequenceCount: batch.sequenceCount, sequenceLength: batch.sequenceLength, sampleIndices: batch.sampleIndices)
        let targets = PreTrainingTargets(
            maskedPositions: batch.maskedPositions, maskedLabels: batch.maskedLabels, nspLabels: batch.nspLabels)
        let result = model.step(
            inputs, targets: targets, maskedTokenNormalizer: normalizers.maskedTokens,
            sequenceNormalizer: normalizers.sequences, options: options)
        let sums = Sums(
            mlmLoss: Double(result.mlmLoss), nspLoss: Double(result.nspLoss), mlmCorrect: Double(result.mlmCorrect),
            mlmCount: Double(result.mlmCount), nspCorrect: Double(result.nspCorrect), nspCount: Double(result.nspCount))
        return (sums, [])
    }

    func validationMetrics(_ sums: Sums, outputs: [Output]) -> [NamedMetric] { [] }

    func writeTokenizer(to directory: String) throws {
        guard let vocabularyTokens, let train else { return }
        try PretrainedTokenizer.write(
            tokens: vocabularyTokens, settings: BertTokenizerSettings(lowercase: train.manifest.vocabulary.lowercase),
            modelMaxLength: config.model.maxPositionEmbeddings, to: directory)
    }

    /// Pre-training's validation has no per-example outputs.
    struct Output: Codable {}

    struct Sums: TaskSums {
        var mlmLoss = 0.0, nspLoss = 0.0
        var mlmCorrect = 0.0, mlmCount = 0.0, nspCorrect = 0.0, nspCount = 0.0

        init() {}

        init(mlmLoss: Double, nspLoss: Double, mlmCorrect: Double, mlmCount: Double, nspCorrect: Double, nspCount: Double) {
            (self.mlmLoss, self.nspLoss, self.mlmCorrect, self.mlmCount, self.nspCorrect, self.nspCount) =
                (mlmLoss, nspLoss, mlmCorrect, mlmCount, nspCorrect, nspCount)
        }

        var values: [Double] { [mlmLoss, nspLoss, mlmCorrect, mlmCount, nspCorrect, nspCount] }

        init(values: [Double]) {
            self.init(
                mlmLoss: values[0], nspLoss: values[1], mlmCorrect: values[2], mlmCount: values[3],
                nspCorrect: values[4], nspCount: values[5])
        }

        var loss: Double { mlmLoss + nspLoss }

        func fill(_ record: inout MetricsRecord, steps: Int) {
            let n = Double(max(1, steps))
            record.loss = loss / n
            record.mlmLoss = mlmLoss / n
            record.nspLoss = nspLoss / n
            record.mlmAccuracy = mlmCount > 0 ? mlmCorrect / mlmCount : nil
            record.nspAccuracy = nspCount > 0 ? nspCorrect / nspCount : nil
            if record.split == .validation { record.perplexity = exp(mlmLoss / n) }
        }
    }
}

extension PretrainingBatch: TaskBatch {
    var exampleIndices: [Int] { sampleIndices }
    /// Pre-training sequences are packed to the full length: every position counts, as in `bench`.
    var throughputTokens: Int { sequenceCount * sequenceLength }
}

/// SHA-256 of a file's bytes, in hex.
func fileDigest(_ path: String) throws -> String {
    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    return SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}
