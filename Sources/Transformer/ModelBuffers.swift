import Kernels

/// Flat offsets of the parameters the model reads, looked up once from the table by name.
struct Offsets {
    struct Layer {
        /// Query, key and value weights, (3C, C) contiguous; their biases (3C).
        let qkvWeight, qkvBias: Int
        let attentionOutputWeight, attentionOutputBias: Int
        let attentionNormWeight, attentionNormBias: Int
        let intermediateWeight, intermediateBias: Int
        let outputWeight, outputBias: Int
        let outputNormWeight, outputNormBias: Int
        /// The LoRA factors of each `LoraModule` (by raw value), nil where the module is not adapted.
        let lora: [(a: Int, b: Int)?]
    }

    let wordEmbeddings, positionEmbeddings, tokenTypeEmbeddings: Int
    let embeddingNormWeight, embeddingNormBias: Int
    /// The trained table of prompt tuning ((n, C) virtual tokens) or prefix tuning ((n, 2 L C) keys and
    /// values, `PrefixTuningSettings`); -1 without, or when a prompt encoder computes it.
    let promptTable: Int
    let layers: [Layer]
    /// -1 where the head has no such parameter (pooler, pre-training heads, NSP head, classifier).
    let poolerWeight, poolerBias: Int
    let mlmBias, transformWeight, transformBias, transformNormWeight, transformNormBias: Int
    let nspWeight, nspBias: Int
    /// The fine-tuning heads' output layer: `classifier`, or `qa_outputs` for question answering.
    let classifierWeight, classifierBias: Int

    init(table: ParameterTable, config: BertConfig) {
        func at(_ name: String) -> Int { table.offset(of: name) }
        wordEmbeddings = at("bert.embeddings.word_embeddings.weight")
        positionEmbeddings = at("bert.embeddings.position_embeddings.weight")
        tokenTypeEmbeddings = at("bert.embeddings.token_type_embeddings.weight")
        embeddingNormWeight = at("bert.embeddings.LayerNorm.weight")
        embeddingNormBias = at("bert.embeddings.LayerNorm.bias")
        promptTable = table.entry(named: PromptTuningSettings.entryName)?.offset ?? -1
        let C = config.hiddenSize
        layers = (0..<config.hiddenLayerCount).map { layer in
            let p = "bert.encoder.layer.\(layer)."
            let query = at(p + "attention.self.query.weight")
            let queryBias = at(p + "attention.self.query.bias")
            // The fused projection relies on the table's adjacency of q, k, v.
            precondition(at(p + "attention.self.key.weight") == query + C * C)
            precondition(at(p + "attention.self.value.weight") == query + 2 * C * C)
            precondition(at(p + "attention.self.key.bias") == queryBias + C)
            precondition(at(p + "attention.self.value.bias") == queryBias + 2 * C)
            return Layer(
                qkvWeight: query, qkvBias: queryBias,
                attentionOutputWeight: at(p + "attention.output.dense.weight"),
                attentionOutputBias: at(p + "attention.output.dense.bias"),
                attentionNormWeight: at(p + "attention.output.LayerNorm.weight"),
                attentionNormBias: at(p + "attention.output.LayerNorm.bias"),
                intermediateWeight: at(p + "intermediate.dense.weight"),
                intermediateBias: at(p + "intermediate.dense.bias"),
                outputWeight: at(p + "output.dense.weight"),
                outputBias: at(p + "output.dense.bias"),
                outputNormWeight: at(p + "output.LayerNorm.weight"),
                outputNormBias: at(p + "output.LayerNorm.bias"),
                lora: LoraModule.allCases.map { module in
                    guard table.adaptedModules[layer].contains(module) else { return nil }
                    let names = LoraSettings.entryNames(layer: layer, module: module)
                    return (at(names.a), at(names.b))
                })
        }
        func optional(_ name: String) -> Int { table.entry(named: name)?.offset ?? -1 }
        poolerWeight = optional("bert.pooler.dense.weight")
        poolerBias = optional("bert.pooler.dense.bias")
        mlmBias = optional("cls.predictions.bias")
        transformWeight = optional("cls.predictions.transform.dense.weight")
        transformBias = optional("cls.predictions.transform.dense.bias")
        transformNormWeight = optional("cls.predictions.transform.LayerNorm.weight")
        transformNormBias = optional("cls.predictions.transform.LayerNorm.bias")
        nspWeight = optional("cls.seq_relationship.weight")
        nspBias = optional("cls.seq_relationship.bias")
        let output = config.head == .questionAnswering ? "qa_outputs" : "classifier"
        classifierWeight = optional(output + ".weight")
        classifierBias = optional(output + ".bias")
    }
}

/// Every activation and scratch buffer of the model, allocated once for the largest micro-batch.
///
/// Without `training`, only forward passes without dropout run: the buffers of backward, dropout and
/// the kept rows are left out, and the layers share one set of buffers except their outputs (which
/// `hiddenStates(layer:)` reads); a layer reads only its input, the previous layer's output.
final class Activations {
    struct Layer {
        let qkv: UnsafeMutablePointer<Float>          // (N, 3C) queries | keys | values per token
        let probs: UnsafeMutablePointer<Float>        // (B, NH, T, S) attention before dropout (S keys:
                                                      // prefix tuning's n, then the T tokens')
        let context: UnsafeMutablePointer<Float>      // (N, C) heads side by side
        let residual1: UnsafeMutablePointer<Float>    // (N, C) input + attention output (LayerNorm input)
        let mean1, rstd1: UnsafeMutablePointer<Float> // (N)
        let hidden1: UnsafeMutablePointer<Float>      // (N, C) after the attention LayerNorm
        let pre: UnsafeMutablePointer<Float>          // (N, I) intermediate dense output + bias
        let residual2: UnsafeMutablePointer<Float>    // (N, C)
        let mean2, rstd2: UnsafeMutablePointer<Float> // (N)
        let output: UnsafeMutablePointer<Float>       // (N, C) layer output
    }

    private var allocations: [UnsafeMutableRawPointer] = []
    private(set) var floatCount = 0
    /// Int32 elements of the index buffers.
    let indexCount: Int
    /// Keep/drop decisions of every dropout site of a training micro-batch (`DropoutMask.record`).
    let dropoutRecord: DropoutRecord

    let embeddingSum, embeddingMean, embeddingRstd, embeddingOut: UnsafeMutablePointer<Float>
    let layers: [Layer]
    // Scratch shared by all layers.
    let dense: UnsafeMutablePointer<Float>            // (N, C) dense outputs before bias; their gradients
    let attentionScratch: UnsafeMutablePointer<Float> // (B, NH, T, S) dropped probabilities; their gradients
    let dResidual: UnsafeMutablePointer<Float>        // (N, C) gradient flowing down the residual stream
    let dIntermediate: UnsafeMutablePointer<Float>    // (N, I) activation output in forward; its gradient
    let activationDerivative: UnsafeMutablePointer<Float> // (N, I) f'(pre) of the layer in backward
    let dqkv: UnsafeMutablePointer<Float>             // (N, 3C)
    let dContext: UnsafeMutablePointer<Float>         // (N, C)
    // Pooler and NSP head.
    let clsRows, pooled, dPooled, dClsRows: UnsafeMutablePointer<Float> // (B, C)
    let nspLogits: UnsafeMutablePointer<Float>        // (B, K)
    let nspLosses: UnsafeMutablePointer<Float>        // (B)
    let nspCorrect: UnsafeMutablePointer<Bool>        // (B)
    // MLM head, one chunk of masked positions (logitsRows) at a time.
    let gathered, transformPre, transformAct, transformOut, dTransform, dGathered: UnsafeMutablePointer<Float> // (chunk, C)
    let transformMean, transformRstd: UnsafeMutablePointer<Float> // (chunk)
    let logits: UnsafeMutablePointer<Float>           // (chunk, V)
    let mlmLosses: UnsafeMutablePointer<Float>        // (N): every masked position of the micro-batch
    let mlmCorrect: UnsafeMutablePointer<Bool>        // (N)
    // Fine-tuning heads: the classifier's input after dropout, its gradient and the head's logits.
    let headInput, dHeadInput: UnsafeMutablePointer<Float> // (N, C), or (B, C) for heads on [CLS]
    let headLogits: UnsafeMutablePointer<Float>       // (N, K)
    // The last layer at the rows the losses read (`KeptRows`).
    let keptQueries: UnsafeMutablePointer<Float>      // (R, C) their queries, gathered from qkv
    let keptTokenRows, keptMaskedRows: UnsafeMutablePointer<Int32> // (N)
    let keptSequenceStarts: UnsafeMutablePointer<Int32> // (B + 1)
    let keptAttentionRows: UnsafeMutablePointer<Int32>  // (NH N)
    // Prefix tuning: each sequence's key mask (n ones, then its attention mask), (B, S); the
    // gradient of one layer's prefix keys and values per sequence, (B, n, 2C), summed in batch order.
    let keyMask: UnsafeMutablePointer<Int32>
    let dPrefix: UnsafeMutablePointer<Float>
    // LoRA: each adapted module's u = dropout(x) A^T, (N, r) per layer and module (shared by the
    // layers without training); v = dy B in backward, (N, r); the dropped input, (N, max(C, I)).
    private let loraHiddenBase: UnsafeMutablePointer<Float>
    private let loraHiddenStride: Int
    private let loraLayerStride: Int
    let loraGradient: UnsafeMutablePointer<Float>
    let loraScratch: UnsafeMutablePointer<Float>

    init(config: BertConfig, sequences B: Int, length T: Int, logitsRows: Int, training: Bool = true) {
        let C = config.hiddenSize, I = config.intermediateSize, NH = config.attentionHeadCount
        let N = B * T, V = config.vocabSize, K = max(1, config.nspClassCount)
        let prefix = config.keyPrefixLength, S = T + prefix
        // Only the pre-training heads use the MLM buffers, only the others the classifier's.
        let preTraining = config.head == .preTraining
        let logitsRows = preTraining ? logitsRows : 0
        let headRows = preTraining ? 0 : N
        var allocations: [UnsafeMutableRawPointer] = []
        var floatCount = 0, indexCount = 0
        func zeroed<Element>(_ count: Int, _ zero: Element) -> UnsafeMutablePointer<Element> {
            let pointer = UnsafeMutablePointer<Element>.allocate(capacity: max(1, count))
            pointer.initialize(repeating: zero, count: max(1, count))
            allocations.append(UnsafeMutableRawPointer(pointer))
            return pointer
        }
        func buffer(_ count: Int) -> UnsafeMutablePointer<Float> {
            floatCount += count
            return zeroed(count, 0)
        }
        func indices(_ count: Int) -> UnsafeMutablePointer<Int32> {
            indexCount += count
            return zeroed(count, 0)
        }
        /// A buffer only training (backward, dropout, losses, kept rows) uses.
        func trainingBuffer(_ count: Int) -> UnsafeMutablePointer<Float> { buffer(training ? count : 0) }
        func trainingIndices(_ count: Int) -> UnsafeMutablePointer<Int32> { indices(training ? count : 0) }
        func layer() -> Layer {
            Layer(
                qkv: buffer(N * 3 * C), probs: buffer(B * NH * T * S), context: buffer(N * C),
                residual1: buffer(N * C), mean1: buffer(N), rstd1: buffer(N), hidden1: buffer(N * C),
                pre: buffer(N * I), residual2: buffer(N * C), mean2: buffer(N),
                rstd2: buffer(N), output: buffer(N * C))
        }
        embeddingSum = buffer(N * C)
        embeddingMean = buffer(N)
        embeddingRstd = buffer(N)
        embeddingOut = buffer(N * C)
        if training {
            layers = (0..<config.hiddenLayerCount).map { _ in layer() }
        } else {
            let shared = layer()
            layers = (0..<config.hiddenLayerCount).map { l in
                l == 0 ? shared : Layer(
                    qkv: shared.qkv, probs: shared.probs, context: shared.context, residual1: shared.residual1,
                    mean1: shared.mean1, rstd1: shared.rstd1, hidden1: shared.hidden1, pre: shared.pre,
                    residual2: shared.residual2, mean2: shared.mean2, rstd2: shared.rstd2, output: buffer(N * C))
            }
        }
        dense = buffer(N * C)
        attentionScratch = trainingBuffer(B * NH * T * S)
        dResidual = trainingBuffer(N * C)
        dIntermediate = buffer(N * I)
        activationDerivative = trainingBuffer(N * I)
        dqkv = trainingBuffer(N * 3 * C)
        dContext = trainingBuffer(N * C)
        clsRows = buffer(B * C)
        pooled = buffer(B * C)
        dPooled = trainingBuffer(B * C)
        dClsRows = trainingBuffer(B * C)
        nspLogits = buffer(B * K)
        nspLosses = trainingBuffer(B)
        gathered = buffer(logitsRows * C)
        transformPre = buffer(logitsRows * C)
        transformAct = buffer(logitsRows * C)
        transformOut = buffer(logitsRows * C)
        dTransform = trainingBuffer(logitsRows * C)
        dGathered = trainingBuffer(logitsRows * C)
        transformMean = buffer(logitsRows)
        transformRstd = buffer(logitsRows)
        mlmLosses = trainingBuffer(preTraining ? N : 0)
        headInput = buffer(headRows * C)
        dHeadInput = trainingBuffer(headRows * C)
        headLogits = buffer(headRows * config.headOutputCount)
        logits = trainingBuffer(logitsRows * V)
        keptQueries = trainingBuffer(N * C)
        keptTokenRows = trainingIndices(N)
        keptMaskedRows = trainingIndices(N)
        keptSequenceStarts = trainingIndices(B + 1)
        keptAttentionRows = trainingIndices(NH * N)
        keyMask = indices(prefix > 0 ? B * S : 0)
        dPrefix = trainingBuffer(B * prefix * 2 * C)
        let rank = config.lora?.rank ?? 0
        let modules = LoraModule.allCases.count
        loraHiddenStride = N * rank
        loraLayerStride = training ? modules * loraHiddenStride : 0
        loraHiddenBase = buffer(training ? config.hiddenLayerCount * modules * N * rank : modules * N * rank)
        loraGradient = trainingBuffer(N * rank)
        loraScratch = buffer((config.lora?.dropout ?? 0) > 0 ? N * max(C, I) : 0)
        self.indexCount = indexCount
        nspCorrect = zeroed(training ? B : 0, false)
        mlmCorrect = zeroed(training && preTraining ? N : 0, false)
        self.allocations = allocations
        self.floatCount = floatCount
        dropoutRecord = DropoutRecord(config: config, sequences: training ? B : 0, length: T)
    }

    deinit {
        for pointer in allocations { pointer.deallocate() }
    }

    /// LoRA's u of `module` in `layer`, (N, r).
    func loraHidden(layer: Int, module: LoraModule) -> UnsafeMutablePointer<Float> {
        loraHiddenBase + layer * loraLayerStride + module.rawValue * loraHiddenStride
    }

    /// The rows of the last layer that the losses read for B sequences of T tokens with P masked
    /// positions (flat b*T + t), laid out in the `kept...` buffers.
    func keepRows(
        maskedPositions: UnsafePointer<Int32>?, count P: Int, sequences B: Int, length T: Int, heads NH: Int
    ) -> KeptRows {
        // keptMaskedRows first marks the kept tokens (1), then holds the masked positions' rows.
        let marks = keptMaskedRows
        marks.update(repeating: 0, count: B * T)
        for b in 0..<B { marks[b * T] = 1 }
        if let maskedPositions { for i in 0..<P { marks[Int(maskedPositions[i])] = 1 } }
        var count = 0
        for b in 0..<B {
            keptSequenceStarts[b] = Int32(count)
            for t in 0..<T where marks[b * T + t] != 0 {
                keptTokenRows[count] = Int32(b * T + t)
                count += 1
            }
        }
        keptSequenceStarts[B] = Int32(count)
        // Masked position -> kept row: the rows are ascending, so a binary search finds it.
        if let maskedPositions {
            let rows = UnsafeBufferPointer(start: keptTokenRows, count: count)
            for i in 0..<P {
                var low = 0, high = count
                while low < high {
                    let middle = (low + high) / 2
                    if rows[middle] < maskedPositions[i] { low = middle + 1 } else { high = middle }
                }
                keptMaskedRows[i] = Int32(low)
            }
        }
        let kept = KeptRows(
            count: count, tokenRows: keptTokenRows, sequenceStarts: keptSequenceStarts, maskedRows: keptMaskedRows,
            attentionRows: keptAttentionRows)
        for b in 0..<B {
            let (first, queries) = kept.queries(of: b)
            for h in 0..<NH {
                for i in 0..<queries {
                    let t = Int(keptTokenRows[first + i]) - b * T
                    keptAttentionRows[NH * first + h * queries + i] = Int32((b * NH + h) * T + t)
                }
            }
        }
        return kept
    }
}

/// The rows of the last encoder layer that the pre-training losses read: every sequence's [CLS]
/// token (the pooler's input) and its masked positions (the MLM head's). The last layer needs the
/// keys and values of every token, but its queries, attention output, feed-forward block and
/// LayerNorms only at these rows: the others never reach a loss. Skipping them is exact (the same
/// loss and gradients, the same dropout masks through `DropoutMask.rowMap`) and saves most of the
/// last layer's work: 71% of its FLOPs for bert-mini at 128 tokens and 19 predictions.
///
/// Kept rows are numbered in token order; sequence b has rows `queries(of: b)`, the first its [CLS].
/// The last layer's attention probabilities are then (B, NH, q_b, T): for each sequence b, NH blocks
/// of its q_b kept rows.
struct KeptRows {
    /// R, the number of kept rows.
    let count: Int
    /// Token b*T + t of each kept row, ascending, (R).
    let tokenRows: UnsafePointer<Int32>
    /// First kept row of each sequence, then R, (B + 1).
    let sequenceStarts: UnsafePointer<Int32>
    /// Kept row of each masked position, (P).
    let maskedRows: UnsafePointer<Int32>
    /// Row of the full (B, NH, T) attention layout of each row of the kept one, (NH R): the dropout
    /// masks' `rowMap`.
    let attentionRows: UnsafePointer<Int32>

    /// The kept rows of sequence b: the first and how many.
    func queries(of b: Int) -> (first: Int, count: Int) {
        let first = Int(sequenceStarts[b])
        return (first, Int(sequenceStarts[b + 1]) - first)
    }
}

/// One byte per element of every dropout site: the embeddings' output and, per encoder layer, the
/// attention probabilities and the attention and feed-forward outputs. Forward records the masks,
/// backward replays them: each mask is drawn once per micro-batch (a quarter of the memory of the
/// float activations they mask, and far cheaper than drawing again).
final class DropoutRecord {
    let bytes: UnsafeMutablePointer<UInt8>
    let count: Int
    private let hiddenBytes: Int
    private let attentionBytes: Int

    init(config: BertConfig, sequences B: Int, length T: Int) {
        hiddenBytes = B * T * config.hiddenSize
        attentionBytes = B * config.attentionHeadCount * T * (T + config.keyPrefixLength)
        count = hiddenBytes + config.hiddenLayerCount * (attentionBytes + 2 * hiddenBytes)
        bytes = .allocate(capacity: max(1, count))
        bytes.initialize(repeating: 0, count: max(1, count))
    }

    deinit { bytes.deallocate() }

    /// The record of `site` of `layer` (0 = embeddings, l + 1 = encoder layer l).
    func site(layer: Int, site: UInt64) -> UnsafeMutablePointer<UInt8> {
        if layer == 0 { return bytes }
        let base = bytes + hiddenBytes + (layer - 1) * (attentionBytes + 2 * hiddenBytes)
        switch site {
        case DropoutSite.attentionProbabilities: return base
        case DropoutSite.attentionOutput: return base + attentionBytes
        default: return base + attentionBytes + hiddenBytes
        }
    }
}

/// Dropout of one micro-batch: whether it applies and the keys of its masks.
struct DropoutSettings {
    let enabled: Bool
    let seed: UInt64
    let step: UInt64
    /// Global sample index per sequence, [B]; nil when dropout is off.
    let sampleIndices: UnsafePointer<Int>?
    let hidden: Float
    let attention: Float
    let heads: Int
    let length: Int
    /// Where forward records the masks; nil to draw them again in backward.
    var record: DropoutRecord?
    /// Backward: replay the recorded masks.
    var replay = false

    /// No dropout (inference).
    static func disabled(heads: Int, length: Int) -> DropoutSettings {
        DropoutSettings(
            enabled: false, seed: 0, step: 0, sampleIndices: nil, hidden: 0, attention: 0, heads: heads, length: length)
    }

    /// The same masks, replayed from `record` by backward.
    var replaying: DropoutSettings {
        var settings = self
        settings.replay = true
        return settings
    }

    /// Mask for (N, C) hidden states of `layer` (0 = embeddings) at `site`, or nil when off; on the
    /// kept rows only with `kept`.
    func hiddenMask(layer: Int, site: UInt64, kept: KeptRows? = nil) -> DropoutMask? {
        guard enabled, hidden > 0, let sampleIndices else { return nil }
        var mask = DropoutMask(
            probability: hidden, seed: seed, step: step, layer: UInt64(layer), site: site,
            sampleIndices: sampleIndices, rowsPerSample: length)
        mask.rowMap = kept?.tokenRows
        mask.record = record?.site(layer: layer, site: site)
        mask.replay = replay
        return mask
    }

    /// Mask for the (B, NH, T, T) attention probabilities of encoder layer `layer`, or nil when off;
    /// for the kept rows' probabilities with `kept`.
    func attentionMask(layer: Int, kept: KeptRows? = nil) -> DropoutMask? {
        guard enabled, attention > 0, let sampleIndices else { return nil }
        var mask = DropoutMask(
            probability: attention, seed: seed, step: step, layer: UInt64(layer + 1), site: DropoutSite.attentionProbabilities,
            sampleIndices: sampleIndices, rowsPerSample: heads * length)
        mask.rowMap = kept?.attentionRows
        mask.record = record?.site(layer: layer + 1, site: DropoutSite.attentionProbabilities)
        mask.replay = replay
        return mask
    }
}

/// The `site` key of each dropout in the model.
enum DropoutSite {
    static let embeddings: UInt64 = 0
    static let attentionProbabilities: UInt64 = 1
    static let attentionOutput: UInt64 = 2
    static let feedForwardOutput: UInt64 = 3
    /// LoRA's dropout of each adapted module's input: this plus `LoraModule.rawValue`.
    static let lora: UInt64 = 16
}
