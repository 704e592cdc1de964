import Foundation

/// LoRA as Hugging Face peft's `LoraConfig` defines it: each adapted projection computes
/// `W x + b + (B A dropout(x)) * scaling` with A (r, in) and B (out, r) trained and W, b frozen.
/// The product B A is never formed while training.
///
/// Names follow peft: `target_modules` and `modules_to_save` are module names matched as peft matches
/// them (a module is targeted when its full name equals the target or ends with "." + target, so
/// `output.dense` targets both `attention.output.dense` and the layer's `output.dense`);
/// `layers_to_transform` keeps only the given encoder layers.
public struct LoraSettings: Sendable, Equatable {
    public var rank: Int
    public var alpha: Double
    public var dropout: Double
    /// Scaling alpha / sqrt(r) (rank-stabilised LoRA) instead of alpha / r.
    public var useRSLoRA: Bool
    public var targetModules: [String]
    public var layersToTransform: [Int]?
    public var bias: LoraBias
    /// Modules trained in full beside the adapter; nil: the head's output layer (`savedModules`).
    public var modulesToSave: [String]?

    public init(
        rank: Int, alpha: Double, dropout: Double = 0, useRSLoRA: Bool = false, targetModules: [String] = bertDefaultTargets,
        layersToTransform: [Int]? = nil, bias: LoraBias = .none, modulesToSave: [String]? = nil
    ) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.useRSLoRA = useRSLoRA
        self.targetModules = targetModules
        self.layersToTransform = layersToTransform
        self.bias = bias
        self.modulesToSave = modulesToSave
    }

    /// peft's default targets for BERT and for GPT-2.
    public static let bertDefaultTargets = ["query", "value"]
    public static let gpt2DefaultTargets = ["c_attn"]

    /// The factor of the low-rank update.
    public var scaling: Float {
        Float(useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank))
    }

    /// The modules trained in full for a model with `head`: `modules_to_save`, or by default the
    /// head's output layer, as peft adds it for its classification and question-answering task types.
    public func savedModules(head: ModelHead) -> [String] {
        modulesToSave ?? ParameterTable.headOutputModules(head)
    }

    /// peft's module-name rule: the target is the whole name or its dotted suffix.
    static func matches(_ module: String, _ target: String) -> Bool {
        module == target || module.hasSuffix("." + target)
    }
}

/// peft's `bias`: which biases train beside the adapter.
public enum LoraBias: String, Sendable, CaseIterable {
    case none
    /// Every parameter whose name contains "bias", LayerNorm biases included (as peft marks them).
    case all
    case loraOnly = "lora_only"
}

/// The projections of an encoder layer LoRA can adapt, in the order the layer runs them.
public enum LoraModule: Int, CaseIterable, Sendable {
    case query, key, value, attentionOutput, intermediate, output

    /// The module's name inside `bert.encoder.layer.<l>.`.
    public var name: String {
        switch self {
        case .query: return "attention.self.query"
        case .key: return "attention.self.key"
        case .value: return "attention.self.value"
        case .attentionOutput: return "attention.output.dense"
        case .intermediate: return "intermediate.dense"
        case .output: return "output.dense"
        }
    }

    /// Input and output features of the projection.
    func shape(_ config: BertConfig) -> (inputs: Int, outputs: Int) {
        switch self {
        case .query, .key, .value, .attentionOutput: return (config.hiddenSize, config.hiddenSize)
        case .intermediate: return (config.hiddenSize, config.intermediateSize)
        case .output: return (config.intermediateSize, config.hiddenSize)
        }
    }
}

/// A LoRA setting this model cannot honour; the message names the key.
public struct LoraSettingsError: Error, LocalizedError, CustomStringConvertible, Equatable {
    public let key: String
    public let message: String

    public var description: String { "peft.\(key) \(message)" }
    public var errorDescription: String? { description }
}

extension LoraSettings {
    /// The adapted modules of each encoder layer, after checking every setting against the model.
    public func adaptedModules(_ config: BertConfig) throws -> [[LoraModule]] {
        try checkShared(layerCount: config.hiddenLayerCount, loraOnly: "the query, key and value biases are one fused tensor")
        // Every head's linear layers, whichever head the model has now (a fine-tuning head is set later).
        let others = ["bert.pooler.dense", "classifier", "qa_outputs", "cls.predictions.transform.dense", "cls.seq_relationship"]
        let adapted = try matchedModules(
            LoraModule.allCases, named: \.name, layerCount: config.hiddenLayerCount, layerPrefix: { "bert.encoder.layer.\($0)." },
            outside: others, family: "BERT", scope: "the encoder's")
        // The query, key and value projections are one fused GEMM: they train together or not at all.
        let fused = [LoraModule.query, .key, .value].map { "bert.encoder.layer.0." + $0.name }
        let saved = fused.filter { module in (modulesToSave ?? []).contains { module.hasSuffix($0) } }
        if !saved.isEmpty && saved.count != fused.count {
            throw LoraSettingsError(key: "modules_to_save", message: "trains \(saved.map { $0.split(separator: ".").last! }.joined(separator: ", ")) without the rest "
                + "of the fused query/key/value projection; name `attention.self` to train all three, or adapt them with LoRA")
        }
        return adapted
    }

    /// The checks every model makes: rank, alpha, dropout, a target, the bias mode and the layers
    /// (of `layerCount`); `loraOnly` says why bias "lora_only" is refused.
    func checkShared(layerCount L: Int, loraOnly: String) throws {
        func fail(_ key: String, _ message: String) -> LoraSettingsError { LoraSettingsError(key: key, message: message) }
        guard rank >= 1 else { throw fail("r", "is \(rank); the rank of the update must be at least 1, typically 8") }
        guard alpha > 0 else { throw fail("lora_alpha", "is \(alpha); it must be positive, typically 2 r") }
        guard dropout >= 0 && dropout < 1 else { throw fail("lora_dropout", "is \(dropout); it must be in [0, 1)") }
        guard !targetModules.isEmpty else {
            throw fail("target_modules", "is empty; name the projections to adapt, e.g. [\"query\", \"value\"] (BERT) or [\"c_attn\"] (GPT-2)")
        }
        if bias == .loraOnly {
            throw fail("bias", "\"lora_only\" is not supported (\(loraOnly)); use \"none\" or \"all\"")
        }
        if let layers = layersToTransform {
            guard !layers.isEmpty else { throw fail("layers_to_transform", "is empty; give layer indices or null for all") }
            if let bad = layers.first(where: { !(0..<L).contains($0) }) {
                throw fail("layers_to_transform", "holds \(bad); the model's layers are 0...\(L - 1)")
            }
        }
    }

    /// The modules of `candidates` adapted in each of `layerCount` layers: those a target matches by
    /// full name (`layerPrefix(l)` + the module's name, so a target may name one layer's module), in
    /// the candidates' order, in the layers `layers_to_transform` keeps. A target that names one of
    /// `outside` (modules LoRA does not adapt here) or matches no module of any layer is an error
    /// listing the candidates; `scope` names where they live ("the encoder's").
    func matchedModules<Module>(
        _ candidates: [Module], named name: (Module) -> String, layerCount L: Int, layerPrefix: (Int) -> String, outside: [String],
        family: String, scope: String
    ) throws -> [[Module]] {
        let listing = candidates.map(name).joined(separator: ", ")
        func matched(_ layer: Int, _ target: String) -> [Module] {
            candidates.filter { Self.matches(layerPrefix(layer) + name($0), target) }
        }
        for target in targetModules {
            if let other = outside.first(where: { Self.matches($0, target) }) {
                throw LoraSettingsError(key: "target_modules", message: "\"\(target)\" names \(other); LoRA adapts \(scope) projections: \(listing)")
            }
            guard (0..<L).contains(where: { !matched($0, target).isEmpty }) else {
                throw LoraSettingsError(key: "target_modules", message: "\"\(target)\" matches no module of the model; \(family)'s projections are \(listing)")
            }
        }
        return (0..<L).map { layer in
            guard layersToTransform?.contains(layer) ?? true else { return [] }
            return candidates.filter { module in targetModules.contains { Self.matches(layerPrefix(layer) + name(module), $0) } }
        }
    }

    /// The adapter tensors' names (table names; peft's keys add `base_model.model.`).
    static func entryNames(layer: Int, module: LoraModule) -> (a: String, b: String) {
        let prefix = "bert.encoder.layer.\(layer).\(module.name)"
        return (prefix + ".lora_A.weight", prefix + ".lora_B.weight")
    }
}
