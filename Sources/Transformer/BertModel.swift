import Foundation
import Kernels

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

/// The BERT encoder (embeddings, encoder layers and, for the heads that have one, the pooler), forward
/// and backward on flat Float buffers; the heads are subclasses (`BertForPreTraining`,
/// `BertForSequenceClassification`, ...), as in transformers.
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
public class BertModel {
    public let config: BertConfig
    public let table: ParameterTable
    /// Sequences and tokens per sequence the activation buffers hold (`reserve` grows them).
    public private(set) var maxSequenceCount: Int
    public private(set) var sequenceLength: Int
    /// Built by `init(..., inferenceOnly: true)`: buffers for forward passes without dropout only.
    public let inferenceOnly: Bool
    /// Flat parameters, laid out by `table`.
    public var parameters: UnsafeMutableBufferPointer<Float>
    /// Flat gradients of the trainable parameters (`table.trainableRange`, all of them without LoRA),
    /// laid out like that part of `parameters`; backward adds into them.
    public var gradients: UnsafeMutableBufferPointer<Float>
    /// Debug mode: called after each forward op with the op's name, its encoder layer (nil outside
    /// the layers) and its output, to find the first op that produces NaN/Inf and to time the ops.
    public var forwardProbe: ((_ op: String, _ layer: Int?, _ output: UnsafeBufferPointer<Float>) -> Void)?

    /// When set, `step` adds each op's wall-clock time to its class (the benchmark's breakdown).
    public var profile: OpProfile?

    /// The pre-training step computes the last encoder layer only at the rows its losses read (`KeptRows`): the same
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
    /// P-tuning's or a projected prefix's encoder, which computes the prompt table each forward pass.
    let promptEncoder: PromptEncoderNetwork?
    /// Masked positions processed per MLM decoder GEMM: bounds the (rows, V) logits buffer. Each
    /// chunk streams the (V, C) decoder weight and its gradient through memory three times, so one
    /// chunk covers a batch of 32 sequences x 20 predictions (a 78 MB logits buffer at V = 30522).
    let logitsChunkRows: Int
    /// Sequences in the most recent forward pass (for the inference accessors).
    var lastSequenceCount = 0
    /// T of the running (or most recent) forward pass: `sequenceLength` in `step`; inference may run
    /// shorter sequences in the same buffers.
    var activeLength: Int

    /// The head a subclass implements, which its configs must name; nil: any (the encoder alone,
    /// or a class that sets the head itself).
    public class var implementedHead: ModelHead? { nil }

    /// A model for at most `maxSequenceCount` sequences of `sequenceLength` tokens. `inferenceOnly`
    /// allocates only what forward passes without dropout need (no gradients, no buffers for backward
    /// or dropout, one set of attention buffers shared by the layers): `step` cannot run on it.
    /// `sequenceLength` counts the text's tokens: prompt tuning's virtual tokens come on top (and
    /// prefix tuning's prefix takes positions in front of them).
    public required init(config: BertConfig, maxSequenceCount: Int, sequenceLength: Int, inferenceOnly: Bool = false) {
        if let head = Self.implementedHead {
            precondition(config.head == head, "\(Self.self) needs a config with its head; the config's head is \(config.head.className)")
        }
        let sequenceLength = sequenceLength + config.virtualTokenCount
        precondition(maxSequenceCount > 0, "maxSequenceCount must be positive")
        precondition(
            sequenceLength > 0 && sequenceLength + config.keyPrefixLength <= config.maxPositionEmbeddings,
            "sequence length \(sequenceLength) must be in 1...max_position_embeddings (\(config.maxPositionEmbeddings))")
        self.config = config
        self.table = ParameterTable(config: config)
        self.maxSequenceCount = maxSequenceCount
        self.sequenceLength = sequenceLength
        self.inferenceOnly = inferenceOnly
        activeLength = sequenceLength
        parameterOwner = nil
        parameters = .allocateAligned(capacity: table.totalCount)
        parameters.initialize(repeating: 0)
        gradients = .allocate(capacity: inferenceOnly ? 0 : table.trainableCount)
        gradients.initialize(repeating: 0)
        offsets = Offsets(table: table, config: config)
        promptEncoder = Self.makePromptEncoder(config: config, table: table)
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
        let sequenceLength = sequenceLength + config.virtualTokenCount
        precondition(
            sequenceLength + config.keyPrefixLength <= config.maxPositionEmbeddings,
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
    public init(sharingParametersOf source: BertModel, maxSequenceCount: Int, sequenceLength: Int) {
        let sequenceLength = sequenceLength + source.config.virtualTokenCount
        precondition(maxSequenceCount > 0, "maxSequenceCount must be positive")
        precondition(
            sequenceLength > 0 && sequenceLength + source.config.keyPrefixLength <= source.config.maxPositionEmbeddings,
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
        promptEncoder = Self.makePromptEncoder(config: config, table: table)
        logitsChunkRows = min(maxSequenceCount * sequenceLength, 640)
        activations = Activations(
            config: config, sequences: maxSequenceCount, length: sequenceLength, logitsRows: logitsChunkRows,
            training: false)
    }

    /// The model whose parameters this one reads (`init(sharingParametersOf:)`), else nil: it owns them.
    private let parameterOwner: BertModel?

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
            if entry.name == PromptTuningSettings.entryName {
                // torch.nn.Embedding's N(0, 1), as peft's random init leaves it; SAMPLE_VOCAB copies
                // word embedding rows once those are loaded (`initializePrompt`).
                Self.fillNormal(destination, count: entry.count, std: 1, Philox(seed: seed, UInt64(index)))
            } else if entry.name.hasSuffix(".lora_B.weight") {
                // peft's default: B = 0, so the adapted model starts exactly at the base model.
                destination.update(repeating: 0, count: entry.count)
            } else if entry.name.hasSuffix(".lora_A.weight") {
                // peft's default: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)).
                Self.fillUniform(destination, count: entry.count, bound: 1 / Float(entry.shape[1]).squareRoot(), Philox(seed: seed, UInt64(index)))
            } else if PromptEncoderSettings.isEncoderEntry(entry.name) {
                // torch's defaults, which peft keeps: the rows N(0, 1) (nn.Embedding), each Linear's weight
                // and bias U(-1/sqrt(in), 1/sqrt(in)).
                let generator = Philox(seed: seed, UInt64(index))
                guard entry.shape.count == 1 || !entry.name.hasSuffix("embedding.weight") else {
                    Self.fillNormal(destination, count: entry.count, std: 1, generator)
                    continue
                }
                if let encoder = config.promptEncoder, entry.name.contains(".lstm_head.") {
                    // torch.nn.LSTM: every weight and bias U(-1/sqrt(H), 1/sqrt(H)).
                    Self.fillUniform(destination, count: entry.count, bound: 1 / Float(encoder.hiddenSize).squareRoot(), generator)
                    continue
                }
                let weight = entry.name.hasSuffix(".bias") ? String(entry.name.dropLast(4)) + "weight" : entry.name
                let inputs = table.entry(named: weight)!.shape[1]
                Self.fillUniform(destination, count: entry.count, bound: 1 / Float(inputs).squareRoot(), generator)
            } else if entry.name.hasSuffix(".bias") {
                destination.update(repeating: 0, count: entry.count)
            } else if entry.name.contains("LayerNorm") {
                destination.update(repeating: 1, count: entry.count)
            } else {
                Self.fillNormal(destination, count: entry.count, std: std, Philox(seed: seed, UInt64(index)))
            }
        }
        if (0..<config.vocabSize).contains(config.padTokenID), names?.contains("bert.embeddings.word_embeddings.weight") ?? true {
            let C = config.hiddenSize
            (parameters.baseAddress! + offsets.wordEmbeddings + config.padTokenID * C).update(repeating: 0, count: C)
        }
    }

    /// U(-bound, bound) values, element i from the generator's element i.
    static func fillUniform(_ destination: UnsafeMutablePointer<Float>, count: Int, bound: Float, _ generator: Philox) {
        for i in 0..<count { destination[i] = bound * (2 * generator.uniform(at: UInt64(i)) - 1) }
    }

    /// N(0, std^2) values, element i from the generator's elements 2i and 2i + 1 (independent of threading).
    static func fillNormal(_ destination: UnsafeMutablePointer<Float>, count: Int, std: Float, _ generator: Philox) {
        Parallel.forEachChunk(count, minimumChunk: 65_536) { range in
            for i in range {
                // Box-Muller on two independent uniforms; 1 - u keeps the logarithm finite.
                let u1 = 1 - generator.uniform(at: UInt64(2 * i))
                let u2 = generator.uniform(at: UInt64(2 * i + 1))
                destination[i] = std * (-2 * log(u1)).squareRoot() * cos(2 * Float.pi * u2)
            }
        }
    }

    /// Prompt tuning's SAMPLE_VOCAB start: each virtual token a copy of the word embedding of a token id
    /// drawn uniformly from the vocabulary (after the word embeddings are loaded).
    func initializePromptFromVocabulary(seed: UInt64) {
        guard let prompt = config.prompt, prompt.initialization == .sampleVocabulary, offsets.promptTable >= 0 else { return }
        let C = config.hiddenSize, V = config.vocabSize
        let generator = Philox(seed: seed, UInt64(table.entries.count))
        for k in 0..<prompt.virtualTokenCount {
            let id = min(V - 1, Int(generator.uniform(at: UInt64(k)) * Float(V)))
            param(offsets.promptTable + k * C).update(from: param(offsets.wordEmbeddings + id * C), count: C)
        }
    }

    static func makePromptEncoder(config: BertConfig, table: ParameterTable) -> PromptEncoderNetwork? {
        guard let encoder = config.promptEncoder else { return nil }
        let (rows, width) = config.prefix.map { ($0.virtualTokenCount, PrefixTuningSettings.rowWidth(config)) }
            ?? (config.virtualTokenCount, config.hiddenSize)
        return PromptEncoderNetwork(settings: encoder, config: config, table: table, rows: rows, outputWidth: width)
    }

    /// The prompt or prefix table: the trained parameter, or the prompt encoder's output of this pass.
    func promptTable() -> UnsafeMutablePointer<Float>? {
        if let promptEncoder { return promptEncoder.table }
        return offsets.promptTable < 0 ? nil : param(offsets.promptTable)
    }

    /// Where backward adds d(prompt table): the table's gradient, or the prompt encoder's buffer for it.
    func promptTableGradient() -> UnsafeMutablePointer<Float>? {
        if let promptEncoder { return promptEncoder.tableGradient }
        return offsets.promptTable < 0 ? nil : grad(offsets.promptTable)
    }

    /// Sets every gradient to zero (once per optimizer step; micro-batches then accumulate).
    public func zeroGradients() {
        gradients.update(repeating: 0)
    }

    /// Why these inputs cannot be run, or nil.
    func inputProblem(
        inputIDs: [Int32], tokenTypeIDs: [Int32], attentionMask: [Int32], sequenceCount B: Int, length T: Int
    ) -> String? {
        if B < 1 || B > maxSequenceCount {
            return "sequence count \(B) must be in 1...\(maxSequenceCount) (the model was built for at most \(maxSequenceCount))"
        }
        let longest = sequenceLength - config.virtualTokenCount
        if T < 1 || T > longest {
            return "sequence length \(T) must be in 1...\(longest) (the model was built for at most \(longest))"
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

    /// Pooler output (tanh of the dense layer on [CLS]) of the most recent forward pass, [B, C].
    public func pooledOutput() -> [Float] {
        poolerForward(lastSequenceCount)
        return Array(UnsafeBufferPointer(start: activations.pooled, count: lastSequenceCount * config.hiddenSize))
    }

    // MARK: - Views

    @inline(__always)
    func param(_ offset: Int) -> UnsafeMutablePointer<Float> { parameters.baseAddress! + offset }

    /// The gradient of the parameter at `offset`, nil when it is frozen (backward then skips the work
    /// only that gradient needs).
    @inline(__always)
    func grad(_ offset: Int) -> UnsafeMutablePointer<Float>? {
        let start = table.trainableRange.lowerBound
        return offset >= start ? gradients.baseAddress! + (offset - start) : nil
    }

    /// Output of layer `layer` (0 = embeddings), (N, C).
    func layerOutput(_ layer: Int) -> UnsafeMutablePointer<Float> {
        layer == 0 ? activations.embeddingOut : activations.layers[layer - 1].output
    }
}
