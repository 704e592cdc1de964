import Foundation
import Kernels

// Hugging Face peft's adapter directory: adapter_config.json (the LoraConfig) and
// adapter_model.safetensors (the trainable tensors, keyed `base_model.model.<transformers name>`).
// peft keys a bias of an adapted module by its wrapped base layer (`query.base_layer.bias`), and
// under bias = "all" also writes a module-to-save's bias twice more (`classifier.modules_to_save.bias`,
// the trained copy, and `classifier.original_module.bias`, the frozen original).

/// A peft adapter directory this model cannot use; the message names the file and what to do.
public struct PeftAdapterError: Error, LocalizedError, CustomStringConvertible, Equatable {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
    public var errorDescription: String? { message }
}

public enum PeftAdapter {
    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"
    static let keyPrefix = "base_model.model."

    /// Whether `directory` holds a peft adapter rather than a whole model.
    public static func isAdapter(_ directory: String) -> Bool {
        FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent(configFile))
    }

    /// What a command runs for `--model DIR` (and `--base DIR`): a whole Hugging Face model, or a
    /// peft adapter on its base (`--base`, else adapter_config.json's `base_model_name_or_path`).
    /// The config is the adapter directory's config.json when it has one (SwiftBERT's checkpoints
    /// do: it names the head and labels), else the base's with the head of the adapter's
    /// `task_type` and as many labels as its classifier has outputs; LoRA settings set.
    public static func resolve(model: String, base: String?) throws -> (config: BertConfig, base: String, adapter: String?) {
        guard isAdapter(model) else {
            if let base {
                throw PeftAdapterError("--base \(base) is for an adapter, and \(model) holds no \(configFile); give the model alone")
            }
            return (try PretrainedDirectory.config(in: model), model, nil)
        }
        let settings = try adapterSettings(in: model)
        let configPath = (model as NSString).appendingPathComponent(configFile)
        let baseDirectory = try baseDirectory(of: model, base: base)
        var config: BertConfig
        if FileManager.default.fileExists(atPath: (model as NSString).appendingPathComponent(PretrainedDirectory.configFile)) {
            config = try PretrainedDirectory.config(in: model)
            let baseConfig = try PretrainedDirectory.config(in: baseDirectory)
            func shape(_ c: BertConfig) -> [Int] {
                [c.vocabSize, c.hiddenSize, c.hiddenLayerCount, c.attentionHeadCount, c.intermediateSize, c.maxPositionEmbeddings, c.typeVocabSize]
            }
            if shape(config) != shape(baseConfig) {
                throw PeftAdapterError(
                    "\(model) was trained on another base model: its config.json has vocab_size \(config.vocabSize), hidden_size "
                        + "\(config.hiddenSize), \(config.hiddenLayerCount) layers; \(baseDirectory) has \(baseConfig.vocabSize), "
                        + "\(baseConfig.hiddenSize), \(baseConfig.hiddenLayerCount); give the base it was trained on (--base)")
            }
        } else {
            config = try PretrainedDirectory.config(in: baseDirectory)
            let data = try Data(contentsOf: URL(fileURLWithPath: configPath))
            let taskType = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?.flatMap { $0["task_type"] as? String }
            let weights = try SafetensorsFile(contentsOfFile: (model as NSString).appendingPathComponent(weightsFile))
            func outputs(_ module: String) -> Int? {
                (weights.tensorInfo(keyPrefix + module + ".weight") ?? weights.tensorInfo("base_model." + module + ".weight"))?.shape.first
            }
            switch taskType {
            case "SEQ_CLS"?, "TOKEN_CLS"?:
                config.head = taskType == "SEQ_CLS" ? .sequenceClassification : .tokenClassification
                guard let count = outputs("classifier") else {
                    throw PeftAdapterError("\(model): a \(taskType!) adapter without classifier.weight; save the classifier with it (modules_to_save)")
                }
                if config.labels.count != count { config.labels = (0..<count).map { "LABEL_\($0)" } }
            case "QUESTION_ANS"?:
                config.head = .questionAnswering
                config.labels = []
            default:
                break
            }
        }
        try settings.apply(to: &config)
        return (config, baseDirectory, model)
    }

    /// The base model of the adapter in `adapter`: `base` (--base), else adapter_config.json's
    /// `base_model_name_or_path`; it must be a model directory here.
    public static func baseDirectory(of adapter: String, base: String?) throws -> String {
        let configPath = (adapter as NSString).appendingPathComponent(configFile)
        let named = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as? [String: Any])?
            .flatMap { $0["base_model_name_or_path"] as? String }
        guard let baseDirectory = base ?? named else {
            throw PeftAdapterError("\(configPath) names no base model (base_model_name_or_path); pass --base DIR")
        }
        guard FileManager.default.fileExists(atPath: (baseDirectory as NSString).appendingPathComponent(PretrainedDirectory.configFile)) else {
            throw PeftAdapterError(
                "the adapter's base model \(baseDirectory) is not a model directory here (no config.json)"
                    + (base == nil ? "; pass --base DIR with the model it was trained on" : ""))
        }
        return baseDirectory
    }

    /// Whether `directory`'s adapter is for a causal LM (task_type CAUSAL_LM: GPT-2's Conv1D projections).
    public static func isCausalLM(_ directory: String) -> Bool {
        let path = (directory as NSString).appendingPathComponent(configFile)
        let json = FileManager.default.contents(atPath: path).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        return json?["task_type"] as? String == "CAUSAL_LM"
    }

    /// peft's `task_type` for a model with `head` (nil: peft's plain `PeftModel`).
    static func taskType(_ head: ModelHead) -> String? {
        switch head {
        case .sequenceClassification: return "SEQ_CLS"
        case .tokenClassification: return "TOKEN_CLS"
        case .questionAnswering: return "QUESTION_ANS"
        case .preTraining, .multipleChoice: return nil
        }
    }

    /// The adapter of an adapter_config.json: LoRA, prompt tuning or prefix tuning.
    public enum Settings: Equatable, Sendable {
        case lora(LoraSettings)
        case prompt(PromptTuningSettings)
        case prefix(PrefixTuningSettings)

        /// Sets the adapter on `config` after checking it against the model.
        public func apply(to config: inout BertConfig) throws {
            switch self {
            case let .lora(lora):
                _ = try lora.adaptedModules(config)
                config.lora = lora
            case let .prompt(prompt):
                try prompt.check(config)
                config.prompt = prompt
            case let .prefix(prefix):
                try prefix.check(config)
                config.prefix = prefix
            }
        }
    }

    /// The adapter settings of `directory`'s adapter_config.json.
    public static func adapterSettings(in directory: String) throws -> Settings {
        let (json, fail) = try configObject(in: directory)
        func virtualTokenCount() throws -> Int {
            guard let count = json["num_virtual_tokens"] as? Int else { throw fail("num_virtual_tokens must be an integer") }
            return count
        }
        // peft lists the head's modules twice (once per task-type alias); once is enough.
        let modulesToSave = (json["modules_to_save"] as? [String]).map { Array(NSOrderedSet(array: $0)) as? [String] ?? $0 }
        let initialization = PromptTuningSettings.Initialization(rawValue: json["prompt_tuning_init"] as? String ?? "RANDOM")
            ?? .random
        switch json["peft_type"] as? String {
        case "LORA"?: return .lora(try loraSettings(in: directory, conv1D: isCausalLM(directory)))
        case "PROMPT_TUNING"?:
            return .prompt(PromptTuningSettings(
                virtualTokenCount: try virtualTokenCount(), initialization: initialization, modulesToSave: modulesToSave))
        case "P_TUNING"?:
            // peft saves the prompt encoder's output, which inference reads as the virtual tokens
            // (MLP and LSTM encoders alike): a prompt table.
            return .prompt(PromptTuningSettings(virtualTokenCount: try virtualTokenCount(), modulesToSave: modulesToSave))
        case "PREFIX_TUNING"?:
            // With prefix_projection, peft saves the projection's output: the prefix itself, which
            // is what inference reads (as peft's does), so such an adapter loads like any other.
            if (json["num_transformer_submodules"] as? Int ?? 1) != 1 {
                throw fail("num_transformer_submodules must be 1 for BERT, an encoder alone")
            }
            return .prefix(PrefixTuningSettings(virtualTokenCount: try virtualTokenCount(), modulesToSave: modulesToSave))
        case let other?:
            throw fail("peft_type \(other) is not supported; SwiftBERT loads LORA, PROMPT_TUNING, P_TUNING and PREFIX_TUNING adapters")
        case nil: throw fail("has no peft_type")
        }
    }

    private static func configObject(in directory: String) throws -> ([String: Any], (String) -> PeftAdapterError) {
        let path = (directory as NSString).appendingPathComponent(configFile)
        let fail = { (message: String) in PeftAdapterError("\(path): \(message)") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw fail("cannot be read; an adapter directory holds adapter_config.json and adapter_model.safetensors")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw fail("is not a JSON object")
        }
        return (json, fail)
    }

    /// The LoRA settings of `directory`'s adapter_config.json; `conv1D`: for a model of Conv1D
    /// projections (GPT-2), which peft always adapts with fan_in_fan_out = true.
    public static func loraSettings(in directory: String, conv1D: Bool = false) throws -> LoraSettings {
        let (json, fail) = try configObject(in: directory)
        func value(_ key: String) -> Any? { json[key].flatMap { $0 is NSNull ? nil : $0 } }
        guard let type = value("peft_type") as? String else { throw fail("has no peft_type") }
        guard type == "LORA" else { throw fail("peft_type \(type) is not LORA") }
        guard let rank = value("r") as? Int else { throw fail("r must be an integer") }
        guard let alpha = (value("lora_alpha") as? NSNumber)?.doubleValue else { throw fail("lora_alpha must be a number") }
        // Settings peft has that change the computation and SwiftBERT does not implement.
        for key in ["use_dora", "fan_in_fan_out", "lora_bias", "use_qalora"] where (value(key) as? Bool) == true && !(conv1D && key == "fan_in_fan_out") {
            throw fail("\(key) is true, which SwiftBERT does not implement")
        }
        for key in ["rank_pattern", "alpha_pattern"] where !((value(key) as? [String: Any])?.isEmpty ?? true) {
            throw fail("\(key) is set, which SwiftBERT does not implement; use one r and lora_alpha for every module")
        }
        for key in ["layer_replication", "trainable_token_indices", "target_parameters", "exclude_modules"] where value(key) != nil {
            throw fail("\(key) is set, which SwiftBERT does not implement")
        }
        let targets: [String]
        switch value("target_modules") {
        case let list as [String]: targets = list
        case is String: throw fail("target_modules is a regular expression; SwiftBERT takes a list of module names")
        default: throw fail("target_modules must be a list of module names")
        }
        let layers: [Int]?
        switch value("layers_to_transform") {
        case nil: layers = nil
        case let layer as Int: layers = [layer]
        case let list as [Int]: layers = list
        default: throw fail("layers_to_transform must be an integer or a list of integers")
        }
        guard let bias = LoraBias(rawValue: value("bias") as? String ?? "none") else {
            throw fail("bias must be none, all or lora_only")
        }
        return LoraSettings(
            rank: rank, alpha: alpha, dropout: (value("lora_dropout") as? NSNumber)?.doubleValue ?? 0,
            useRSLoRA: value("use_rslora") as? Bool ?? false, targetModules: targets, layersToTransform: layers, bias: bias,
            modulesToSave: value("modules_to_save") as? [String])
    }
}

extension PeftAdapter {
    /// peft's key of a trainable tensor of a LoRA model: `base_model.model.` + its name, with
    /// `base_layer.` before the parameter name of an adapted module's bias (`adaptedModules`: full
    /// module names), as peft keys a bias by its wrapped base layer.
    static func loraKey(_ name: String, adaptedModules: [String]) -> String {
        if let module = adaptedModules.first(where: { name == $0 + ".bias" }) { return keyPrefix + module + ".base_layer.bias" }
        return keyPrefix + name
    }

    /// adapter_config.json's LoRA keys, as peft's `LoraConfig` writes them.
    static func loraConfig(_ lora: LoraSettings, modulesToSave: [String]?, fanInFanOut: Bool) -> [String: Any] {
        [
            "peft_type": "LORA", "r": lora.rank, "lora_alpha": lora.alpha,
            "lora_dropout": lora.dropout, "use_rslora": lora.useRSLoRA, "target_modules": lora.targetModules,
            "layers_to_transform": lora.layersToTransform ?? NSNull(), "layers_pattern": NSNull(),
            "bias": lora.bias.rawValue, "modules_to_save": modulesToSave ?? NSNull(),
            "init_lora_weights": true, "fan_in_fan_out": fanInFanOut, "use_dora": false,
            "rank_pattern": [String: Any](), "alpha_pattern": [String: Any](),
        ]
    }

    /// Writes an adapter directory: adapter_model.safetensors with `tensors` (peft's keys) and
    /// adapter_config.json with `settings`.
    static func write(
        _ tensors: [(name: String, shape: [Int], data: UnsafeBufferPointer<Float>)], settings: [String: Any], to directory: String
    ) throws {
        try PretrainedDirectory.create(directory)
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt"], to: (directory as NSString).appendingPathComponent(weightsFile))
        let json = try JSONSerialization.data(withJSONObject: settings, options: [.prettyPrinted, .sortedKeys])
        let configPath = (directory as NSString).appendingPathComponent(configFile)
        do {
            try json.write(to: URL(fileURLWithPath: configPath), options: .atomic)
        } catch {
            throw PretrainedModelError.writeFailed(path: configPath, reason: error.localizedDescription)
        }
    }

    /// Copies an adapter_model.safetensors into the `entries` it trains (`key`: an entry's peft key):
    /// exactly one tensor for each, of its shape; anything else names the tensor and says what the
    /// adapter does not fit. Tensors whose keys start with one of `ignoring` are skipped.
    static func loadTensors(
        from file: SafetensorsFile, into parameters: UnsafeMutableBufferPointer<Float>, entries: [ParameterTable.Entry],
        key adapterKey: (ParameterTable.Entry) -> String, ignoring: [String]
    ) throws {
        let byKey = Dictionary(uniqueKeysWithValues: entries.map { (adapterKey($0), $0) })
        var loaded = Set<String>()
        var unexpected: [String] = []
        for stored in file.tensorNames.sorted() {
            // The frozen original of a module to save, and its trained copy under a second name.
            if stored.contains(".original_module.") || ignoring.contains(where: stored.hasPrefix) { continue }
            let key = stored.replacingOccurrences(of: ".modules_to_save.", with: ".")
            guard let entry = byKey[key] else {
                unexpected.append(stored)
                continue
            }
            if key != stored && file.tensorNames.contains(key) { continue }
            guard let info = file.tensorInfo(stored), info.shape == entry.shape else {
                throw PeftAdapterError(
                    "\(file.path): \(stored) has shape \(file.tensorInfo(stored)?.shape ?? []), the model's \(entry.name) is "
                        + "\(entry.shape); the adapter was trained on another base model or with another r")
            }
            try file.copyFloats(stored, into: UnsafeMutableBufferPointer(rebasing: parameters[entry.range]))
            loaded.insert(key)
        }
        if !unexpected.isEmpty {
            throw PeftAdapterError(
                "\(file.path): \(unexpected.count) tensor(s) fit no trainable parameter of this model, e.g. \(unexpected[0]); "
                    + "the adapter was trained on another base model or with other settings (adapter_config.json)")
        }
        let missing = byKey.keys.filter { !loaded.contains($0) }.sorted()
        if !missing.isEmpty {
            throw PeftAdapterError(
                "\(file.path): lacks \(missing.count) tensor(s) the adapter's settings call for, e.g. \(missing[0]); "
                    + "adapter_config.json and the tensors disagree")
        }
    }
}

extension BertModel {
    /// The peft key of a trainable entry: `base_model.model.` + its name, with `base_layer.` before
    /// the parameter name of an adapted module's bias.
    public func adapterKey(_ entry: ParameterTable.Entry) -> String {
        // The prompt methods wrap the model one level less deep, and name their table plainly; a
        // prompt encoder's tensors keep their PeftModel names (they go to a file of their own).
        if PromptEncoderSettings.isEncoderEntry(entry.name) { return entry.name }
        if config.hasPromptLearning {
            return entry.name == PromptTuningSettings.entryName ? entry.name : "base_model." + entry.name
        }
        let adapted = table.adaptedModules.enumerated().flatMap { layer, modules in
            modules.map { "bert.encoder.layer.\(layer).\($0.name)" }
        }
        return PeftAdapter.loraKey(entry.name, adaptedModules: adapted)
    }

    /// Writes the adapter as peft does: adapter_model.safetensors with every trainable tensor and
    /// adapter_config.json naming `baseModel`.
    public func saveAdapter(to directory: String, baseModel: String) throws {
        precondition(config.hasAdapter, "saveAdapter needs a model with an adapter")
        let base = UnsafeBufferPointer(parameters)
        func tensor(_ entry: ParameterTable.Entry) -> (name: String, shape: [Int], data: UnsafeBufferPointer<Float>) {
            (name: adapterKey(entry), shape: entry.shape, data: UnsafeBufferPointer(rebasing: base[entry.range]))
        }
        let trainable = table.entries.filter(\.trainable)
        var tensors = trainable.filter { !PromptEncoderSettings.isEncoderEntry($0.name) }.map(tensor)
        if let promptEncoder {
            // As peft: the encoder's output in the adapter, its own tensors beside it for training on.
            promptEncoder.forward(param(0))
            let rows = promptEncoder.rows, width = promptEncoder.tableCount / rows
            tensors.insert(
                (PromptTuningSettings.entryName, [rows, width], UnsafeBufferPointer(start: promptEncoder.table, count: rows * width)), at: 0)
        }
        var settings: [String: Any] = [
            "task_type": PeftAdapter.taskType(config.head) ?? NSNull(), "base_model_name_or_path": baseModel,
            "inference_mode": true, "revision": NSNull(),
        ]
        if let lora = config.lora {
            settings.merge(PeftAdapter.loraConfig(lora, modulesToSave: lora.savedModules(head: config.head), fanInFanOut: false)) { $1 }
        } else if let prompt = config.prompt, let encoder = prompt.encoder {
            settings.merge([
                "peft_type": "P_TUNING", "num_virtual_tokens": prompt.virtualTokenCount, "token_dim": config.hiddenSize,
                "num_transformer_submodules": 1, "num_attention_heads": config.attentionHeadCount,
                "num_layers": config.hiddenLayerCount, "encoder_reparameterization_type": encoder.kind.rawValue,
                "encoder_hidden_size": encoder.hiddenSize, "encoder_num_layers": encoder.layerCount, "encoder_dropout": 0.0,
                "modules_to_save": prompt.modulesToSave ?? ["classifier"],
            ]) { $1 }
        } else if let prompt = config.prompt {
            settings.merge([
                "peft_type": "PROMPT_TUNING", "num_virtual_tokens": prompt.virtualTokenCount, "token_dim": config.hiddenSize,
                "num_transformer_submodules": 1, "num_attention_heads": config.attentionHeadCount,
                "num_layers": config.hiddenLayerCount, "prompt_tuning_init": prompt.initialization.rawValue,
                "prompt_tuning_init_text": NSNull(), "tokenizer_name_or_path": NSNull(), "tokenizer_kwargs": NSNull(),
                "modules_to_save": prompt.modulesToSave ?? ["classifier"],
            ]) { $1 }
        } else if let prefix = config.prefix {
            settings.merge([
                "peft_type": "PREFIX_TUNING", "num_virtual_tokens": prefix.virtualTokenCount, "token_dim": config.hiddenSize,
                "num_transformer_submodules": 1, "num_attention_heads": config.attentionHeadCount,
                "num_layers": config.hiddenLayerCount, "encoder_hidden_size": prefix.encoder?.hiddenSize ?? config.hiddenSize,
                "prefix_projection": prefix.encoder != nil,
                "init_weights": NSNull(), "modules_to_save": prefix.modulesToSave ?? ParameterTable.headOutputModules(config.head),
            ]) { $1 }
        }
        try PeftAdapter.write(tensors, settings: settings, to: directory)
        if promptEncoder != nil {
            try SafetensorsWriter.write(
                trainable.filter { PromptEncoderSettings.isEncoderEntry($0.name) }.map(tensor), metadata: ["format": "pt"],
                to: (directory as NSString).appendingPathComponent(PromptEncoderSettings.weightsFile))
        }
    }

    /// Loads the trainable tensors from a peft adapter_model.safetensors: exactly one tensor for each,
    /// of its shape; anything else names the tensor and says what the adapter does not fit. Tensors
    /// whose keys start with one of `ignoring` are skipped (another head's, for the encoder alone).
    public func loadAdapter(from file: SafetensorsFile, ignoring: [String] = []) throws {
        // A prompt encoder's output is computed, not loaded; its tensors come from their own file.
        let ignoring = promptEncoder == nil ? ignoring : ignoring + [PromptTuningSettings.entryName]
        let trainable = table.entries.filter { $0.trainable && !PromptEncoderSettings.isEncoderEntry($0.name) }
        try PeftAdapter.loadTensors(from: file, into: parameters, entries: trainable, key: adapterKey, ignoring: ignoring)
    }
}

extension BertModel {
    /// Loads what an adapter directory trains: adapter_model.safetensors and, for a model with a
    /// prompt encoder, the encoder's tensors, which only a SwiftBERT checkpoint holds (peft saves the
    /// encoder's output alone, enough for inference but not to train on).
    public func loadAdapter(directory: String) throws {
        try loadAdapter(from: SafetensorsFile(contentsOfFile: (directory as NSString).appendingPathComponent(PeftAdapter.weightsFile)))
        guard promptEncoder != nil else { return }
        let path = (directory as NSString).appendingPathComponent(PromptEncoderSettings.weightsFile)
        guard FileManager.default.fileExists(atPath: path) else {
            throw PeftAdapterError(
                "\(directory) has no \(PromptEncoderSettings.weightsFile), the prompt encoder's tensors; an adapter peft wrote "
                    + "holds the encoder's output only, which evaluate and predict read, but training goes on from a SwiftBERT checkpoint")
        }
        let file = try SafetensorsFile(contentsOfFile: path)
        for entry in table.entries where PromptEncoderSettings.isEncoderEntry(entry.name) {
            guard let info = file.tensorInfo(entry.name), info.shape == entry.shape else {
                throw PeftAdapterError("\(path): \(entry.name) is missing or not of shape \(entry.shape); the adapter has other settings")
            }
            try file.copyFloats(entry.name, into: UnsafeMutableBufferPointer(rebasing: parameters[entry.range]))
        }
    }
}

extension BertModel {
    /// The model of `resolve(model:base:)`: the base's weights, then the adapter's tensors when there
    /// is an adapter; built for `maxSequenceCount x sequenceLength` inputs.
    public static func load(
        _ source: (config: BertConfig, base: String, adapter: String?), maxSequenceCount: Int, sequenceLength: Int,
        inferenceOnly: Bool = false
    ) throws -> BertModel {
        let model = make(
            config: source.config, maxSequenceCount: maxSequenceCount, sequenceLength: sequenceLength, inferenceOnly: inferenceOnly)
        _ = try model.loadWeights(from: PretrainedDirectory.weightFiles(in: source.base))
        if let adapter = source.adapter {
            try model.loadAdapter(from: SafetensorsFile(contentsOfFile: (adapter as NSString).appendingPathComponent(PeftAdapter.weightsFile)))
        }
        return model
    }
}

extension BertModel {
    /// This model with each LoRA update folded into its base weight (W += scaling B A) and the factors
    /// dropped: a plain model of the same head, as peft's `merge_and_unload` gives.
    public func merged() -> BertModel {
        guard let lora = config.lora else { preconditionFailure("merged() needs a model with LoRA") }
        var plain = config
        plain.lora = nil
        let merged = BertModel.make(config: plain, maxSequenceCount: 1, sequenceLength: 1, inferenceOnly: true)
        for entry in merged.table.entries {
            let source = table.entry(named: entry.name)!
            (merged.parameters.baseAddress! + entry.offset).update(from: parameters.baseAddress! + source.offset, count: entry.count)
        }
        for (layer, modules) in table.adaptedModules.enumerated() {
            for module in modules {
                let names = LoraSettings.entryNames(layer: layer, module: module)
                let weight = merged.table.entry(named: "bert.encoder.layer.\(layer).\(module.name).weight")!
                let (inputs, outputs) = module.shape(config)
                // W (out, in) += scaling * B (out, r) A (r, in)
                gemm(
                    .none, .none, m: outputs, n: inputs, k: lora.rank, alpha: lora.scaling,
                    a: param(table.offset(of: names.b)), b: param(table.offset(of: names.a)),
                    beta: 1, c: merged.parameters.baseAddress! + weight.offset)
            }
        }
        return merged
    }
}
