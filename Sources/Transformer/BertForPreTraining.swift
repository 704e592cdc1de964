import Foundation
import Kernels

/// What one forward (and backward) pass over a micro-batch produced.
public struct StepResult: Sendable, Equatable {
    /// Sum of the MLM cross-entropies of this micro-batch divided by `maskedTokenNormalizer`.
    public var mlmLoss: Float
    /// Sum of the NSP cross-entropies divided by `sequenceNormalizer` (0 without an NSP head).
    public var nspLoss: Float
    /// `mlmLoss + nspLoss`, the quantity whose gradient backward adds.
    public var loss: Float
    public var mlmCorrect: Int
    public var mlmCount: Int
    public var nspCorrect: Int
    public var nspCount: Int

    public init(
        mlmLoss: Float = 0, nspLoss: Float = 0, loss: Float = 0,
        mlmCorrect: Int = 0, mlmCount: Int = 0, nspCorrect: Int = 0, nspCount: Int = 0
    ) {
        self.mlmLoss = mlmLoss
        self.nspLoss = nspLoss
        self.loss = loss
        self.mlmCorrect = mlmCorrect
        self.mlmCount = mlmCount
        self.nspCorrect = nspCorrect
        self.nspCount = nspCount
    }
}

/// Inputs the inference entry points reject, with what to change.
public enum BertInputError: Error, LocalizedError, CustomStringConvertible, Equatable {
    case invalid(String)

    public var description: String {
        switch self {
        case let .invalid(message): return message
        }
    }

    public var errorDescription: String? { description }
}

/// BERT with its two pre-training heads, forward and backward, on flat Float buffers.
///
/// Parameters and gradients are one contiguous buffer each, laid out by `table`. Every activation
/// buffer is allocated once in `init` for `maxSequenceCount x sequenceLength`; `step` allocates
/// nothing. Legend: B sequences, T sequence length, N = B*T tokens, C hidden, NH heads, hs head size,
/// I intermediate, V vocabulary, P masked positions, K NSP classes.
///
/// The MLM head runs on the masked positions only (gathered, as in Google's and NVIDIA's BERT), and
/// `step` runs the last encoder layer only at the rows the heads read (`KeptRows`).
/// Dropout masks come from `Philox(seed: dropoutSeed, dropoutStep, sampleIndex, layer, site)` at the
/// element's index inside its sequence: layer 0 is the embeddings, layer l + 1 is encoder layer l;
/// sites are 0 embeddings output, 1 attention probabilities, 2 attention output, 3 feed-forward output.
public final class BertForPreTraining {
    public let config: BertConfig
    public let table: ParameterTable
    /// Sequences and tokens per sequence the activation buffers hold (`reserve` grows them).
    public private(set) var maxSequenceCount: Int
    public private(set) var sequenceLength: Int
    /// Built by `init(..., inferenceOnly: true)`: buffers for forward passes without dropout only.
    public let inferenceOnly: Bool
    /// Flat parameters, laid out by `table`.
    public var parameters: UnsafeMutableBufferPointer<Float>
    /// Flat gradients, laid out like `parameters`; backward adds into them.
    public var gradients: UnsafeMutableBufferPointer<Float>
    /// Debug mode: called after each forward op with the op's name, its encoder layer (nil outside
    /// the layers) and its output, to find the first op that produces NaN/Inf and to time the ops.
    public var forwardProbe: ((_ op: String, _ layer: Int?, _ output: UnsafeBufferPointer<Float>) -> Void)?

    /// When set, `step` adds each op's wall-clock time to its class (the benchmark's breakdown).
    public var profile: OpProfile?

    /// `step` computes the last encoder layer only at the rows its losses read (`KeptRows`): the same
    /// loss and gradients for much less work. Off computes every row (for comparison).
    public var computesLastLayerAtLossRowsOnly = true
    /// The rows the last layer of the most recent forward pass computed; nil for all of them.
    var lastLayerRows: KeptRows?

    @inline(__always)
    func probe(_ op: String, _ layer: Int?, _ output: UnsafePointer<Float>, _ count: Int) {
        forwardProbe?(op, layer, UnsafeBufferPointer(start: output, count: count))
    }

    /// Runs `body`, timed as `op` when profiling.
    @inline(__always)
    func timed(_ op: OpClass, _ body: () -> Void) {
        if let profile { profile.measure(op, body) } else { body() }
    }

    let offsets: Offsets
    private(set) var activations: Activations
    /// Masked positions processed per MLM decoder GEMM: bounds the (rows, V) logits buffer. Each
    /// chunk streams the (V, C) decoder weight and its gradient through memory three times, so one
    /// chunk covers a batch of 32 sequences x 20 predictions (a 78 MB logits buffer at V = 30522).
    let logitsChunkRows: Int
    /// Sequences in the most recent forward pass (for the inference accessors).
    var lastSequenceCount = 0
    /// T of the running (or most recent) forward pass: `sequenceLength` in `step`; inference may run
    /// shorter sequences in the same buffers.
    var activeLength: Int

    /// A model for at most `maxSequenceCount` sequences of `sequenceLength` tokens. `inferenceOnly`
    /// allocates only what forward passes without dropout need (no gradients, no buffers for backward
    /// or dropout, one set of attention buffers shared by the layers): `step` cannot run on it.
    public init(config: BertConfig, maxSequenceCount: Int, sequenceLength: Int, inferenceOnly: Bool = false) {
        precondition(maxSequenceCount > 0, "maxSequenceCount must be positive")
        precondition(
            sequenceLength > 0 && sequenceLength <= config.maxPositionEmbeddings,
            "sequence length \(sequenceLength) must be in 1...max_position_embeddings (\(config.maxPositionEmbeddings))")
        self.config = config
        self.table = ParameterTable(config: config)
        self.maxSequenceCount = maxSequenceCount
        self.sequenceLength = sequenceLength
        self.inferenceOnly = inferenceOnly
        activeLength = sequenceLength
        parameterOwner = nil
        parameters = .allocate(capacity: table.totalCount)
        parameters.initialize(repeating: 0)
        gradients = .allocate(capacity: inferenceOnly ? 0 : table.totalCount)
        gradients.initialize(repeating: 0)
        offsets = Offsets(table: table, config: config)
        let positions = maxSequenceCount * sequenceLength
        logitsChunkRows = min(positions, 640)
        activations = Activations(
            config: config, sequences: maxSequenceCount, length: sequenceLength, logitsRows: logitsChunkRows,
            training: !inferenceOnly)
    }

    /// Grows the activation buffers to hold `sequenceCount` sequences of `sequenceLength` tokens (no
    /// change when they already do). Inference on inputs of varying length sizes the buffers for the
    /// longest batch seen instead of the longest possible one.
    public func reserve(sequenceCount: Int, sequenceLength: Int) {
        precondition(sequenceCount > 0 && sequenceLength > 0, "sequence count and length must be positive")
        precondition(
            sequenceLength <= config.maxPositionEmbeddings,
            "sequence length \(sequenceLength) exceeds max_position_embeddings (\(config.maxPositionEmbeddings))")
        guard sequenceCount > maxSequenceCount || sequenceLength > self.sequenceLength else { return }
        maxSequenceCount = max(maxSequenceCount, sequenceCount)
        self.sequenceLength = max(self.sequenceLength, sequenceLength)
        activations = Activations(
            config: config, sequences: maxSequenceCount, length: self.sequenceLength, logitsRows: logitsChunkRows,
            training: !inferenceOnly)
    }

    /// Bytes of all activation and scratch buffers (allocated once in `init`), excluding parameters
    /// and gradients.
    public var activationByteCount: Int {
        activations.floatCount * MemoryLayout<Float>.stride + activations.indexCount * MemoryLayout<Int32>.stride
            + activations.dropoutRecord.count
    }

    /// An inference-only model that reads the parameters of `source` (no copy; `source` is kept alive
    /// and must not change them while this one runs), with buffers of its own: copies run batches on
    /// several threads at once for the memory of one set of parameters.
    public init(sharingParametersOf source: BertForPreTraining, maxSequenceCount: Int, sequenceLength: Int) {
        precondition(maxSequenceCount > 0, "maxSequenceCount must be positive")
        precondition(
            sequenceLength > 0 && sequenceLength <= source.config.maxPositionEmbeddings,
            "sequence length \(sequenceLength) must be in 1...max_position_embeddings (\(source.config.maxPositionEmbeddings))")
        config = source.config
        table = source.table
        self.maxSequenceCount = maxSequenceCount
        self.sequenceLength = sequenceLength
        inferenceOnly = true
        activeLength = sequenceLength
        parameters = source.parameters
        parameterOwner = source
        gradients = .allocate(capacity: 0)
        offsets = source.offsets
        logitsChunkRows = min(maxSequenceCount * sequenceLength, 640)
        activations = Activations(
            config: config, sequences: maxSequenceCount, length: sequenceLength, logitsRows: logitsChunkRows,
            training: false)
    }

    /// The model whose parameters this one reads (`init(sharingParametersOf:)`), else nil: it owns them.
    private let parameterOwner: BertForPreTraining?

    deinit {
        if parameterOwner == nil { parameters.deallocate() }
        gradients.deallocate()
    }

    // MARK: - Initialisation

    /// BERT's initialisation: weights and embeddings N(0, initializer_range), LayerNorm weight 1 and
    /// bias 0, all biases 0, the [PAD] word embedding row 0 (as Hugging Face does). Each entry draws
    /// from its own Philox stream keyed by (seed, entry index), so the result does not depend on
    /// threading, and initialising some entries (`only`, names) gives them the values a full
    /// initialisation would.
    public func initializeParameters(seed: UInt64, only names: Set<String>? = nil) {
        let std = config.initializerRange
        for (index, entry) in table.entries.enumerated() where names?.contains(entry.name) ?? true {
            let destination = parameters.baseAddress! + entry.offset
            if entry.name.hasSuffix(".bias") {
                destination.update(repeating: 0, count: entry.count)
            } else if entry.name.contains("LayerNorm") {
                destination.update(repeating: 1, count: entry.count)
            } else {
                let generator = Philox(seed: seed, UInt64(index))
                Parallel.forEachChunk(entry.count, minimumChunk: 65_536) { range in
                    for i in range {
                        // Box-Muller on two independent uniforms; 1 - u keeps the logarithm finite.
                        let u1 = 1 - generator.uniform(at: UInt64(2 * i))
                        let u2 = generator.uniform(at: UInt64(2 * i + 1))
                        destination[i] = std * (-2 * log(u1)).squareRoot() * cos(2 * Float.pi * u2)
                    }
                }
            }
        }
        if (0..<config.vocabSize).contains(config.padTokenID), names?.contains("bert.embeddings.word_embeddings.weight") ?? true {
            let C = config.hiddenSize
            (parameters.baseAddress! + offsets.wordEmbeddings + config.padTokenID * C).update(repeating: 0, count: C)
        }
    }

    /// Sets every gradient to zero (once per optimizer step; micro-batches then accumulate).
    public func zeroGradients() {
        gradients.update(repeating: 0)
    }

    // MARK: - Training step

    /// Forward and, when `computeGradients`, backward over one micro-batch, ADDING into `gradients`.
    ///
    /// Inputs are row-major (B, T) with B = `sequenceCount` <= `maxSequenceCount`; `maskedPositions`
    /// are flat positions b*T + t, `maskedLabels` their target ids, `nspLabels` (B) the NSP classes,
    /// `sampleIndices` (B) the global sample indices that key dropout. The MLM loss is the sum over
    /// masked tokens divided by `maskedTokenNormalizer`, the NSP loss the sum over sequences divided by
    /// `sequenceNormalizer` (global counts, so ranks and micro-batches add up to the global mean).
    /// Dropout applies only when `training`. `onGradientsReady` receives flat ranges of `gradients`
    /// that are final for this micro-batch: the pooler and heads, then layers L-1 ... 0, then the
    /// embeddings (the word embeddings are tied to the MLM decoder, so they finish last).
    @discardableResult
    public func step(
        inputIDs: [Int32], tokenTypeIDs: [Int32], attentionMask: [Int32],
        maskedPositions: [Int32], maskedLabels: [Int32], nspLabels: [Int32], sampleIndices: [Int],
        sequenceCount: Int, maskedTokenNormalizer: Float, sequenceNormalizer: Float,
        training: Bool, dropoutSeed: UInt64, dropoutStep: UInt64, computeGradients: Bool,
        onGradientsReady: ((Range<Int>) -> Void)? = nil
    ) -> StepResult {
        precondition(!inferenceOnly, "step needs a model built for training (inferenceOnly: false)")
        let B = sequenceCount, T = sequenceLength
        if let problem = inputProblem(
            inputIDs: inputIDs, tokenTypeIDs: tokenTypeIDs, attentionMask: attentionMask, sequenceCount: B, length: T)
        {
            preconditionFailure(problem)
        }
        activeLength = T
        precondition(maskedLabels.count == maskedPositions.count, "one masked label per masked position")
        precondition(maskedPositions.count <= B * T, "more masked positions than tokens")
        precondition(maskedPositions.allSatisfy { $0 >= 0 && Int($0) < B * T }, "masked position outside 0..<B*T")
        precondition(maskedLabels.allSatisfy { $0 >= 0 && Int($0) < config.vocabSize }, "masked label outside the vocabulary")
        if config.nspClassCount > 0 {
            precondition(nspLabels.count == B, "nspLabels must have one label per sequence")
            precondition(nspLabels.allSatisfy { $0 >= 0 && Int($0) < config.nspClassCount }, "NSP label outside 0..<\(config.nspClassCount)")
        }
        precondition(!training || sampleIndices.count == B, "sampleIndices must have one index per sequence")
        let dropoutKeys = sampleIndices.isEmpty ? Array(repeating: 0, count: B) : sampleIndices
        return dropoutKeys.withUnsafeBufferPointer { samples in
            var dropout = DropoutSettings(
                enabled: training, seed: dropoutSeed, step: dropoutStep, sampleIndices: samples.baseAddress!,
                hidden: config.hiddenDropoutProbability, attention: config.attentionDropoutProbability,
                heads: config.attentionHeadCount, length: T)
            if computeGradients { dropout.record = activations.dropoutRecord }
            lastLayerRows = !computesLastLayerAtLossRowsOnly ? nil : maskedPositions.withUnsafeBufferPointer {
                activations.keepRows(
                    maskedPositions: $0.baseAddress, count: $0.count, sequences: B, length: T,
                    heads: config.attentionHeadCount)
            }
            return inputIDs.withUnsafeBufferPointer { ids in
                tokenTypeIDs.withUnsafeBufferPointer { types in
                    attentionMask.withUnsafeBufferPointer { mask in
                        encoderForward(ids.baseAddress!, types.baseAddress!, mask.baseAddress!, B, dropout)
                        var result = StepResult()
                        maskedPositions.withUnsafeBufferPointer { positions in
                            maskedLabels.withUnsafeBufferPointer { labels in
                                nspLabels.withUnsafeBufferPointer { nsp in
                                    result = headsForwardBackward(
                                        lastLayerRows?.maskedRows ?? positions.baseAddress, labels.baseAddress, maskedPositions.count,
                                        nsp.baseAddress, B, maskedTokenNormalizer, sequenceNormalizer,
                                        computeGradients)
                                    if computeGradients {
                                        onGradientsReady?(table.headRange)
                                        encoderBackward(
                                            ids.baseAddress!, types.baseAddress!, B, dropout.replaying,
                                            onGradientsReady)
                                    }
                                }
                            }
                        }
                        return result
                    }
                }
            }
        }
    }

    /// Why these inputs cannot be run, or nil.
    func inputProblem(
        inputIDs: [Int32], tokenTypeIDs: [Int32], attentionMask: [Int32], sequenceCount B: Int, length T: Int
    ) -> String? {
        if B < 1 || B > maxSequenceCount {
            return "sequence count \(B) must be in 1...\(maxSequenceCount) (the model was built for at most \(maxSequenceCount))"
        }
        if T < 1 || T > sequenceLength {
            return "sequence length \(T) must be in 1...\(sequenceLength) (the model was built for at most \(sequenceLength))"
        }
        if inputIDs.count != B * T || tokenTypeIDs.count != B * T || attentionMask.count != B * T {
            return "input ids, token type ids and attention mask must each hold \(B) x \(T) values "
                + "(got \(inputIDs.count), \(tokenTypeIDs.count), \(attentionMask.count))"
        }
        if let bad = inputIDs.first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
            return "token id \(bad) is outside the vocabulary of \(config.vocabSize) tokens (vocab_size in config.json)"
        }
        if let bad = tokenTypeIDs.first(where: { $0 < 0 || Int($0) >= config.typeVocabSize }) {
            return "token type id \(bad) is outside 0..<\(config.typeVocabSize) (type_vocab_size in config.json)"
        }
        return nil
    }

    // MARK: - Inference

    /// Runs the encoder without dropout and returns the last hidden state, [B, T, C]. The inputs are
    /// (B, T) row-major with B <= maxSequenceCount and T (default `sequenceLength`) <= sequenceLength.
    /// `mlmLogits(at:)` and `nspLogits()` then read the result of this call.
    public func hiddenStates(
        inputIDs: [Int32], tokenTypeIDs: [Int32], attentionMask: [Int32], sequenceCount B: Int,
        sequenceLength T: Int? = nil
    ) throws -> [Float] {
        let T = T ?? sequenceLength
        if let problem = inputProblem(
            inputIDs: inputIDs, tokenTypeIDs: tokenTypeIDs, attentionMask: attentionMask, sequenceCount: B, length: T)
        {
            throw BertInputError.invalid(problem)
        }
        let dropout = DropoutSettings.disabled(heads: config.attentionHeadCount, length: T)
        lastLayerRows = nil
        activeLength = T
        inputIDs.withUnsafeBufferPointer { ids in
            tokenTypeIDs.withUnsafeBufferPointer { types in
                attentionMask.withUnsafeBufferPointer { mask in
                    encoderForward(ids.baseAddress!, types.baseAddress!, mask.baseAddress!, B, dropout)
                }
            }
        }
        return hiddenStates(layer: config.hiddenLayerCount)
    }

    /// Hidden states after layer `layer` of the most recent forward pass, [B, T, C]: layer 0 is the
    /// embeddings output, layer L the last encoder layer (Hugging Face's `hidden_states[layer]`).
    public func hiddenStates(layer: Int) -> [Float] {
        precondition((0...config.hiddenLayerCount).contains(layer), "layer must be in 0...\(config.hiddenLayerCount)")
        precondition(
            layer < config.hiddenLayerCount || lastLayerRows == nil,
            "step computes the last layer at the loss rows only: run hiddenStates(inputIDs:...) for all of them")
        let count = lastSequenceCount * activeLength * config.hiddenSize
        return Array(UnsafeBufferPointer(start: layerOutput(layer), count: count))
    }

    /// MLM logits of the most recent forward pass at flat positions b*T + t, [P, V].
    public func mlmLogits(at positions: [Int32]) throws -> [Float] {
        let N = lastSequenceCount * activeLength, C = config.hiddenSize, V = config.vocabSize
        if let bad = positions.first(where: { $0 < 0 || Int($0) >= N }) {
            throw BertInputError.invalid("position \(bad) is outside the \(N) token positions of the last forward pass")
        }
        precondition(
            lastLayerRows == nil,
            "step computes the last layer at the loss rows only: run hiddenStates(inputIDs:...) first")
        let P = positions.count
        var logits = [Float](repeating: 0, count: P * V)
        let a = activations
        positions.withUnsafeBufferPointer { positions in
            logits.withUnsafeMutableBufferPointer { logits in
                var start = 0
                while start < P {
                    let rows = min(logitsChunkRows, P - start)
                    mlmTransformForward(positions.baseAddress! + start, rows)
                    linearForward(
                        logits.baseAddress! + start * V, a.transformOut, param(offsets.wordEmbeddings),
                        param(offsets.mlmBias), rows: rows, inputSize: C, outputSize: V)
                    start += rows
                }
            }
        }
        return logits
    }

    /// NSP logits of the most recent forward pass, [B, K] (empty without an NSP head).
    public func nspLogits() -> [Float] {
        guard config.nspClassCount > 0 else { return [] }
        poolerForward(lastSequenceCount)
        let B = lastSequenceCount, C = config.hiddenSize, K = config.nspClassCount
        linearForward(
            activations.nspLogits, activations.pooled, param(offsets.nspWeight), param(offsets.nspBias),
            rows: B, inputSize: C, outputSize: K)
        return Array(UnsafeBufferPointer(start: activations.nspLogits, count: B * K))
    }

    /// Pooler output (tanh of the dense layer on [CLS]) of the most recent forward pass, [B, C].
    public func pooledOutput() -> [Float] {
        poolerForward(lastSequenceCount)
        return Array(UnsafeBufferPointer(start: activations.pooled, count: lastSequenceCount * config.hiddenSize))
    }

    // MARK: - Views

    @inline(__always)
    func param(_ offset: Int) -> UnsafeMutablePointer<Float> { parameters.baseAddress! + offset }

    @inline(__always)
    func grad(_ offset: Int) -> UnsafeMutablePointer<Float> { gradients.baseAddress! + offset }

    /// Output of layer `layer` (0 = embeddings), (N, C).
    func layerOutput(_ layer: Int) -> UnsafeMutablePointer<Float> {
        layer == 0 ? activations.embeddingOut : activations.layers[layer - 1].output
    }
}
