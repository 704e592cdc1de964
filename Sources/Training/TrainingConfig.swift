import Crypto
import Data
import Foundation
import Kernels
import Transformer

/// A configuration problem: the file (or command-line override), the key path inside it, and what
/// is wrong with a hint of what to do.
public struct ConfigError: Error, LocalizedError, CustomStringConvertible {
    /// The config file path, or the command-line override the value came from.
    public var source: String
    /// Dotted key path, e.g. `optimizer.learning_rate`; empty for the whole document.
    public var keyPath: String
    public var message: String

    public init(source: String, keyPath: String, message: String) {
        self.source = source
        self.keyPath = keyPath
        self.message = message
    }

    /// One line: keys and values quoted from the file may hold line breaks, which are shown escaped.
    public var description: String {
        (keyPath.isEmpty ? "\(source): \(message)" : "\(source): \(keyPath): \(message)").escapingLineBreaks
    }
    public var errorDescription: String? { description }
}

/// The run configuration file (JSON).
///
/// `model` holds Hugging Face `BertConfig` keys verbatim (`hidden_size`, `num_attention_heads`, ...),
/// read by `Transformer.BertConfig`; a key that is neither one of its keys nor Hugging Face bookkeeping
/// (`transformers_version`, `torch_dtype`, ...) is an error, so a misspelt key cannot silently fall
/// back to a bert-base default. Everything else is SwiftBERT's own:
///
/// ```json
/// { "model": { ... HF config.json keys ... },
///   "data": { "directory": "data/kjv", "masked_lm_prob": 0.15, "max_predictions_per_seq": 20,
///             "whole_word_masking": false },
///   "batch": { "global_batch_size": 256, "micro_batch_size": 32, "sequence_length": 128 },
///   "optimizer": { "name": "adamw", "learning_rate": 1e-4, "beta1": 0.9, "beta2": 0.999,
///                  "epsilon": 1e-6, "weight_decay": 0.01, "bias_correction": true, "max_grad_norm": 1.0 },
///   "schedule": { "warmup_steps": 1000, "total_steps": 100000, "decay": "linear", "min_lr_ratio": 0 },
///   "checkpoint": { "every_steps": 1000, "keep_last": 3, "keep_every": 0 },
///   "logging": { "every_steps": 10, "eval_every_steps": 1000, "eval_batches": 20 },
///   "seed": 12345, "max_consecutive_nonfinite_steps": 3, "allreduce_bucket_mb": 25,
///   "init_from": null, "watchdog_seconds": 600 }
/// ```
///
/// Only `model`, `data.directory`, `batch.global_batch_size` and `schedule.total_steps` are required; every
/// other key has the default shown by `resolvedJSON()`. Unknown keys, wrong types and impossible
/// values are `ConfigError`s naming the key path.
public struct TrainingConfig: Equatable, Sendable {
    /// The model, from Hugging Face `config.json` keys.
    public var model: BertConfig
    public var data: DataSettings
    public var batch: BatchSettings
    public var optimizer: OptimizerSettings
    public var schedule: ScheduleSettings
    public var checkpoint: CheckpointSettings
    public var logging: LoggingSettings
    /// Root of every random stream of the run (initialisation, sampling, masking, dropout).
    public var seed: UInt64
    /// Optimizer steps in a row whose gradients contain NaN/Inf (and are skipped) before the run stops.
    public var maxConsecutiveNonfiniteSteps: Int
    /// Size of the gradient all-reduce buckets, in MiB.
    public var allreduceBucketMB: Double
    /// A Hugging Face model directory to initialise the weights from, instead of random initialisation.
    public var initFrom: String?
    /// Under MPI, seconds a rank may go without progress (a step, an evaluation, a checkpoint) before
    /// the job is declared hung and aborted; with in-process ranks, seconds a rank waits for the others
    /// in a collective. 0 disables the watchdog.
    public var watchdogSeconds: Double
    /// What to train: pre-training (the default) or a fine-tuning task on labelled files.
    public var task = TaskSettings()

    /// Masking settings; the corpus-derived settings (sequence pairs, NSP mode) come from the data manifest.
    public struct DataSettings: Equatable, Sendable {
        /// Directory holding the shards and their manifest.
        public var directory: String
        public var maskedLMProbability: Double = 0.15
        public var maxPredictionsPerSequence: Int = 20
        public var wholeWordMasking: Bool = false

        public init(directory: String) { self.directory = directory }
    }

    public struct BatchSettings: Equatable, Sendable {
        /// Sequences per optimizer step, summed over all ranks and micro-batches.
        public var globalBatchSize: Int
        /// Sequences per forward/backward pass on one rank; nil means the whole per-rank share.
        public var microBatchSize: Int? = nil
        /// Tokens per sequence (max_seq_length), padding included.
        public var sequenceLength: Int = 128

        public init(globalBatchSize: Int) { self.globalBatchSize = globalBatchSize }
    }

    public enum OptimizerName: String, Sendable, CaseIterable { case adamw, lamb }

    public struct OptimizerSettings: Equatable, Sendable {
        public var name: OptimizerName = .adamw
        public var learningRate: Double = 1e-4
        public var beta1: Double = 0.9
        public var beta2: Double = 0.999
        public var epsilon: Double = 1e-6
        public var weightDecay: Double = 0.01
        /// Divide the moments by (1 - beta^t). Google's BERT AdamWeightDecay does not; PyTorch's AdamW does.
        public var biasCorrection: Bool = true
        /// Clip gradients to this global L2 norm; 0 disables clipping.
        public var maxGradNorm: Double = 1.0

        public init() {}
    }

    public enum DecayKind: String, Sendable, CaseIterable { case linear, cosine, constant }

    public struct ScheduleSettings: Equatable, Sendable {
        public var warmupSteps: Int = 0
        public var totalSteps: Int
        public var decay: DecayKind = .linear
        /// The learning rate decays to `min_lr_ratio` x the peak, not to 0.
        public var minLRRatio: Double = 0

        public init(totalSteps: Int) { self.totalSteps = totalSteps }
    }

    public struct CheckpointSettings: Equatable, Sendable {
        public var everySteps: Int = 1000
        /// Keep the newest `keep_last` checkpoints ...
        public var keepLast: Int = 3
        /// ... and also every checkpoint whose step is a multiple of `keep_every` (0: none).
        public var keepEvery: Int = 0

        public init() {}
    }

    public struct LoggingSettings: Equatable, Sendable {
        public var everySteps: Int = 10
        /// Evaluate on the validation split every this many steps (0: never).
        public var evalEverySteps: Int = 1000
        /// Global batches (of `batch.global_batch_size` sequences, shared by the ranks) in one
        /// evaluation; fewer when the validation split holds fewer.
        public var evalBatches: Int = 20

        public init() {}
    }

    /// A configuration with every default filled in.
    public init(model: BertConfig, dataDirectory: String, globalBatchSize: Int, totalSteps: Int) {
        self.model = model
        data = DataSettings(directory: dataDirectory)
        batch = BatchSettings(globalBatchSize: globalBatchSize)
        optimizer = OptimizerSettings()
        schedule = ScheduleSettings(totalSteps: totalSteps)
        checkpoint = CheckpointSettings()
        logging = LoggingSettings()
        seed = 12345
        maxConsecutiveNonfiniteSteps = 3
        allreduceBucketMB = 25
        initFrom = nil
        watchdogSeconds = 600
    }

    // MARK: - Loading

    /// Reads a config file and applies command-line overrides (`key.path=value`, see
    /// `init(text:source:overrides:)`).
    public static func load(contentsOfFile path: String, overrides: [String] = []) throws -> TrainingConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(source: path, keyPath: "",
                              message: "cannot read the config file (\(error.localizedDescription)); check the --config path")
        }
        return try TrainingConfig(text: text, source: path, overrides: overrides)
    }

    /// Parses a config from JSON text. Each override is `key.path=value`; the value is read as JSON
    /// when it parses as JSON (`1e-4`, `true`, `null`, `"text"`) and as a plain string otherwise
    /// (`optimizer.name=lamb`). Overrides may also set `model.*` keys.
    public init(text: String, source: String = "config", overrides: [String] = []) throws {
        var root: JSONValue
        do {
            root = try JSONValue.parse(text)
        } catch let error as JSONValue.SyntaxError {
            throw ConfigError(source: source, keyPath: "", message: "invalid JSON at \(error)")
        }
        var overridden: [String: String] = [:]
        for override in overrides {
            guard let equals = override.firstIndex(of: "="), equals != override.startIndex else {
                throw ConfigError(source: "override '\(override)'", keyPath: "",
                                  message: "expected key.path=value, e.g. optimizer.learning_rate=2e-4")
            }
            let path = String(override[..<equals])
            let rawValue = String(override[override.index(after: equals)...])
            let value = (try? JSONValue.parse(rawValue)) ?? .string(rawValue)
            let keys = path.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard !keys.contains(where: \.isEmpty) else {
                throw ConfigError(source: "override '\(override)'", keyPath: path, message: "empty key in the key path")
            }
            try TrainingConfig.set(value, at: keys[...], in: &root, override: override)
            overridden[path] = override
        }
        do {
            try self.init(root: root, source: source)
        } catch var error as ConfigError {
            // Blame the override when the bad value came from the command line.
            if let override = overridden[error.keyPath] { error.source = "override '\(override)'" }
            throw error
        }
    }

    private static func set(_ value: JSONValue, at keys: ArraySlice<String>, in node: inout JSONValue,
                            override: String) throws {
        guard case var .object(members) = node else {
            throw ConfigError(source: "override '\(override)'", keyPath: "",
                              message: "cannot set a key inside \(node.kindDescription)")
        }
        let key = keys.first!
        let index = members.firstIndex { $0.key == key }
        if keys.count == 1 {
            if let index { members[index].value = value } else { members.append((key, value)) }
        } else {
            var child = index.map { members[$0].value } ?? .object([])
            try set(value, at: keys.dropFirst(), in: &child, override: override)
            if let index { members[index].value = child } else { members.append((key, child)) }
        }
        node = .object(members)
    }

    private init(root: JSONValue, source: String) throws {
        var top = try ObjectReader(root, path: "", source: source, required: true)

        var t = try top.object("task", required: false)
        task = try TaskSettings(&t)
        try t.finish()
        let preTraining = task.kind == .pretraining
        // A fine-tuning run may take its model from init_from's config.json.
        let modelSection = top.take("model")
        if modelSection == nil, !preTraining, !top.members.contains(where: { $0.key == "init_from" }) {
            // Without either, name what a fine-tuning run lacks rather than the model section.
            throw ConfigError(source: source, keyPath: "init_from", message:
                "missing; fine-tuning starts from a pre-trained model directory (a SwiftBERT checkpoint or a Hugging Face "
                    + "BERT directory), whose config.json and tokenizer it uses")
        }
        if modelSection == nil, !preTraining, case let .string(directory)? = top.members.first(where: { $0.key == "init_from" })?.value {
            model = try TrainingConfig.readModel(directory: directory, source: source)
        } else {
            model = try TrainingConfig.readModel(modelSection, source: source)
        }

        var d = try top.object("data", required: preTraining)
        data = DataSettings(directory: try d.string("directory", required: preTraining) ?? "")
        if preTraining && data.directory.isEmpty { throw d.error("directory", "must not be empty; give the shard directory") }
        data.maskedLMProbability = try d.double("masked_lm_prob", default: data.maskedLMProbability) {
            $0 > 0 && $0 < 1 ? nil : "must be between 0 and 1 (exclusive), typically 0.15"
        }
        data.maxPredictionsPerSequence = try d.int("max_predictions_per_seq", default: data.maxPredictionsPerSequence) {
            $0 >= 1 ? nil : "must be at least 1"
        }
        data.wholeWordMasking = try d.bool("whole_word_masking", default: data.wholeWordMasking)
        try d.finish()

        var b = try top.object("batch", required: true)
        batch = BatchSettings(globalBatchSize: try b.int("global_batch_size", default: nil) {
            (1...TrainingConfig.maxGlobalBatchSize).contains($0) ? nil
                : "must be between 1 and \(TrainingConfig.maxGlobalBatchSize.formatted()) sequences"
        })
        batch.microBatchSize = try b.optionalInt("micro_batch_size") {
            $0 >= 1 ? nil : "must be at least 1 (or null for the whole per-rank share)"
        }
        batch.sequenceLength = try b.int("sequence_length", default: batch.sequenceLength) {
            $0 >= 5 ? nil : "must be at least 5 ([CLS] A [SEP] B [SEP])"
        }
        if let micro = batch.microBatchSize, micro > batch.globalBatchSize {
            throw b.error("micro_batch_size", "is \(micro), larger than global_batch_size \(batch.globalBatchSize); lower it")
        }
        if batch.sequenceLength > model.maxPositionEmbeddings {
            throw b.error("sequence_length", "is \(batch.sequenceLength) but model.max_position_embeddings is "
                + "\(model.maxPositionEmbeddings); use a shorter sequence or a model with more positions")
        }
        try b.finish()
        if data.maxPredictionsPerSequence > batch.sequenceLength {
            throw ConfigError(source: source, keyPath: "data.max_predictions_per_seq",
                              message: "is \(data.maxPredictionsPerSequence), more than batch.sequence_length \(batch.sequenceLength)")
        }

        var o = try top.object("optimizer", required: false)
        optimizer = OptimizerSettings()
        optimizer.name = try o.choice("name", default: optimizer.name)
        optimizer.learningRate = try o.double("learning_rate", default: optimizer.learningRate) {
            $0 > 0 ? nil : "must be positive, e.g. 1e-4"
        }
        optimizer.beta1 = try o.double("beta1", default: optimizer.beta1) {
            $0 >= 0 && $0 < 1 ? nil : "must be in [0, 1), typically 0.9"
        }
        optimizer.beta2 = try o.double("beta2", default: optimizer.beta2) {
            $0 >= 0 && $0 < 1 ? nil : "must be in [0, 1), typically 0.999"
        }
        optimizer.epsilon = try o.double("epsilon", default: optimizer.epsilon) {
            $0 > 0 ? nil : "must be positive, typically 1e-6"
        }
        optimizer.weightDecay = try o.double("weight_decay", default: optimizer.weightDecay) {
            $0 >= 0 && $0 <= 1 ? nil : "must be in [0, 1], typically 0.01"
        }
        optimizer.biasCorrection = try o.bool("bias_correction", default: optimizer.biasCorrection)
        optimizer.maxGradNorm = try o.double("max_grad_norm", default: optimizer.maxGradNorm) {
            $0 >= 0 ? nil : "must not be negative (0 disables clipping)"
        }
        try o.finish()

        var s = try top.object("schedule", required: true)
        schedule = ScheduleSettings(totalSteps: try s.int("total_steps", default: nil) {
            (1...TrainingConfig.maxTotalSteps).contains($0) ? nil
                : "must be between 1 and \(TrainingConfig.maxTotalSteps.formatted())"
        })
        schedule.warmupSteps = try s.int("warmup_steps", default: schedule.warmupSteps) {
            $0 >= 0 ? nil : "must not be negative"
        }
        if schedule.warmupSteps > schedule.totalSteps {
            throw s.error("warmup_steps", "is \(schedule.warmupSteps), more than total_steps \(schedule.totalSteps); lower it")
        }
        schedule.decay = try s.choice("decay", default: schedule.decay)
        schedule.minLRRatio = try s.double("min_lr_ratio", default: schedule.minLRRatio) {
            $0 >= 0 && $0 <= 1 ? nil : "must be in [0, 1]: the final learning rate as a fraction of the peak"
        }
        try s.finish()

        var c = try top.object("checkpoint", required: false)
        checkpoint = CheckpointSettings()
        checkpoint.everySteps = try c.int("every_steps", default: checkpoint.everySteps) {
            $0 >= 1 ? nil : "must be at least 1"
        }
        checkpoint.keepLast = try c.int("keep_last", default: checkpoint.keepLast) {
            $0 >= 1 ? nil : "must be at least 1 (the newest checkpoint is always kept)"
        }
        checkpoint.keepEvery = try c.int("keep_every", default: checkpoint.keepEvery) {
            $0 >= 0 ? nil : "must not be negative (0 keeps no extra checkpoints)"
        }
        try c.finish()

        var l = try top.object("logging", required: false)
        logging = LoggingSettings()
        logging.everySteps = try l.int("every_steps", default: logging.everySteps) { $0 >= 1 ? nil : "must be at least 1" }
        logging.evalEverySteps = try l.int("eval_every_steps", default: logging.evalEverySteps) {
            $0 >= 0 ? nil : "must not be negative (0 disables evaluation)"
        }
        logging.evalBatches = try l.int("eval_batches", default: logging.evalBatches) { $0 >= 1 ? nil : "must be at least 1" }
        try l.finish()

        seed = try top.unsigned("seed", default: 12345)
        maxConsecutiveNonfiniteSteps = try top.int("max_consecutive_nonfinite_steps", default: 3) {
            $0 >= 1 ? nil : "must be at least 1"
        }
        allreduceBucketMB = try top.double("allreduce_bucket_mb", default: 25) {
            $0 >= 0.01 && $0 <= 4096 ? nil : "must be in [0.01, 4096] MiB, typically 25"
        }
        initFrom = try top.string("init_from", required: false)
        watchdogSeconds = try top.double("watchdog_seconds", default: 600) {
            (0...TrainingConfig.maxWatchdogSeconds).contains($0) ? nil
                : "must be between 0 (no watchdog) and \(Int(TrainingConfig.maxWatchdogSeconds).formatted()) seconds"
        }
        try top.finish()
    }

    // Bounds far beyond any real run; they keep sizes and deadlines within what the arithmetic holds.
    static let maxGlobalBatchSize = 1 << 24
    static let maxTotalSteps = 1_000_000_000_000
    static let maxWatchdogSeconds = 1e7

    /// Hugging Face keys that carry no model settings; accepted (and dropped) so that a model section
    /// can be pasted from a Hugging Face `config.json`.
    public static let ignoredModelKeys: Set<String> = [
        "transformers_version", "torch_dtype", "dtype", "use_cache", "classifier_dropout",
        "gradient_checkpointing", "_name_or_path", "is_decoder", "add_cross_attention", "chunk_size_feed_forward",
    ]

    /// The keys `BertConfig` reads, taken from what it writes so the two cannot drift apart.
    private static let modelKeys: Set<String> = {
        guard let data = try? JSONEncoder().encode(BertConfig()),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [] }
        return Set(object.keys)
    }()

    private static func readModel(_ value: JSONValue?, source: String) throws -> BertConfig {
        guard case let .object(members)? = value else {
            throw ConfigError(source: source, keyPath: "model", message: value == nil
                ? "missing; give the Hugging Face BertConfig keys (hidden_size, num_hidden_layers, ...)"
                : "must be an object of Hugging Face BertConfig keys, not \(value!.kindDescription)")
        }
        if let unknown = members.first(where: { !modelKeys.contains($0.key) && !ignoredModelKeys.contains($0.key) }) {
            throw ConfigError(source: source, keyPath: "model." + unknown.key,
                              message: "unknown key; check the spelling or remove it (model keys: "
                                  + modelKeys.sorted().joined(separator: ", ") + ")")
        }
        do {
            return try JSONDecoder().decode(BertConfig.self, from: Data(value!.compactText().utf8))
        } catch let BertConfigError.invalidValue(key, reason, _) {
            throw ConfigError(source: source, keyPath: "model." + key, message: reason)
        } catch {
            throw ConfigError(source: source, keyPath: "model", message: "\(error)")
        }
    }

    /// The model section as JSON, keys sorted (the order `BertConfig.write(to:)` uses).
    private var modelJSON: JSONValue {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(model), let value = try? JSONValue.parse(String(decoding: data, as: UTF8.self))
        else { preconditionFailure("BertConfig must encode to a JSON object") }
        return value
    }

    // MARK: - Batch layout

    /// Splits the global batch over `worldSize` ranks: each rank's share is global / worldSize, run as
    /// `accumulationSteps` micro-batches of `microBatchSize` sequences. The micro-batch is the configured
    /// one (or the whole share when not configured), capped at the share, and must divide the share.
    public func batchLayout(worldSize: Int) throws -> (microBatchSize: Int, accumulationSteps: Int) {
        let global = batch.globalBatchSize
        guard worldSize >= 1 else {
            throw ConfigError(source: "batch layout", keyPath: "batch.global_batch_size",
                              message: "world size must be at least 1, got \(worldSize)")
        }
        guard global % worldSize == 0 else {
            throw ConfigError(
                source: "batch layout", keyPath: "batch.global_batch_size",
                message: "\(global) sequences cannot be split evenly over \(worldSize) ranks; use a global batch that is a "
                    + "multiple of \(worldSize) (e.g. \(max(worldSize, global / worldSize * worldSize))) or another number of ranks")
        }
        let share = global / worldSize
        let micro = min(batch.microBatchSize ?? share, share)
        guard share % micro == 0 else {
            let divisors = (1...share).filter { share % $0 == 0 && $0 <= micro }
            throw ConfigError(
                source: "batch layout", keyPath: "batch.micro_batch_size",
                message: "\(micro) does not divide the per-rank share of \(share) sequences (\(global) over \(worldSize) ranks); "
                    + "use a divisor of \(share) such as \(divisors.last ?? 1)")
        }
        return (micro, share / micro)
    }

    // MARK: - Resolved form and fingerprint

    /// Every setting with defaults filled in, sections in a fixed order. Loading this JSON back gives an
    /// equal configuration; save it into the run directory.
    public var resolved: JSONValue {
        .object([
            ("model", modelJSON),
            ("data", .object([
                ("directory", .string(data.directory)),
                ("masked_lm_prob", .double(data.maskedLMProbability)),
                ("max_predictions_per_seq", .integer(data.maxPredictionsPerSequence)),
                ("whole_word_masking", .bool(data.wholeWordMasking)),
            ])),
            ("batch", .object([
                ("global_batch_size", .integer(batch.globalBatchSize)),
                ("micro_batch_size", batch.microBatchSize.map { .integer($0) } ?? .null),
                ("sequence_length", .integer(batch.sequenceLength)),
            ])),
            ("optimizer", .object([
                ("name", .string(optimizer.name.rawValue)),
                ("learning_rate", .double(optimizer.learningRate)),
                ("beta1", .double(optimizer.beta1)),
                ("beta2", .double(optimizer.beta2)),
                ("epsilon", .double(optimizer.epsilon)),
                ("weight_decay", .double(optimizer.weightDecay)),
                ("bias_correction", .bool(optimizer.biasCorrection)),
                ("max_grad_norm", .double(optimizer.maxGradNorm)),
            ])),
            ("schedule", .object([
                ("warmup_steps", .integer(schedule.warmupSteps)),
                ("total_steps", .integer(schedule.totalSteps)),
                ("decay", .string(schedule.decay.rawValue)),
                ("min_lr_ratio", .double(schedule.minLRRatio)),
            ])),
            ("checkpoint", .object([
                ("every_steps", .integer(checkpoint.everySteps)),
                ("keep_last", .integer(checkpoint.keepLast)),
                ("keep_every", .integer(checkpoint.keepEvery)),
            ])),
            ("logging", .object([
                ("every_steps", .integer(logging.everySteps)),
                ("eval_every_steps", .integer(logging.evalEverySteps)),
                ("eval_batches", .integer(logging.evalBatches)),
            ])),
            ("seed", .integer(seed)),
            ("max_consecutive_nonfinite_steps", .integer(maxConsecutiveNonfiniteSteps)),
            ("allreduce_bucket_mb", .double(allreduceBucketMB)),
            ("init_from", initFrom.map { .string($0) } ?? .null),
            ("watchdog_seconds", .double(watchdogSeconds)),
        ] + (task.kind == .pretraining ? [] : [("task", task.resolved)]))
    }

    /// The resolved configuration as indented JSON text.
    public func resolvedJSON() -> String { resolved.prettyText() }

    /// Writes `resolvedJSON()` to `path`.
    public func writeResolved(to path: String) throws {
        do {
            try Data(resolvedJSON().utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw ConfigError(source: path, keyPath: "",
                              message: "cannot write the resolved config (\(error.localizedDescription)); check the run directory")
        }
    }

    /// The settings a resumed run must share with the run that wrote the checkpoint, because changing
    /// them would rewrite the steps already taken: the model, the masking, the global batch and sequence
    /// length, the optimizer, the schedule and the seed. Not in it: the data directory (data may move;
    /// the shards carry their own fingerprint), the micro-batch size (it adapts to the world size),
    /// `schedule.total_steps` (a run may be extended; the learning rate follows the new schedule from
    /// the step it resumes at), checkpoint/logging cadence, bucket size, guards, `init_from`.
    public var resumeInvariants: JSONValue {
        guard case let .object(all) = resolved else { return .null }
        var parts: [(key: String, value: JSONValue)] = []
        for (key, value) in all {
            switch key {
            case "model", "optimizer", "seed":
                parts.append((key, value))
            case "data", "batch", "schedule":
                guard case let .object(members) = value else { continue }
                let kept = members.filter { !["directory", "micro_batch_size", "total_steps"].contains($0.key) }
                parts.append((key, .object(kept)))
            default:
                continue
            }
        }
        return .object(parts)
    }

    /// SHA-256 (hex) of the canonical JSON (sorted keys, normal numbers, no spaces) of `resumeInvariants`.
    public var fingerprint: String {
        let digest = SHA256.hash(data: Data(resumeInvariants.compactText(sortedKeys: true).utf8))
        return digest.map { String(format: "%02x", $0) }.joined()
    }

    /// Key paths whose resume-invariant values differ between the two configurations, for a message
    /// that says what changed when fingerprints disagree.
    public func resumeDifferences(from other: TrainingConfig) -> [String] {
        var mine: [String: String] = [:], theirs: [String: String] = [:]
        TrainingConfig.flatten(resumeInvariants, prefix: "", into: &mine)
        TrainingConfig.flatten(other.resumeInvariants, prefix: "", into: &theirs)
        return Set(mine.keys).union(theirs.keys).filter { mine[$0] != theirs[$0] }.sorted()
    }

    /// The settings that differ from `other` and may change on resume, as `key old -> new`, in the
    /// order of the resolved file.
    public func resumableChanges(from other: TrainingConfig) -> [String] {
        var mine: [String: String] = [:], theirs: [String: String] = [:]
        TrainingConfig.flatten(resolved, prefix: "", into: &mine)
        TrainingConfig.flatten(other.resolved, prefix: "", into: &theirs)
        return TrainingConfig.keyPaths(resolved).filter { mine[$0] != theirs[$0] }
            .map { "\($0) \(theirs[$0] ?? "unset") -> \(mine[$0] ?? "unset")" }
    }

    /// Every leaf key path of `value`, in order.
    static func keyPaths(_ value: JSONValue, prefix: String = "") -> [String] {
        guard case let .object(members) = value else { return [prefix] }
        return members.flatMap { keyPaths($0.value, prefix: prefix.isEmpty ? $0.key : prefix + "." + $0.key) }
    }

    private static func flatten(_ value: JSONValue, prefix: String, into out: inout [String: String]) {
        if case let .object(members) = value {
            for (key, child) in members { flatten(child, prefix: prefix.isEmpty ? key : prefix + "." + key, into: &out) }
        } else {
            out[prefix] = value.compactText(sortedKeys: true)
        }
    }
}

// MARK: - Reading one object

/// Reads the members of one JSON object by key, checking types and values, and reports keys that were
/// never read as unknown.
struct ObjectReader {
    let path: String
    let source: String
    var members: [(key: String, value: JSONValue)]
    var taken: Set<String> = []

    init(_ value: JSONValue?, path: String, source: String, required: Bool) throws {
        self.path = path
        self.source = source
        switch value {
        case let .object(members)?:
            self.members = members
        case nil, .null?:
            guard !required else {
                throw ConfigError(source: source, keyPath: path, message: "missing; this section is required")
            }
            members = []
        case let other?:
            throw ConfigError(source: source, keyPath: path, message: "must be an object, not \(other.kindDescription)")
        }
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(source: source, keyPath: keyPath(key), message: message)
    }

    /// The member's value, nil when absent or null.
    mutating func take(_ key: String) -> JSONValue? {
        taken.insert(key)
        guard let value = members.first(where: { $0.key == key })?.value, value != .null else { return nil }
        return value
    }

    mutating func object(_ key: String, required: Bool) throws -> ObjectReader {
        try ObjectReader(take(key), path: keyPath(key), source: source, required: required)
    }

    mutating func int(_ key: String, default fallback: Int?, check: (Int) -> String? = { _ in nil }) throws -> Int {
        guard let value = try optionalInt(key, check: check) else {
            if let fallback { return fallback }
            throw error(key, "missing; this key is required")
        }
        return value
    }

    mutating func optionalInt(_ key: String, check: (Int) -> String? = { _ in nil }) throws -> Int? {
        guard let value = take(key) else { return nil }
        guard case let .number(text) = value else {
            throw error(key, "must be an integer, not \(value.kindDescription)")
        }
        // Accept 1e6 and 1000.0, which are integers written as decimals.
        guard let number = Int(text) ?? Double(text).flatMap({ $0 == $0.rounded() && abs($0) < 9e15 ? Int($0) : nil })
        else { throw error(key, "must be an integer, not \(text)") }
        if let problem = check(number) { throw error(key, "is \(number); \(problem)") }
        return number
    }

    mutating func unsigned(_ key: String, default fallback: UInt64) throws -> UInt64 {
        guard let value = take(key) else { return fallback }
        guard case let .number(text) = value, let number = UInt64(text) else {
            throw error(key, "must be a non-negative integer below 2^64, not \(value.compactText())")
        }
        return number
    }

    mutating func double(_ key: String, default fallback: Double, check: (Double) -> String? = { _ in nil }) throws -> Double {
        guard let value = take(key) else { return fallback }
        guard case let .number(text) = value, let number = Double(text), number.isFinite else {
            throw error(key, "must be a number, not \(value.kindDescription)")
        }
        if let problem = check(number) { throw error(key, "is \(text); \(problem)") }
        return number
    }

    mutating func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard let value = take(key) else { return fallback }
        guard case let .bool(flag) = value else { throw error(key, "must be true or false, not \(value.kindDescription)") }
        return flag
    }

    mutating func string(_ key: String, required: Bool) throws -> String? {
        guard let value = take(key) else {
            if required { throw error(key, "missing; this key is required") }
            return nil
        }
        guard case let .string(text) = value else { throw error(key, "must be a string, not \(value.kindDescription)") }
        return text
    }

    mutating func choice<Choice: RawRepresentable & CaseIterable>(_ key: String, default fallback: Choice) throws -> Choice
    where Choice.RawValue == String {
        guard let text = try string(key, required: false) else { return fallback }
        guard let choice = Choice(rawValue: text) else {
            let names = Choice.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw error(key, "is \"\(text)\"; must be one of \(names)")
        }
        return choice
    }

    /// Throws for the first key that no reader asked for, listing the keys this section knows.
    func finish() throws {
        guard let unknown = members.first(where: { !taken.contains($0.key) }) else { return }
        let known = taken.sorted().joined(separator: ", ")
        throw ConfigError(source: source, keyPath: keyPath(unknown.key),
                          message: "unknown key; check the spelling or remove it (\(path.isEmpty ? "top-level" : path) keys: \(known))")
    }
}
