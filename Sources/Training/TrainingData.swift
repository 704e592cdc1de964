import Data
import Distributed
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A run's prepared data (`data.directory`): both splits opened, every shard's checksum verified
/// before any sample is used, and the data checked against the configuration.
enum PreparedData {
    /// The training split and the validation split of `config.data.directory`, which must hold data
    /// for `objective`; the validation split is nil, with a notice, when the data has none. `check`
    /// runs on every rank after the shards are verified. A collective: when any rank fails, every rank throws the same `CollectiveError`, so a
    /// damaged file is reported once and no rank hangs.
    static func open(
        config: TrainingConfig, objective: PretrainingObjective, communicator comm: Communicator, log: (String) -> Void,
        check: (PretrainingDataset) throws -> Void
    ) throws -> (train: PretrainingDataset, validation: PretrainingDataset?) {
        // Each host verifies its own copies (data may sit on node-local disks), its ranks sharing them.
        let host = try HostLayout.gather(comm, hostname: hostName())
        return try comm.collectively {
            let directory = config.data.directory
            let train = try PretrainingDataset(directory: directory, split: .train)
            guard train.manifest.objective == objective else {
                throw ConfigError(
                    source: "config", keyPath: "data.directory",
                    message: "\(directory) holds \(train.manifest.objective.rawValue) data but task \(config.task.kind.rawValue) "
                        + "needs data prepared with `swiftbert prepare --objective \(objective.rawValue)`")
            }
            var validation: PretrainingDataset?
            if train.manifest.validation.shards.isEmpty {
                log("notice: \(directory) has no validation split (prepared with --validation-fraction 0, or too few "
                    + "documents); evaluation is off")
            } else {
                validation = try PretrainingDataset(directory: directory, split: .validation)
            }
            let shards = train.shards + (validation?.shards ?? [])
            let mine = shards.indices.filter { $0 % host.localSize == host.localRank }
            let started = Date()
            for index in mine { try shards[index].verifyChecksum() }
            let seconds = Date().timeIntervalSince(started)
            if seconds >= 1 {
                let bytes = mine.reduce(0) { $0 + shards[$1].byteCount }
                log(String(format: "verified the checksums of %d of %d shards (%.0f MB) in %.1f s", mine.count,
                           shards.count, Double(bytes) / 1e6, seconds))
            }
            guard train.count > 0 else {
                throw TrainingError("\(directory): the training split holds no instances; prepare more data")
            }
            if train.sequenceLength != config.batch.sequenceLength {
                throw ConfigError(
                    source: "config", keyPath: "batch.sequence_length",
                    message: "is \(config.batch.sequenceLength) but \(directory) was prepared with max_seq_length "
                        + "\(train.sequenceLength); set it to \(train.sequenceLength) or prepare the data again")
            }
            try check(train)
            return (train, validation)
        }
    }

    private static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(cString: buffer)
    }
}

extension PreTrainingTask {
    /// The data with masking set up, checked against the BERT model.
    static func openData(config: TrainingConfig, communicator comm: Communicator, log: (String) -> Void) throws
        -> (train: PretrainingDataset, validation: PretrainingDataset?)
    {
        let (train, validation) = try PreparedData.open(config: config, objective: .mlm, communicator: comm, log: log) { train in
            try check(train, against: config)
        }
        train.masker = Masker(
            settings: MaskingSettings(
                maskedLMProbability: config.data.maskedLMProbability,
                maxPredictionsPerSequence: config.data.maxPredictionsPerSequence,
                wholeWordMasking: config.data.wholeWordMasking),
            maskID: train.manifest.vocabulary.maskID, vocabularySize: train.manifest.vocabulary.size)
        validation?.masker = train.masker
        return (train, validation)
    }

    /// The data's shape against the model and batch settings.
    private static func check(_ train: PretrainingDataset, against config: TrainingConfig) throws {
        let directory = train.directory
        if train.manifest.vocabulary.size > config.model.vocabSize {
            throw ConfigError(
                source: "config", keyPath: "model.vocab_size",
                message: "is \(config.model.vocabSize) but the data's vocabulary has \(train.manifest.vocabulary.size) "
                    + "tokens; set vocab_size to at least \(train.manifest.vocabulary.size)")
        }
        if train.sequenceLength > config.model.maxPositionEmbeddings {
            throw ConfigError(
                source: "config", keyPath: "model.max_position_embeddings",
                message: "is \(config.model.maxPositionEmbeddings), shorter than the data's sequences of \(train.sequenceLength)")
        }
        let nspClasses = train.manifest.instances.nextSentenceMode.classCount
        if nspClasses != config.model.nspClassCount {
            throw ConfigError(
                source: "config", keyPath: "model.num_nsp_labels",
                message: "is \(config.model.nspClassCount) but \(directory) was prepared with \(nspClasses) NSP classes")
        }
    }
}
