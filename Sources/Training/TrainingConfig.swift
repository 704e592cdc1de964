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
/// back to a bert-base default. Every other key is SwiftBERT's own, declared once in `schema`
/// (ConfigKeys.swift) with its type, default, bounds and documentation (docs/configuration.md).
/// Unknown keys, wrong types and impossible values are `ConfigError`s naming the key path.
///
/// The property values below are only where reading starts: the defaults are those of the declarations.
public struct TrainingConfig: Equatable, Sendable {
    /// The model section: BERT for every task but `causal_lm`, which trains GPT-2.
    public enum ModelSection: Equatable, Sendable {
        case bert(BertConfig)
        case gpt2(GPT2Config)
    }

    public var modelSection = ModelSection.bert(BertConfig())

    /// The BERT model, from Hugging Face `BertConfig` keys (a run of `causal_lm` has none: this is
    /// then a default that nothing reads; setting it makes the run a BERT run).
    public var model: BertConfig {
        get {
            guard case let .bert(config) = modelSection else { return BertConfig() }
            return config
        }
        set { modelSection = .bert(newValue) }
    }

    /// The GPT-2 model of a `causal_lm` run, from Hugging Face `GPT2Config` keys.
    public var gpt2: GPT2Config? {
        guard case let .gpt2(config) = modelSection else { return nil }
        return config
    }

    /// Positions the model holds, whichever it is.
    public var maxPositions: Int { gpt2?.positionCount ?? model.maxPositionEmbeddings }
    public var data = DataSettings()
    public var batch = BatchSettings()
    public var optimizer = OptimizerSettings()
    public var schedule = ScheduleSettings()
    public var checkpoint = CheckpointSettings()
    public var logging = LoggingSettings()
    /// Root of every random stream of the run (initialisation, sampling, masking, dropout).
    public var seed: UInt64 = 0
    /// Optimizer steps in a row whose gradients contain NaN/Inf (and are skipped) before the run stops.
    public var maxConsecutiveNonfiniteSteps = 0
    /// Size of the gradient all-reduce buckets, in MiB.
    public var allreduceBucketMB = 0.0
    /// A Hugging Face model directory to initialise the weights from, instead of random initialisation.
    public var initFrom: String?
    /// Under MPI, seconds a rank may go without progress (a step, an evaluation, a checkpoint) before
    /// the job is declared hung and aborted; with in-process ranks, seconds a rank waits for the others
    /// in a collective. 0 disables the watchdog.
    public var watchdogSeconds = 0.0
    /// What to train: pre-training (the default) or a fine-tuning task on labelled files.
    public var task = TaskSettings()
    /// Parameter-efficient tuning: which adapter trains while the base model stays frozen.
    public var peft = PeftSettings()

    /// peft's `encoder_reparameterization_type` of P-tuning.
    public enum PTuningEncoder: String, CaseIterable, Sendable {
        case mlp = "MLP"
        case lstm = "LSTM"
    }

    /// peft's settings of the adapter (`LoraConfig`'s keys).
    public struct PeftSettings: Equatable, Sendable {
        public var method = PeftMethod.none
        public var rank = 0
        public var alpha = 0.0
        public var dropout = 0.0
        public var useRSLoRA = false
        public var targetModules: [String]?
        public var layersToTransform: [Int]?
        public var bias = LoraBias.none
        public var modulesToSave: [String]?
        public var virtualTokenCount = 0
        public var promptInitialization = PromptTuningSettings.Initialization.random
        public var prefixProjection = false
        /// The prompt encoder's hidden size; nil: the model's hidden size (peft's default).
        public var encoderHiddenSize: Int?
        /// P-tuning's prompt encoder (`encoder_reparameterization_type`) and the LSTM's layers.
        public var encoderType = PTuningEncoder.mlp
        public var encoderLayerCount = 2

        /// The model's prompt-tuning settings; nil without prompt tuning.
        public var prompt: PromptTuningSettings? {
            guard method == .promptTuning else { return nil }
            return PromptTuningSettings(
                virtualTokenCount: virtualTokenCount, initialization: promptInitialization, modulesToSave: modulesToSave)
        }

        /// The model's P-tuning settings (prompt tuning through an encoder of `encoder_hidden_size`,
        /// by default the model's `hiddenSize`); nil without P-tuning.
        public func pTuning(hiddenSize: Int) -> PromptTuningSettings? {
            guard method == .pTuning else { return nil }
            return PromptTuningSettings(
                virtualTokenCount: virtualTokenCount, modulesToSave: modulesToSave,
                encoder: PromptEncoderSettings(
                    kind: encoderType == .lstm ? .lstm : .mlp, hiddenSize: encoderHiddenSize ?? hiddenSize, layerCount: encoderLayerCount))
        }

        /// The model's prefix-tuning settings (with `prefix_projection`, through an encoder as for
        /// `pTuning`); nil without prefix tuning.
        public func prefix(hiddenSize: Int) -> PrefixTuningSettings? {
            guard method == .prefixTuning else { return nil }
            return PrefixTuningSettings(
                virtualTokenCount: virtualTokenCount, modulesToSave: modulesToSave,
                encoder: prefixProjection ? PromptEncoderSettings(kind: .projection, hiddenSize: encoderHiddenSize ?? hiddenSize) : nil)
        }

        /// The model's LoRA settings (without `target_modules`, peft's default for the model,
        /// `defaultTargets`); nil without LoRA.
        public func lora(defaultTargets: [String]) -> LoraSettings? {
            guard method == .lora else { return nil }
            return LoraSettings(
                rank: rank, alpha: alpha, dropout: dropout, useRSLoRA: useRSLoRA,
                targetModules: targetModules ?? defaultTargets, layersToTransform: layersToTransform, bias: bias,
                modulesToSave: modulesToSave)
        }
    }

    /// The parameter-efficient method of a run.
    public enum PeftMethod: String, CaseIterable, Sendable {
        /// Full fine-tuning: every parameter trains.
        case none
        case lora
        case promptTuning = "prompt_tuning"
        case prefixTuning = "prefix_tuning"
        case pTuning = "p_tuning"
    }

    /// Masking settings; the corpus-derived settings (sequence pairs, NSP mode) come from the data manifest.
    public struct DataSettings: Equatable, Sendable {
        /// Directory holding the shards and their manifest.
        public var directory = ""
        public var maskedLMProbability = 0.0
        public var maxPredictionsPerSequence = 0
        public var wholeWordMasking = false
    }

    public struct BatchSettings: Equatable, Sendable {
        /// Sequences per optimizer step, summed over all ranks and micro-batches.
        public var globalBatchSize = 0
        /// Sequences per forward/backward pass on one rank; nil means the whole per-rank share.
        public var microBatchSize: Int?
        /// Tokens per sequence (max_seq_length), padding included.
        public var sequenceLength = 0
    }

    public enum OptimizerName: String, Sendable, CaseIterable { case adamw, lamb }

    public struct OptimizerSettings: Equatable, Sendable {
        public var name = OptimizerName.adamw
        public var learningRate = 0.0
        public var beta1 = 0.0
        public var beta2 = 0.0
        public var epsilon = 0.0
        public var weightDecay = 0.0
        /// Divide the moments by (1 - beta^t). Google's BERT AdamWeightDecay does not; PyTorch's AdamW does.
        public var biasCorrection = false
        /// Clip gradients to this global L2 norm; 0 disables clipping.
        public var maxGradNorm = 0.0
    }

    public enum DecayKind: String, Sendable, CaseIterable { case linear, cosine, constant }

    public struct ScheduleSettings: Equatable, Sendable {
        public var warmupSteps = 0
        public var totalSteps = 0
        public var decay = DecayKind.linear
        /// The learning rate decays to `min_lr_ratio` x the peak, not to 0.
        public var minLRRatio = 0.0
    }

    public struct CheckpointSettings: Equatable, Sendable {
        public var everySteps = 0
        /// Keep the newest `keep_last` checkpoints ...
        public var keepLast = 0
        /// ... and also every checkpoint whose step is a multiple of `keep_every` (0: none).
        public var keepEvery = 0
    }

    public struct LoggingSettings: Equatable, Sendable {
        public var everySteps = 0
        /// Evaluate on the validation split every this many steps (0: never).
        public var evalEverySteps = 0
        /// Global batches (of `batch.global_batch_size` sequences, shared by the ranks) in one
        /// evaluation; fewer when the validation split holds fewer.
        public var evalBatches = 0
    }

    /// A configuration with every default filled in.
    public init(model: BertConfig, dataDirectory: String, globalBatchSize: Int, totalSteps: Int) {
        TrainingConfig.schema.applyDefaults(to: &self)
        self.model = model
        data.directory = dataDirectory
        batch.globalBatchSize = globalBatchSize
        schedule.totalSteps = totalSteps
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
        try TrainingConfig.schema.read(root, source: source, into: &self)
        if case var .gpt2(config) = modelSection {
            config.lora = peft.lora(defaultTargets: LoraSettings.gpt2DefaultTargets)
            modelSection = .gpt2(config)
            return
        }
        model.lora = peft.lora(defaultTargets: LoraSettings.bertDefaultTargets)
        model.prompt = peft.prompt ?? peft.pTuning(hiddenSize: model.hiddenSize)
        model.prefix = peft.prefix(hiddenSize: model.hiddenSize)
    }

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

    /// The `model` key: the section, or for a fine-tuning run that gives none, `init_from`'s config.json.
    static func readModel(_ reader: inout ObjectReader, _ config: TrainingConfig) throws -> ModelSection {
        let section = reader.take("model")
        if section == nil, config.task.kind != .pretraining {
            guard case let .string(directory)? = reader.peek("init_from") else {
                // Without either, name what a fine-tuning run lacks rather than the model section.
                throw ConfigError(source: reader.source, keyPath: "init_from", message: config.task.kind == .causalLM
                    ? "missing; give a model section of GPT2Config keys (n_embd, n_layer, ...) or a GPT-2 directory to start from"
                    : "missing; fine-tuning starts from a pre-trained model directory (a SwiftBERT checkpoint or a Hugging Face "
                        + "BERT directory), whose config.json and tokenizer it uses")
            }
            return try readModel(directory: directory, kind: config.task.kind, source: reader.source)
        }
        if config.task.kind == .causalLM {
            return .gpt2(try readModel(section, source: reader.source, decode: GPT2Config.self, keys: gpt2Keys, family: "GPT2Config"))
        }
        return .bert(try readModel(section, source: reader.source, decode: BertConfig.self, keys: modelKeys, family: "BertConfig"))
    }

    /// The model section of a run that gives none: `init_from`'s config.json, without a BERT head.
    static func readModel(directory: String, kind: TaskKind, source: String) throws -> ModelSection {
        do {
            if kind == .causalLM { return .gpt2(try GPT2Model.config(in: directory)) }
            var config = try PretrainedDirectory.config(in: directory)
            config.head = .preTraining
            config.labels = []
            return .bert(config)
        } catch {
            throw ConfigError(source: source, keyPath: "init_from", message: "\(error)")
        }
    }

    /// The keys `GPT2Config` reads and the ones it checks, and transformers' GPT-2 bookkeeping.
    private static let gpt2Keys: Set<String> = Set(GPT2Config.CodingKeys.allCases.map(\.rawValue))
        .union(GPT2Config.UnsupportedKeys.allCases.map(\.rawValue))
        .union(["architectures", "model_type", "n_ctx", "summary_type", "summary_use_proj", "summary_activation",
                "summary_proj_to_labels", "summary_first_dropout", "task_specific_params", "reorder_and_upcast_attn",
                "pad_token_id"])

    /// The `model` section, read by the model's config type with its errors given the key path.
    static func readModel<Config: Decodable>(
        _ value: JSONValue?, source: String, decode: Config.Type, keys: Set<String>, family: String
    ) throws -> Config {
        guard case let .object(members)? = value else {
            throw ConfigError(source: source, keyPath: "model", message: value == nil
                ? "missing; give the Hugging Face \(family) keys (\(family == "BertConfig" ? "hidden_size, num_hidden_layers" : "n_embd, n_layer"), ...)"
                : "must be an object of Hugging Face \(family) keys, not \(value!.kindDescription)")
        }
        if let unknown = members.first(where: { !keys.contains($0.key) && !ignoredModelKeys.contains($0.key) }) {
            throw ConfigError(source: source, keyPath: "model." + unknown.key,
                              message: "unknown key; check the spelling or remove it (model keys: "
                                  + keys.sorted().joined(separator: ", ") + ")")
        }
        do {
            return try JSONDecoder().decode(Config.self, from: Data(value!.compactText().utf8))
        } catch let BertConfigError.invalidValue(key, reason, _) {
            throw ConfigError(source: source, keyPath: "model." + key, message: reason)
        } catch let DecodingError.dataCorrupted(context) {
            throw ConfigError(source: source, keyPath: (["model"] + context.codingPath.map(\.stringValue)).joined(separator: "."),
                              message: context.debugDescription)
        } catch let DecodingError.typeMismatch(_, context) {
            throw ConfigError(source: source, keyPath: (["model"] + context.codingPath.map(\.stringValue)).joined(separator: "."),
                              message: "has the wrong type: \(context.debugDescription)")
        } catch {
            throw ConfigError(source: source, keyPath: "model", message: "\(error)")
        }
    }

    /// The model section as JSON, keys sorted (the order `BertConfig.write(to:)` uses).
    static func modelJSON(_ section: ModelSection) -> JSONValue {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data: Data?
        switch section {
        case let .bert(model): data = try? encoder.encode(model)
        case let .gpt2(model): data = try? encoder.encode(model)
        }
        guard let data, let value = try? JSONValue.parse(String(decoding: data, as: UTF8.self))
        else { preconditionFailure("a model config must encode to a JSON object") }
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
    public var resolved: JSONValue { TrainingConfig.schema.json(of: self) }

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
    /// them would rewrite the steps already taken: the keys declared `.mustMatch` (the model, the masking,
    /// the global batch and sequence length, the optimizer, the schedule's shape, the seed).
    public var resumeInvariants: JSONValue {
        TrainingConfig.schema.json(of: self, including: { $0.onResume == .mustMatch })
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
