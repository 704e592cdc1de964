import Foundation
import Kernels

/// GPT-2 models in Hugging Face directories, and the model as the training engine sees it.
extension GPT2Model: TrainableModel {
    public static let configFile = "config.json"
    public static let weightsFile = "model.safetensors"

    /// Whether LoRA trains on a frozen base.
    public var hasAdapter: Bool { config.lora != nil }

    public func zeroGradients() { gradients.update(repeating: 0) }

    /// transformers' `GPT2PreTrainedModel._init_weights`: weights N(0, initializer_range), the residual
    /// projections (`attn.c_proj`, `mlp.c_proj`) N(0, initializer_range / sqrt(2 n_layer)), biases 0,
    /// LayerNorm weights 1; LoRA's factors as peft initialises them. Each tensor has its own stream,
    /// keyed by the seed and its index, so initialising some entries (`only`) gives them the values a
    /// full initialisation would.
    public func initializeParameters(seed: UInt64) { initializeParameters(seed: seed, only: nil) }

    func initializeParameters(seed: UInt64, only names: Set<String>?) {
        let std = config.initializerRange
        let residualStd = std / Float(2 * config.layerCount).squareRoot()
        for (index, entry) in table.entries.enumerated() where names?.contains(entry.name) ?? true {
            let destination = parameters.baseAddress! + entry.offset
            if entry.name.hasSuffix(".lora_B.weight") {
                // peft's default: B = 0, so the adapted model starts exactly at the base model.
                destination.update(repeating: 0, count: entry.count)
            } else if entry.name.hasSuffix(".lora_A.weight") {
                // peft's default: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)).
                BertModel.fillUniform(destination, count: entry.count, bound: 1 / Float(entry.shape[1]).squareRoot(), Philox(seed: seed, UInt64(index)))
            } else if entry.name.contains(".ln_") {
                destination.update(repeating: entry.name.hasSuffix(".weight") ? 1 : 0, count: entry.count)
            } else if entry.name.hasSuffix(".bias") {
                destination.update(repeating: 0, count: entry.count)
            } else {
                let deviation = entry.name.hasSuffix("c_proj.weight") ? residualStd : std
                BertModel.fillNormal(destination, count: entry.count, std: deviation, Philox(seed: seed, UInt64(index)))
            }
        }
    }

    /// A GPT-2 directory written by transformers (`GPT2LMHeadModel.save_pretrained`) or by `save(to:)`:
    /// config.json and model.safetensors; `inferenceOnly` as for `init(config:inferenceOnly:)`.
    public static func load(directory: String, inferenceOnly: Bool = false) throws -> GPT2Model {
        let model = GPT2Model(config: try config(in: directory), inferenceOnly: inferenceOnly)
        _ = try model.loadWeights(from: PretrainedDirectory.weightFiles(in: directory), initializationSeed: 0)
        return model
    }

    /// The GPT2Config of a directory's config.json.
    public static func config(in directory: String) throws -> GPT2Config {
        let configPath = (directory as NSString).appendingPathComponent(configFile)
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw PretrainedModelError.missingFile(
                directory: directory, file: configFile, hint: "a GPT-2 directory holds config.json and model.safetensors")
        }
        do {
            return try JSONDecoder().decode(GPT2Config.self, from: data)
        } catch {
            throw GPT2ModelError("\(configPath): \(error)")
        }
    }

    /// Tensor names with or without `transformer.`; the attention-mask buffers older files carry
    /// (`attn.bias`, `attn.masked_bias`) are skipped, and a separate `lm_head.weight` must equal the
    /// tied embedding. Every parameter must be present (GPT-2 has no head to initialise) but LoRA's
    /// factors, which are initialised from `initializationSeed` as peft does.
    public func loadWeights(from files: [SafetensorsFile], initializationSeed: UInt64) throws -> PretrainedLoadReport {
        var found = Set<String>()
        var report = PretrainedLoadReport()
        var head: (file: SafetensorsFile, name: String)?
        var unexpected: [String] = []
        for file in files {
            for name in file.tensorNames {
                if name == "lm_head.weight" {
                    head = (file, name)
                    continue
                }
                if name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias") {
                    report.ignoredTensors.append(name)
                    continue
                }
                let full = name.hasPrefix("transformer.") ? name : "transformer." + name
                guard let entry = table.entry(named: full) else {
                    unexpected.append(name)
                    continue
                }
                guard file.tensorInfo(name)?.shape == entry.shape else {
                    throw PretrainedModelError.shapeMismatch(
                        path: file.path, tensor: name, found: file.tensorInfo(name)?.shape ?? [], expected: entry.shape)
                }
                guard found.insert(full).inserted else { throw PretrainedModelError.duplicateTensor(path: file.path, tensor: name) }
                try file.copyFloats(name, into: UnsafeMutableBufferPointer(rebasing: parameters[entry.range]))
            }
        }
        let origin = files.map(\.path).joined(separator: ", ")
        if !unexpected.isEmpty { throw GPT2ModelError("\(origin) has tensors that are not part of GPT2LMHeadModel: \(unexpected.prefix(12).joined(separator: ", "))") }
        let missing = table.entries.map(\.name).filter { !found.contains($0) }
        let adapter = Set(missing.filter(BertModel.isAdapterTensor))
        if missing.count > adapter.count { throw PretrainedModelError.missingTensors(path: origin, names: missing.filter { !adapter.contains($0) }) }
        initializeParameters(seed: initializationSeed, only: adapter)
        if let head {
            let embedding = table.entries[0]
            guard try head.file.floats(head.name).elementsEqual(parameters[embedding.range]) else {
                throw PretrainedModelError.untiedDecoder(path: head.file.path, tensor: head.name, tiedTo: embedding.name)
            }
        }
        return report
    }

    /// config.json with transformers' GPT2LMHeadModel keys.
    public func writeConfig(toDirectory directory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var object = try JSONSerialization.jsonObject(with: encoder.encode(config)) as! [String: Any]
        object["architectures"] = ["GPT2LMHeadModel"]
        object["model_type"] = "gpt2"
        object["tie_word_embeddings"] = true
        object["n_inner"] = config.innerSize ?? NSNull()
        let json = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        let configPath = (directory as NSString).appendingPathComponent(Self.configFile)
        do {
            try json.write(to: URL(fileURLWithPath: configPath), options: .atomic)
        } catch {
            throw PretrainedModelError.writeFailed(path: configPath, reason: error.localizedDescription)
        }
    }

    /// Writes config.json and model.safetensors (transformers' names; the head is tied and not
    /// written, as transformers saves it).
    public func savePretrained(to directory: String) throws {
        try PretrainedDirectory.create(directory)
        try writeConfig(toDirectory: directory)
        let base = UnsafeBufferPointer(parameters)
        try SafetensorsWriter.write(
            table.entries.map { (name: $0.name, shape: $0.shape, data: UnsafeBufferPointer(rebasing: base[$0.range])) },
            metadata: ["format": "pt"], to: (directory as NSString).appendingPathComponent(Self.weightsFile))
    }

    /// Writes the adapter as peft does for `GPT2LMHeadModel`: adapter_model.safetensors with every
    /// trainable tensor and adapter_config.json (task CAUSAL_LM, fan_in_fan_out for Conv1D) naming `baseModel`.
    public func saveAdapter(to directory: String, baseModel: String) throws {
        guard let lora = config.lora else { preconditionFailure("saveAdapter needs a model with LoRA") }
        let base = UnsafeBufferPointer(parameters)
        let tensors = table.entries.filter(\.trainable).map {
            (name: adapterKey($0), shape: $0.shape, data: UnsafeBufferPointer(rebasing: base[$0.range]))
        }
        var settings = PeftAdapter.loraConfig(lora, modulesToSave: nil, fanInFanOut: true)
        settings.merge([
            "task_type": "CAUSAL_LM", "base_model_name_or_path": baseModel, "inference_mode": true, "revision": NSNull(),
        ]) { $1 }
        try PeftAdapter.write(tensors, settings: settings, to: directory)
    }

    /// Loads an adapter directory's tensors (peft's or a checkpoint's) over the base weights.
    public func loadAdapter(directory: String) throws {
        let file = try SafetensorsFile(contentsOfFile: (directory as NSString).appendingPathComponent(PeftAdapter.weightsFile))
        try PeftAdapter.loadTensors(from: file, into: parameters, entries: table.entries.filter(\.trainable), key: adapterKey, ignoring: [])
    }
}

/// A GPT-2 directory that cannot be used, with the file and the reason.
public struct GPT2ModelError: Error, LocalizedError, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}
