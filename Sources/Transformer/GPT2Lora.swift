import Foundation
import Kernels

// LoRA on GPT-2's Conv1D projections as peft applies it: peft wraps a Conv1D with
// fan_in_fan_out = true, so lora_A is (r, in) and lora_B (out, r) as for a Linear layer, and the
// update is y += scaling * (dropout(x) A^T) B^T; merged into the [in, out] weight it is
// W += scaling * (B A)^T.

/// The Conv1D projections of a GPT-2 block LoRA can adapt, in the order the block runs them.
public enum GPT2LoraModule: Int, CaseIterable, Sendable {
    case attention, attentionProjection, fc, mlpProjection

    /// The module's name inside `transformer.h.<l>.`.
    public var name: String {
        switch self {
        case .attention: return "attn.c_attn"
        case .attentionProjection: return "attn.c_proj"
        case .fc: return "mlp.c_fc"
        case .mlpProjection: return "mlp.c_proj"
        }
    }

    /// Input and output features of the projection.
    func shape(_ config: GPT2Config) -> (inputs: Int, outputs: Int) {
        let C = config.hiddenSize
        switch self {
        case .attention: return (C, 3 * C)
        case .attentionProjection: return (C, C)
        case .fc: return (C, config.inner)
        case .mlpProjection: return (config.inner, C)
        }
    }
}

extension LoraSettings {
    /// The adapted modules of each GPT-2 block, after checking every setting against the model.
    public func adaptedModules(_ config: GPT2Config) throws -> [[GPT2LoraModule]] {
        try checkShared(layerCount: config.layerCount, loraOnly: "GPT-2's LoRA trains the adapter alone or with every bias")
        if let saved = modulesToSave, !saved.isEmpty {
            throw LoraSettingsError(
                key: "modules_to_save", message: "is \(saved); GPT-2's LoRA trains the adapter (and with bias \"all\" the biases) only; "
                    + "leave it null")
        }
        // The tied head and the embeddings are not Conv1D projections.
        let outside = ["lm_head", "transformer.wte", "transformer.wpe"]
        return try matchedModules(
            GPT2LoraModule.allCases, named: \.name, layerCount: config.layerCount, layerPrefix: { "transformer.h.\($0)." },
            outside: outside, family: "GPT-2", scope: "the blocks' Conv1D")
    }

    /// A GPT-2 adapter's tensors' names (table names; peft's keys add `base_model.model.`).
    static func entryNames(layer: Int, module: GPT2LoraModule) -> (a: String, b: String) {
        let prefix = "transformer.h.\(layer).\(module.name)"
        return (prefix + ".lora_A.weight", prefix + ".lora_B.weight")
    }
}

// MARK: - Passes

extension GPT2Model.Pass {
    /// The key of block l's `module` in `loraHidden`.
    static func site(_ l: Int, _ module: GPT2LoraModule) -> Int { l * GPT2LoraModule.allCases.count + module.rawValue }
}

extension GPT2Model {
    /// The factors of block `l`'s `module`, nil when it is not adapted.
    func loraFactors(_ l: Int, _ module: GPT2LoraModule) -> LoraFactors? {
        guard let lora = config.lora, let offsets = loraOffsets[l][module.rawValue] else { return nil }
        let (inputs, outputs) = module.shape(config)
        return LoraFactors(
            a: p(offsets.a), b: p(offsets.b), dA: g(offsets.a), dB: g(offsets.b), rank: lora.rank, inputs: inputs, outputs: outputs,
            scaling: lora.scaling)
    }

    /// LoRA's dropout mask of a site: its own key per module, beside the block's other sites.
    func loraMask(_ pass: Pass, _ l: Int, _ module: GPT2LoraModule) -> DropoutMask? {
        dropoutMask(pass, Float(config.lora?.dropout ?? 0), layer: l + 1, site: DropoutSite.lora + UInt64(module.rawValue), rowsPerSample: pass.T)
    }

    /// Adds block l's `module` update to `output` (N, out) from the module's `input` (N, in); keeps
    /// u = dropout(x) A^T for backward.
    func loraForward(_ pass: Pass, _ l: Int, _ module: GPT2LoraModule, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        guard let factors = loraFactors(l, module) else { return }
        let N = pass.N, u = pass.buffer(N * factors.rank)
        pass.loraHidden[Pass.site(l, module)] = u
        let mask = loraMask(pass, l, module)
        let x = loraDroppedInput(input, mask, scratch: loraScratch(pass, mask), rows: N, columns: factors.inputs)
        Transformer.loraForward(output, ldy: factors.outputs, hidden: u, input: x, factors, rows: N)
    }

    /// Backward of `loraForward` from d(output) (N, out): the factors' gradients, and d(input) ADDED
    /// into `dInput` (N, in).
    func loraBackward(
        _ pass: Pass, _ l: Int, _ module: GPT2LoraModule, input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
        dInput: UnsafeMutablePointer<Float>
    ) {
        guard let factors = loraFactors(l, module), let u = pass.loraHidden[Pass.site(l, module)],
            let v = pass.loraGradient else { return }
        let mask = loraMask(pass, l, module), scratch = loraScratch(pass, mask), N = pass.N
        loraFactorGradients(
            factors, dOutput: dOutput, ldy: factors.outputs, hidden: u,
            input: { loraDroppedInput(input, mask, scratch: scratch, rows: N, columns: factors.inputs) }, hiddenGradient: v, rows: N)
        loraInputGradient(dInput, factors, hiddenGradient: v, rows: N, mask: mask, scratch: scratch)
    }

    /// The pass's (N, max(C, I)) scratch for LoRA's dropped inputs, taken the first time a mask needs it.
    private func loraScratch(_ pass: Pass, _ mask: DropoutMask?) -> UnsafeMutablePointer<Float>? {
        if mask != nil && pass.loraScratch == nil { pass.loraScratch = pass.buffer(pass.N * max(config.hiddenSize, config.inner)) }
        return pass.loraScratch
    }
}

// MARK: - Adapter files and inference

extension GPT2Model {
    /// peft's key of a trainable entry.
    func adapterKey(_ entry: ParameterTable.Entry) -> String {
        PeftAdapter.loraKey(entry.name, adaptedModules: adaptedModuleNames)
    }

    /// The full names of the adapted modules.
    var adaptedModuleNames: [String] {
        loraOffsets.enumerated().flatMap { l, modules in
            GPT2LoraModule.allCases.filter { modules[$0.rawValue] != nil }.map { "transformer.h.\(l).\($0.name)" }
        }
    }

    /// This model with each LoRA update folded into its Conv1D weight (W [in, out] += scaling (B A)^T)
    /// and the factors dropped, as peft's `merge_and_unload` gives.
    public func merged() -> GPT2Model {
        guard let lora = config.lora else { return self }
        var plain = config
        plain.lora = nil
        let merged = GPT2Model(config: plain, inferenceOnly: true)
        for entry in merged.table.entries {
            merged.p(entry.offset).update(from: p(table.offset(of: entry.name)), count: entry.count)
        }
        for (l, modules) in loraOffsets.enumerated() {
            for module in GPT2LoraModule.allCases {
                guard let factors = modules[module.rawValue] else { continue }
                let (inputs, outputs) = module.shape(config)
                // W (in, out) += scaling * A^T (in, r) B^T (r, out)
                gemm(.transposed, .transposed, m: inputs, n: outputs, k: lora.rank, alpha: lora.scaling, a: p(factors.a),
                     b: p(factors.b), beta: 1, c: merged.p(merged.table.offset(of: "transformer.h.\(l).\(module.name).weight")))
            }
        }
        return merged
    }

    /// What `swiftbert generate --model DIR [--base DIR]` runs: a GPT-2 directory as it is, or a
    /// peft LoRA adapter on its base (`base`, else adapter_config.json's `base_model_name_or_path`)
    /// with the update merged; and the base's directory.
    public static func load(model: String, base: String?) throws -> (model: GPT2Model, base: String) {
        guard PeftAdapter.isAdapter(model) else {
            if let base {
                throw PeftAdapterError("--base \(base) is for an adapter, and \(model) holds no \(PeftAdapter.configFile); give the model alone")
            }
            return (try load(directory: model, inferenceOnly: true), model)
        }
        let baseDirectory = try PeftAdapter.baseDirectory(of: model, base: base)
        var config = try config(in: baseDirectory)
        let lora = try PeftAdapter.loraSettings(in: model, conv1D: true)
        do {
            _ = try lora.adaptedModules(config)
        } catch {
            throw PeftAdapterError("\((model as NSString).appendingPathComponent(PeftAdapter.configFile)): \(error)")
        }
        config.lora = lora
        let adapted = GPT2Model(config: config, inferenceOnly: true)
        _ = try adapted.loadWeights(from: PretrainedDirectory.weightFiles(in: baseDirectory), initializationSeed: 0)
        try adapted.loadAdapter(directory: model)
        return (adapted.merged(), baseDirectory)
    }
}
