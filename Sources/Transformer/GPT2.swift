import Foundation
import Kernels

/// The shape of a GPT-2 model, read from and written as Hugging Face's `GPT2Config` config.json keys.
/// Missing keys take transformers' defaults (the 124M model); settings that change the computation
/// in ways not implemented here are errors naming the key.
public struct GPT2Config: Codable, Equatable, Sendable {
    public var vocabSize = 50257
    public var positionCount = 1024
    public var hiddenSize = 768
    public var layerCount = 12
    public var headCount = 12
    /// The MLP's width; nil: 4 x hidden size.
    public var innerSize: Int?
    public var activation = ActivationFunction.geluTanh
    public var residualDropout: Float = 0.1
    public var embeddingDropout: Float = 0.1
    public var attentionDropout: Float = 0.1
    public var layerNormEpsilon: Float = 1e-5
    public var initializerRange: Float = 0.02
    public var bosTokenID = 50256
    public var eosTokenID = 50256
    /// LoRA on the blocks' projections (the training run's `peft` section); not a config.json key.
    public var lora: LoraSettings? = nil

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case vocabSize = "vocab_size"
        case positionCount = "n_positions"
        case hiddenSize = "n_embd"
        case layerCount = "n_layer"
        case headCount = "n_head"
        case innerSize = "n_inner"
        case activation = "activation_function"
        case residualDropout = "resid_pdrop"
        case embeddingDropout = "embd_pdrop"
        case attentionDropout = "attn_pdrop"
        case layerNormEpsilon = "layer_norm_epsilon"
        case initializerRange = "initializer_range"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
    }

    /// Keys whose non-default values this implementation does not compute.
    public enum UnsupportedKeys: String, CodingKey, CaseIterable {
        case scaleAttentionWeights = "scale_attn_weights"
        case scaleByInverseLayer = "scale_attn_by_inverse_layer_idx"
        case tieWordEmbeddings = "tie_word_embeddings"
        case addCrossAttention = "add_cross_attention"
    }

    public init(vocabSize: Int = 50257, positionCount: Int = 1024, hiddenSize: Int = 768, layerCount: Int = 12, headCount: Int = 12) {
        self.vocabSize = vocabSize
        self.positionCount = positionCount
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
        self.headCount = headCount
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T { try c.decodeIfPresent(T.self, forKey: key) ?? fallback }
        vocabSize = try value(.vocabSize, 50257)
        positionCount = try value(.positionCount, 1024)
        hiddenSize = try value(.hiddenSize, 768)
        layerCount = try value(.layerCount, 12)
        headCount = try value(.headCount, 12)
        innerSize = try c.decodeIfPresent(Int.self, forKey: .innerSize)
        activation = try value(.activation, ActivationFunction.geluTanh)
        residualDropout = try value(.residualDropout, 0.1)
        embeddingDropout = try value(.embeddingDropout, 0.1)
        attentionDropout = try value(.attentionDropout, 0.1)
        layerNormEpsilon = try value(.layerNormEpsilon, 1e-5)
        initializerRange = try value(.initializerRange, 0.02)
        bosTokenID = try value(.bosTokenID, 50256)
        eosTokenID = try value(.eosTokenID, 50256)
        let other = try decoder.container(keyedBy: UnsupportedKeys.self)
        for (key, expected) in [(UnsupportedKeys.scaleAttentionWeights, true), (.scaleByInverseLayer, false), (.tieWordEmbeddings, true), (.addCrossAttention, false)] {
            if let found = try other.decodeIfPresent(Bool.self, forKey: key), found != expected {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: other, debugDescription: "\(key.rawValue) \(found) is not implemented; GPT-2 uses \(expected)")
            }
        }
        guard hiddenSize % max(1, headCount) == 0, headCount > 0, layerCount > 0, vocabSize > 0, positionCount > 0 else {
            throw DecodingError.dataCorruptedError(
                forKey: .hiddenSize, in: c, debugDescription: "n_embd \(hiddenSize) must be a multiple of n_head \(headCount), all sizes positive")
        }
    }

    public var inner: Int { innerSize ?? 4 * hiddenSize }

    /// Parameters of `GPT2LMHeadModel` (the head is tied: no parameters of its own).
    public var parameterCount: Int {
        let C = hiddenSize, I = inner
        let block = 4 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * I + I) + (I * C + C)
        return (vocabSize + positionCount) * C + layerCount * block + 2 * C
    }
    public var headSize: Int { hiddenSize / headCount }
}

/// GPT-2 as transformers' `GPT2LMHeadModel` computes it: token and learned position embeddings,
/// pre-LayerNorm blocks of causal self-attention (fused `c_attn`) and a `gelu_new` MLP, a final
/// LayerNorm and an LM head tied to the token embeddings. Linear weights are Conv1D's [in, out], as
/// transformers stores them, so y = x W + b. Dropout is not applied (inference and dropout-free runs).
///
/// The loss is the causal LM's: position t predicts token t + 1, positions whose next label is
/// `ignoredLabel` (padding, prompts) do not count; logits are computed at the counted positions only.
public final class GPT2Model {
    public let config: GPT2Config
    /// transformers' names and shapes; parts: -1 the embeddings, l block l, L the final LayerNorm.
    public let table: ParameterTable
    public var parameterCount: Int { table.totalCount }
    public var parameters: UnsafeMutableBufferPointer<Float>
    public var gradients: UnsafeMutableBufferPointer<Float>
    public static let ignoredLabel: Int32 = -100
    /// The engine's op-timing hook; `swiftbert bench` profiles BERT only, so GPT-2's passes leave it unread.
    public var profile: OpProfile?
    /// Debug mode: called after each forward op with its name, its block (nil outside them) and its output.
    public var forwardProbe: ((_ op: String, _ layer: Int?, _ output: UnsafeBufferPointer<Float>) -> Void)?

    struct Layer {
        let ln1Weight, ln1Bias, attentionWeight, attentionBias, projectionWeight, projectionBias: Int
        let ln2Weight, ln2Bias, fcWeight, fcBias, outputWeight, outputBias: Int
    }

    let wte, wpe, lnfWeight, lnfBias: Int
    let layers: [Layer]
    /// Per block, the offsets of each `GPT2LoraModule`'s factors (by raw value), nil where not adapted.
    let loraOffsets: [[(a: Int, b: Int)?]]

    /// The model of `config`; its LoRA settings, if any, must have been checked (`LoraSettings.adaptedModules`).
    /// `inferenceOnly` (generation, evaluation) allocates no gradients: backward is not run.
    public init(config: GPT2Config, inferenceOnly: Bool = false) {
        self.config = config
        let C = config.hiddenSize, I = config.inner, L = config.layerCount
        let adapted: [[GPT2LoraModule]]
        do {
            adapted = try config.lora?.adaptedModules(config) ?? Array(repeating: [], count: L)
        } catch {
            preconditionFailure("unchecked LoRA settings: \(error)")
        }
        var entries: [ParameterTable.Entry] = []
        var offset = 0
        var part = -1
        func add(_ name: String, _ shape: [Int]) {
            let count = shape.reduce(1, *)
            // Weight decay as transformers' Trainer applies it: not to biases and LayerNorm weights.
            let decays = !name.hasSuffix(".bias") && !name.contains(".ln_")
            entries.append(ParameterTable.Entry(name: name, shape: shape, offset: offset, count: count, decays: decays, part: part))
            offset += count
        }
        add("transformer.wte.weight", [config.vocabSize, C])
        add("transformer.wpe.weight", [config.positionCount, C])
        for l in 0..<L {
            part = l
            let p = "transformer.h.\(l)."
            add(p + "ln_1.weight", [C]); add(p + "ln_1.bias", [C])
            add(p + "attn.c_attn.weight", [C, 3 * C]); add(p + "attn.c_attn.bias", [3 * C])
            add(p + "attn.c_proj.weight", [C, C]); add(p + "attn.c_proj.bias", [C])
            add(p + "ln_2.weight", [C]); add(p + "ln_2.bias", [C])
            add(p + "mlp.c_fc.weight", [C, I]); add(p + "mlp.c_fc.bias", [I])
            add(p + "mlp.c_proj.weight", [I, C]); add(p + "mlp.c_proj.bias", [C])
            for module in adapted[l] {
                let names = LoraSettings.entryNames(layer: l, module: module), (inputs, outputs) = module.shape(config)
                add(names.a, [config.lora!.rank, inputs])
                add(names.b, [outputs, config.lora!.rank])
            }
        }
        part = L
        add("transformer.ln_f.weight", [C])
        add("transformer.ln_f.bias", [C])
        if let lora = config.lora {
            // The frozen base first, the adapter (and the biases of bias "all") last, as for BERT.
            entries = ParameterTable.frozenFirst(
                entries, trainable: ParameterTable.trainableNames(entries.map(\.name), bias: lora.bias, saved: []))
        }
        let table = ParameterTable(laidOut: entries, layerCount: L, adaptedModules: Array(repeating: [], count: L))
        self.table = table
        let at = table.offset(of:)
        wte = at("transformer.wte.weight")
        wpe = at("transformer.wpe.weight")
        layers = (0..<L).map { l in
            let p = "transformer.h.\(l)."
            return Layer(
                ln1Weight: at(p + "ln_1.weight"), ln1Bias: at(p + "ln_1.bias"),
                attentionWeight: at(p + "attn.c_attn.weight"), attentionBias: at(p + "attn.c_attn.bias"),
                projectionWeight: at(p + "attn.c_proj.weight"), projectionBias: at(p + "attn.c_proj.bias"),
                ln2Weight: at(p + "ln_2.weight"), ln2Bias: at(p + "ln_2.bias"),
                fcWeight: at(p + "mlp.c_fc.weight"), fcBias: at(p + "mlp.c_fc.bias"),
                outputWeight: at(p + "mlp.c_proj.weight"), outputBias: at(p + "mlp.c_proj.bias"))
        }
        loraOffsets = (0..<L).map { l in
            GPT2LoraModule.allCases.map { module in
                guard adapted[l].contains(module) else { return nil }
                let names = LoraSettings.entryNames(layer: l, module: module)
                return (a: at(names.a), b: at(names.b))
            }
        }
        lnfWeight = at("transformer.ln_f.weight")
        lnfBias = at("transformer.ln_f.bias")
        parameters = .allocateAligned(capacity: table.totalCount)
        parameters.initialize(repeating: 0)
        gradients = .allocate(capacity: inferenceOnly ? 0 : table.trainableCount)
        gradients.initialize(repeating: 0)
    }

    deinit {
        parameters.deallocate()
        gradients.deallocate()
    }

    /// The buffers of the passes, reused from one pass to the next: passes of one shape request the
    /// same sizes in the same order, so after the first nothing is allocated and no new page is
    /// touched (fresh large allocations cost a page fault per 4 KB, a fifth of a small model's step).
    final class PassMemory {
        var buffers: [(pointer: UnsafeMutablePointer<Float>, capacity: Int)] = []
        var next = 0
        /// Counts the passes; an `Output` is usable only until the next forward pass.
        var generation = 0

        /// The next buffer of the running pass, zeroed.
        func take(_ count: Int) -> UnsafeMutablePointer<Float> {
            let count = max(1, count)
            if next == buffers.count || buffers[next].capacity < count {
                if next < buffers.count { buffers[next].pointer.deallocate() }
                let buffer = (pointer: UnsafeMutablePointer<Float>.allocate(capacity: count), capacity: count)
                if next == buffers.count { buffers.append(buffer) } else { buffers[next] = buffer }
            }
            defer { next += 1 }
            buffers[next].pointer.initialize(repeating: 0, count: count)
            return buffers[next].pointer
        }

        deinit { for buffer in buffers { buffer.pointer.deallocate() } }
    }

    let memory = PassMemory()

    func p(_ offset: Int) -> UnsafeMutablePointer<Float> { parameters.baseAddress! + offset }
    /// The gradient of the parameter at `offset`, nil when it is frozen (backward then skips the work
    /// only that gradient needs: the frozen weights' dW products above all).
    func g(_ offset: Int) -> UnsafeMutablePointer<Float>? {
        let start = table.trainableRange.lowerBound
        return offset >= start && !gradients.isEmpty ? gradients.baseAddress! + (offset - start) : nil
    }

    /// The activations of one pass, kept for backward.
    final class Pass {
        let B, T, N: Int
        let memory: PassMemory
        let generation: Int
        /// Starts a pass in `memory`, whose buffers the previous pass no longer holds.
        init(B: Int, T: Int, memory: PassMemory) {
            (self.B, self.T, self.N, self.memory) = (B, T, B * T, memory)
            memory.generation += 1
            memory.next = 0
            generation = memory.generation
        }
        func buffer(_ count: Int) -> UnsafeMutablePointer<Float> { memory.take(count) }
        deinit { samples?.deallocate() }
        // Per layer: the block's input, LayerNorm 1 output and statistics, qkv, probabilities, context,
        // the residual after attention, LayerNorm 2 output and statistics, MLP pre-activation and output.
        var inputs: [UnsafeMutablePointer<Float>] = [], ln1: [UnsafeMutablePointer<Float>] = []
        var mean1: [UnsafeMutablePointer<Float>] = [], rstd1: [UnsafeMutablePointer<Float>] = []
        var qkv: [UnsafeMutablePointer<Float>] = [], probs: [UnsafeMutablePointer<Float>] = []
        var context: [UnsafeMutablePointer<Float>] = [], middle: [UnsafeMutablePointer<Float>] = []
        var ln2: [UnsafeMutablePointer<Float>] = [], mean2: [UnsafeMutablePointer<Float>] = []
        var rstd2: [UnsafeMutablePointer<Float>] = [], pre: [UnsafeMutablePointer<Float>] = []
        var activated: [UnsafeMutablePointer<Float>] = []
        var output: UnsafeMutablePointer<Float>? = nil, final: UnsafeMutablePointer<Float>? = nil
        var meanF: UnsafeMutablePointer<Float>? = nil, rstdF: UnsafeMutablePointer<Float>? = nil
        var mask: [Int32] = [], ids: [Int32] = []
        /// Training passes: the dropout keys and each sequence's global sample index.
        var dropout: Dropout? {
            didSet {
                samples?.deallocate()
                samples = dropout.map { dropout in
                    let samples = UnsafeMutablePointer<Int>.allocate(capacity: max(1, dropout.sampleIndices.count))
                    samples.initialize(from: dropout.sampleIndices, count: dropout.sampleIndices.count)
                    return samples
                }
            }
        }
        /// `dropout`'s sample indices where the masks can point at them.
        private(set) var samples: UnsafeMutablePointer<Int>?
        /// Per layer, the attention probabilities after dropout (the probabilities themselves without it).
        var dropped: [UnsafeMutablePointer<Float>] = []
        /// Rows (b T + t) whose logits count, their targets, the gathered final states and logits.
        var rows: [Int32] = [], targets: [Int32] = []
        /// d(loss sum)/d(logits) of the counted rows, computed with the loss.
        var gathered: UnsafeMutablePointer<Float>? = nil, dlogits: UnsafeMutablePointer<Float>? = nil
        /// LoRA: u = dropout(x) A^T (N, r) of each adapted site (keyed by `site(l, module)`), v = dy B
        /// (N, r) of backward, and the scratch of the dropped inputs.
        var loraHidden: [Int: UnsafeMutablePointer<Float>] = [:]
        var loraGradient: UnsafeMutablePointer<Float>? = nil, loraScratch: UnsafeMutablePointer<Float>? = nil
    }

    /// Dropout of a training pass: each mask is keyed by (seed, step, global sample index, layer, site),
    /// as BERT's are (layer 0 the embeddings, l + 1 block l; sites `DropoutSite`), so a sample gets
    /// the same masks on any rank and in any micro-batch; backward draws them again.
    public struct Dropout {
        public var seed: UInt64
        public var step: UInt64
        public var sampleIndices: [Int]

        public init(seed: UInt64, step: UInt64, sampleIndices: [Int]) {
            (self.seed, self.step, self.sampleIndices) = (seed, step, sampleIndices)
        }
    }

    /// The mask of one site, or nil when `probability` is 0 or the pass has no dropout.
    func dropoutMask(_ pass: Pass, _ probability: Float, layer: Int, site: UInt64, rowsPerSample: Int) -> DropoutMask? {
        guard let dropout = pass.dropout, let samples = pass.samples, probability > 0 else { return nil }
        return DropoutMask(
            probability: probability, seed: dropout.seed, step: dropout.step, layer: UInt64(layer), site: site,
            sampleIndices: samples, rowsPerSample: rowsPerSample)
    }

    /// The result of `forward`: the loss summed over the counted positions, their number, and the pass
    /// (whose memory the next forward pass reuses: backward takes the latest output only).
    public struct Output {
        public let lossSum: Double
        public let count: Int
        let pass: Pass
    }

    /// Forward for B sequences of T tokens (`mask` 1 for real tokens, 0 for padding); `labels` (the
    /// inputs themselves, or with `ignoredLabel` where nothing is to be learned) select the counted
    /// positions: position t counts when labels[t + 1] is not ignored. With `allLogits`, the logits of
    /// every position are computed too (returned as (B T, V)).
    public func forward(
        ids: [Int32], mask: [Int32], labels: [Int32], sequences B: Int, length T: Int, allLogits: Bool = false,
        dropout: Dropout? = nil
    ) -> (output: Output, logits: [Float]?) {
        precondition(ids.count == B * T && mask.count == B * T && labels.count == B * T && T <= config.positionCount)
        precondition(dropout.map { $0.sampleIndices.count == B } ?? true, "one sample index per sequence")
        let C = config.hiddenSize, I = config.inner, NH = config.headCount, hs = config.headSize, V = config.vocabSize
        let eps = config.layerNormEpsilon
        let pass = Pass(B: B, T: T, memory: memory)
        let N = B * T
        pass.mask = mask
        pass.ids = ids
        pass.dropout = dropout
        var h = pass.buffer(N * C)
        for n in 0..<N {
            let row = h + n * C, word = p(wte) + Int(ids[n]) * C, position = p(wpe) + (n % T) * C
            for j in 0..<C { row[j] = word[j] + position[j] }
        }
        if let drop = dropoutMask(pass, config.embeddingDropout, layer: 0, site: DropoutSite.embeddings, rowsPerSample: T) {
            dropoutForward(h, h, drop, rows: N, columns: C)
        }
        probe("embeddings", nil, h, N * C)
        let scale = 1 / Float(hs).squareRoot()
        for (l, layer) in layers.enumerated() {
            pass.inputs.append(h)
            let ln1 = pass.buffer(N * C), mean1 = pass.buffer(N), rstd1 = pass.buffer(N)
            layerNormForward(ln1, mean1, rstd1, h, p(layer.ln1Weight), p(layer.ln1Bias), rows: N, columns: C, epsilon: eps)
            let qkv = pass.buffer(N * 3 * C)
            conv1D(qkv, ln1, layer.attentionWeight, layer.attentionBias, rows: N, inputs: C, outputs: 3 * C)
            loraForward(pass, l, .attention, input: ln1, output: qkv)
            let probs = pass.buffer(B * NH * T * T), context = pass.buffer(N * C)
            let attentionDrop = dropoutMask(pass, config.attentionDropout, layer: l + 1, site: DropoutSite.attentionProbabilities, rowsPerSample: NH * T)
            let dropped = attentionDrop == nil ? probs : pass.buffer(B * NH * T * T)
            overHeads(B * NH) { bh in
                let b = bh / NH, head = bh % NH
                let q = qkv + b * T * 3 * C + head * hs, k = q + C, v = q + 2 * C
                let block = probs + bh * T * T
                for rows in Self.causalBlocks(T) {
                    gemm(.none, .transposed, m: rows.count, n: rows.upperBound, k: hs, alpha: scale, a: q + rows.lowerBound * 3 * C,
                         lda: 3 * C, b: k, ldb: 3 * C, beta: 0, c: block + rows.lowerBound * T, ldc: T)
                }
                mask.withUnsafeBufferPointer { m in
                    for t in 0..<T {
                        // Keys 0 ... t that are not padding; the rest get probability 0.
                        let row = block + t * T
                        attentionSoftmaxForward(row, nil, m.baseAddress! + b * T, nil, rows: 0..<1, length: t + 1)
                        (row + t + 1).update(repeating: 0, count: T - t - 1)
                    }
                }
                if let attentionDrop { dropoutForward(dropped, probs, attentionDrop, rows: (bh * T)..<((bh + 1) * T), columns: T) }
                for rows in Self.causalBlocks(T) {
                    gemm(.none, .none, m: rows.count, n: hs, k: rows.upperBound, a: dropped + bh * T * T + rows.lowerBound * T, lda: T,
                         b: v, ldb: 3 * C, beta: 0, c: context + (b * T + rows.lowerBound) * C + head * hs, ldc: C)
                }
            }
            let middle = pass.buffer(N * C)
            conv1D(middle, context, layer.projectionWeight, layer.projectionBias, rows: N, inputs: C, outputs: C)
            loraForward(pass, l, .attentionProjection, input: context, output: middle)
            if let drop = dropoutMask(pass, config.residualDropout, layer: l + 1, site: DropoutSite.attentionOutput, rowsPerSample: T) {
                dropoutForward(middle, middle, drop, rows: N, columns: C)
            }
            VectorMath.add(middle, h, count: N * C)
            probe("attention", l, middle, N * C)
            let ln2 = pass.buffer(N * C), mean2 = pass.buffer(N), rstd2 = pass.buffer(N)
            layerNormForward(ln2, mean2, rstd2, middle, p(layer.ln2Weight), p(layer.ln2Bias), rows: N, columns: C, epsilon: eps)
            let pre = pass.buffer(N * I), activated = pass.buffer(N * I)
            conv1D(pre, ln2, layer.fcWeight, nil, rows: N, inputs: C, outputs: I)
            loraForward(pass, l, .fc, input: ln2, output: pre)
            biasActivationForward(activated, pre, p(layer.fcBias), config.activation, rows: N, columns: I)
            let out = pass.buffer(N * C)
            conv1D(out, activated, layer.outputWeight, layer.outputBias, rows: N, inputs: I, outputs: C)
            loraForward(pass, l, .mlpProjection, input: activated, output: out)
            if let drop = dropoutMask(pass, config.residualDropout, layer: l + 1, site: DropoutSite.feedForwardOutput, rowsPerSample: T) {
                dropoutForward(out, out, drop, rows: N, columns: C)
            }
            VectorMath.add(out, middle, count: N * C)
            probe("mlp", l, out, N * C)
            pass.ln1.append(ln1); pass.mean1.append(mean1); pass.rstd1.append(rstd1); pass.qkv.append(qkv)
            pass.probs.append(probs); pass.dropped.append(dropped); pass.context.append(context); pass.middle.append(middle); pass.ln2.append(ln2)
            pass.mean2.append(mean2); pass.rstd2.append(rstd2); pass.pre.append(pre); pass.activated.append(activated)
            h = out
        }
        pass.output = h
        let final = pass.buffer(N * C), meanF = pass.buffer(N), rstdF = pass.buffer(N)
        layerNormForward(final, meanF, rstdF, h, p(lnfWeight), p(lnfBias), rows: N, columns: C, epsilon: eps)
        (pass.final, pass.meanF, pass.rstdF) = (final, meanF, rstdF)
        probe("ln_f", nil, final, N * C)
        for b in 0..<B {
            for t in 0..<(T - 1) where labels[b * T + t + 1] != Self.ignoredLabel {
                pass.rows.append(Int32(b * T + t))
                pass.targets.append(labels[b * T + t + 1])
            }
        }
        let P = pass.rows.count
        // The head at the counted rows; the softmax gives the gradient of the loss sum in the same pass
        // (the logits are overwritten by it), which backward scales.
        let gathered = pass.buffer(P * C), logits = pass.buffer(P * V)
        gatherRows(gathered, final, pass.rows, count: P, channels: C)
        gemm(.none, .transposed, m: P, n: V, k: C, a: gathered, b: p(wte), beta: 0, c: logits)
        let losses = pass.buffer(P)
        crossEntropyForwardBackward(losses, nil, logits, logits, pass.targets, dloss: 1, rows: P, vocabularySize: V)
        (pass.gathered, pass.dlogits) = (gathered, logits)
        var all: [Float]? = nil
        if allLogits {
            var values = [Float](repeating: 0, count: N * V)
            values.withUnsafeMutableBufferPointer {
                gemm(.none, .transposed, m: N, n: V, k: C, a: final, b: p(wte), beta: 0, c: $0.baseAddress!)
            }
            all = values
        }
        return (Output(lossSum: (0..<P).reduce(0.0) { $0 + Double(losses[$1]) }, count: P, pass: pass), all)
    }

    /// Adds d(dloss * lossSum)/d(parameters) of `output`'s pass to `gradients`; `onGradientsReady`
    /// receives the gradient ranges as they become final: the final LayerNorm, blocks L-1 ... 0, then
    /// the embeddings (the tied token embedding is final only then).
    public func backward(_ output: Output, dloss: Float, onGradientsReady: ((Range<Int>) -> Void)? = nil) {
        let pass = output.pass
        precondition(pass.generation == memory.generation, "backward needs the output of the latest forward pass")
        let B = pass.B, T = pass.T, N = pass.N
        let C = config.hiddenSize, I = config.inner, NH = config.headCount, hs = config.headSize, V = config.vocabSize
        let P = pass.rows.count
        let scale = 1 / Float(hs).squareRoot()
        // LM head: the tied embedding's gradient and d(final states) at the counted rows, from forward's
        // d(loss sum)/d(logits) scaled by dloss.
        let dlogits = pass.dlogits!
        if let dwte = g(wte) { gemm(.transposed, .none, m: V, n: C, k: P, alpha: dloss, a: dlogits, b: pass.gathered!, beta: 1, c: dwte) }
        let dGathered = pass.buffer(P * C)
        gemm(.none, .none, m: P, n: C, k: V, alpha: dloss, a: dlogits, b: p(wte), beta: 0, c: dGathered)
        let dh = pass.buffer(N * C), scratch = pass.buffer(N * C)
        expandRows(scratch, dGathered, pass.rows, count: P, rows: N, channels: C)
        layerNormBackward(dh, g(lnfWeight), g(lnfBias), scratch, pass.output!, p(lnfWeight), pass.meanF!, pass.rstdF!, rows: N, columns: C)
        onGradientsReady?(table.headRange)
        let dI = pass.buffer(N * I), dqkv = pass.buffer(N * 3 * C), dctx = pass.buffer(N * C), dS = pass.buffer(B * NH * T * T)
        let dBranch = pass.dropout == nil ? nil : pass.buffer(N * C)
        if let lora = config.lora { pass.loraGradient = pass.buffer(N * lora.rank) }
        // Below the lowest block with a trainable tensor nothing needs a gradient (the embeddings are frozen).
        let lowestTrainable = table.entries.filter(\.trainable).map(\.part).min() ?? -1
        /// d(branch output) from d(residual sum): dh itself, or through the site's dropout.
        func branchGradient(_ site: UInt64, layer l: Int) -> UnsafePointer<Float> {
            guard let dBranch, let drop = dropoutMask(pass, config.residualDropout, layer: l + 1, site: site, rowsPerSample: T) else {
                return UnsafePointer(dh)
            }
            dropoutBackward(dBranch, dh, drop, rows: N, columns: C)
            return UnsafePointer(dBranch)
        }
        for (l, layer) in layers.enumerated().reversed() {
            guard l >= lowestTrainable else {
                onGradientsReady?(table.layerRanges[l])
                continue
            }
            // out = middle + dropout(c_proj(gelu(c_fc(ln2(middle))))): dh is d(out), and flows to d(middle) as is.
            let dOut = branchGradient(DropoutSite.feedForwardOutput, layer: l)
            conv1DBackward(dI, layer.outputWeight, layer.outputBias, dout: dOut, input: pass.activated[l], rows: N, inputs: I, outputs: C)
            loraBackward(pass, l, .mlpProjection, input: pass.activated[l], dOutput: dOut, dInput: dI)
            activationBackward(dI, dI, pass.pre[l], config.activation, count: N * I)
            conv1DBackward(scratch, layer.fcWeight, layer.fcBias, dout: dI, input: pass.ln2[l], rows: N, inputs: C, outputs: I)
            loraBackward(pass, l, .fc, input: pass.ln2[l], dOutput: dI, dInput: scratch)
            layerNormBackward(scratch, g(layer.ln2Weight), g(layer.ln2Bias), scratch, pass.middle[l], p(layer.ln2Weight),
                              pass.mean2[l], pass.rstd2[l], rows: N, columns: C)
            VectorMath.add(dh, scratch, count: N * C)
            // middle = input + dropout(c_proj(attention(c_attn(ln1(input))))): dh is now d(middle).
            let dMiddle = branchGradient(DropoutSite.attentionOutput, layer: l)
            conv1DBackward(dctx, layer.projectionWeight, layer.projectionBias, dout: dMiddle, input: pass.context[l], rows: N, inputs: C, outputs: C)
            loraBackward(pass, l, .attentionProjection, input: pass.context[l], dOutput: dMiddle, dInput: dctx)
            let qkv = pass.qkv[l], probs = pass.probs[l], dropped = pass.dropped[l]
            let attentionDrop = dropoutMask(pass, config.attentionDropout, layer: l + 1, site: DropoutSite.attentionProbabilities, rowsPerSample: NH * T)
            overHeads(B * NH) { bh in
                let b = bh / NH, head = bh % NH
                let q = qkv + b * T * 3 * C + head * hs, k = q + C, v = q + 2 * C
                let dq = dqkv + b * T * 3 * C + head * hs, dk = dq + C, dv = dq + 2 * C
                let dBlock = dS + bh * T * T
                let dc = dctx + b * T * C + head * hs
                let blocks = Self.causalBlocks(T)
                // Keys 0 ..< r1 of rows r0 ..< r1: the last block (all keys) writes dv and dk, the others add.
                for rows in blocks.reversed() {
                    let (r0, r1) = (rows.lowerBound, rows.upperBound)
                    gemm(.transposed, .none, m: r1, n: hs, k: rows.count, a: dropped + bh * T * T + r0 * T, lda: T,
                         b: dc + r0 * C, ldb: C, beta: r1 == T ? 0 : 1, c: dv, ldc: 3 * C)
                    gemm(.none, .transposed, m: rows.count, n: r1, k: hs, a: dc + r0 * C, lda: C, b: v, ldb: 3 * C, beta: 0,
                         c: dBlock + r0 * T, ldc: T)
                    // The masked part of the rows: zero, so the full rows below read nothing left from another pass.
                    for t in rows where r1 < T { (dBlock + t * T + r1).update(repeating: 0, count: T - r1) }
                }
                // Dropout's backward is its forward on the gradient (the mask drawn again).
                if let attentionDrop { dropoutForward(dS, dS, attentionDrop, rows: (bh * T)..<((bh + 1) * T), columns: T) }
                // Masked probabilities are 0, so the full rows give 0 there.
                attentionSoftmaxBackward(dS, probs, nil, rows: (bh * T)..<((bh + 1) * T), length: T)
                for rows in blocks.reversed() {
                    let (r0, r1) = (rows.lowerBound, rows.upperBound)
                    gemm(.none, .none, m: rows.count, n: hs, k: r1, alpha: scale, a: dBlock + r0 * T, lda: T, b: k, ldb: 3 * C,
                         beta: 0, c: dq + r0 * 3 * C, ldc: 3 * C)
                    gemm(.transposed, .none, m: r1, n: hs, k: rows.count, alpha: scale, a: dBlock + r0 * T, lda: T,
                         b: q + r0 * 3 * C, ldb: 3 * C, beta: r1 == T ? 0 : 1, c: dk, ldc: 3 * C)
                }
            }
            conv1DBackward(scratch, layer.attentionWeight, layer.attentionBias, dout: dqkv, input: pass.ln1[l], rows: N, inputs: C, outputs: 3 * C)
            loraBackward(pass, l, .attention, input: pass.ln1[l], dOutput: dqkv, dInput: scratch)
            layerNormBackward(scratch, g(layer.ln1Weight), g(layer.ln1Bias), scratch, pass.inputs[l], p(layer.ln1Weight),
                              pass.mean1[l], pass.rstd1[l], rows: N, columns: C)
            VectorMath.add(dh, scratch, count: N * C)
            onGradientsReady?(table.layerRanges[l])
        }
        if let dwte = g(wte), let dwpe = g(wpe) {
            if let drop = dropoutMask(pass, config.embeddingDropout, layer: 0, site: DropoutSite.embeddings, rowsPerSample: T) {
                dropoutBackward(dh, dh, drop, rows: N, columns: C)
            }
            for n in 0..<N {
                VectorMath.add(dwte + Int(pass.ids[n]) * C, dh + n * C, count: C)
                VectorMath.add(dwpe + (n % T) * C, dh + n * C, count: C)
            }
        }
        onGradientsReady?(table.embeddingRange)
    }

    /// Row blocks of causal attention: rows r0 ..< r1 attend to keys 0 ..< r1 only, so the products
    /// skip the masked upper triangle but for the diagonal blocks (0.63 of the full work at T = 256,
    /// 0.53 at T = 1024, with blocks of 64 rows, large enough for GEMM to run at speed).
    static func causalBlocks(_ T: Int) -> [Range<Int>] {
        stride(from: 0, to: T, by: 64).map { $0..<min(T, $0 + 64) }
    }

    @inline(__always)
    func probe(_ op: String, _ layer: Int?, _ output: UnsafePointer<Float>, _ count: Int) {
        forwardProbe?(op, layer, UnsafeBufferPointer(start: output, count: count))
    }

    // MARK: - Conv1D

    /// y = x W + b with W [inputs, outputs] (transformers' Conv1D).
    func conv1D(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ weight: Int, _ bias: Int?, rows: Int, inputs: Int, outputs: Int) {
        gemm(.none, .none, m: rows, n: outputs, k: inputs, a: x, b: p(weight), beta: 0, c: y)
        if let bias { addBias(y, p(bias), rows: rows, columns: outputs) }
    }

    /// dx = dy W^T (written), dW += x^T dy, db += column sums of dy (each skipped when frozen).
    func conv1DBackward(
        _ dx: UnsafeMutablePointer<Float>, _ weight: Int, _ bias: Int, dout dy: UnsafePointer<Float>, input x: UnsafePointer<Float>,
        rows: Int, inputs: Int, outputs: Int
    ) {
        if let dW = g(weight) { gemm(.transposed, .none, m: inputs, n: outputs, k: rows, a: x, b: dy, beta: 1, c: dW) }
        if let db = g(bias) { biasBackward(db, dy, rows: rows, columns: outputs) }
        gemm(.none, .transposed, m: rows, n: inputs, k: outputs, a: dy, b: p(weight), beta: 0, c: dx)
    }

    /// `body(head)` for every (sequence, head), spread over the element-wise workers with
    /// single-threaded BLAS.
    func overHeads(_ count: Int, _ body: (Int) -> Void) {
        guard min(Parallel.workerCount, count) > 1 else {
            for head in 0..<count { body(head) }
            return
        }
        let threads = BLASRuntime.threadCount
        BLASRuntime.setThreadCount(1)
        Parallel.forEachChunk(count, minimumChunk: 1) { range in for head in range { body(head) } }
        BLASRuntime.setThreadCount(threads)
    }
}
