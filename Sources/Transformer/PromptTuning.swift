/// Prompt tuning as Hugging Face peft's `PromptTuningConfig` defines it for BERT: `n` learned vectors
/// (`prompt_embeddings`, (n, C)) stand in front of every sequence's word embeddings. As peft runs it,
/// the virtual tokens take positions 0 ..< n (the text's tokens n ..< n + T), token type 0 and
/// attention mask 1; they go through the embeddings' position and type sums and LayerNorm like words;
/// and the pooler reads position 0, the first virtual token. Only sequence classification is
/// supported: the other heads read per-token outputs that the virtual tokens would shift.
public struct PromptTuningSettings: Sendable, Equatable {
    /// peft's `prompt_tuning_init`.
    public enum Initialization: String, Sendable, CaseIterable {
        /// N(0, 1), as torch.nn.Embedding initialises.
        case random = "RANDOM"
        /// Rows of the word embeddings at token ids drawn uniformly from the vocabulary.
        case sampleVocabulary = "SAMPLE_VOCAB"
    }

    public var virtualTokenCount: Int
    public var initialization: Initialization
    /// Modules trained in full beside the prompt; nil: the classifier.
    public var modulesToSave: [String]?
    /// P-tuning: the prompt is the output of this encoder (kind `.mlp`) during training.
    public var encoder: PromptEncoderSettings?

    public init(
        virtualTokenCount: Int, initialization: Initialization = .random, modulesToSave: [String]? = nil,
        encoder: PromptEncoderSettings? = nil
    ) {
        self.virtualTokenCount = virtualTokenCount
        self.initialization = initialization
        self.modulesToSave = modulesToSave
        self.encoder = encoder
    }

    static let entryName = "prompt_embeddings"

    /// Checks the settings against the model.
    public func check(_ config: BertConfig, sequenceLength: Int? = nil) throws {
        func fail(_ key: String, _ message: String) -> LoraSettingsError { LoraSettingsError(key: key, message: message) }
        guard virtualTokenCount >= 1 else {
            throw fail("num_virtual_tokens", "is \(virtualTokenCount); prompt tuning needs at least 1 virtual token")
        }
        if let T = sequenceLength, T + virtualTokenCount > config.maxPositionEmbeddings {
            throw fail("num_virtual_tokens", "is \(virtualTokenCount); with sequences of \(T) tokens that is more than the "
                + "model's \(config.maxPositionEmbeddings) positions (the virtual tokens take positions too)")
        }
        try encoder?.check(config)
        guard config.head == .sequenceClassification || config.head == .preTraining else {
            throw fail("method", "prompt_tuning supports sequence classification only (the virtual tokens would shift "
                + "the per-token outputs of \(config.head.className))")
        }
    }
}

extension EncoderInputs {
    /// The inputs with `count` virtual tokens in front of every sequence: ids -1 ... -count (the rows
    /// of the prompt table), token type 0, attention mask 1.
    func prependingVirtualTokens(_ count: Int) -> EncoderInputs {
        let T = sequenceLength, total = count + T
        var ids: [Int32] = [], types: [Int32] = [], mask: [Int32] = []
        ids.reserveCapacity(sequenceCount * total)
        types.reserveCapacity(sequenceCount * total)
        mask.reserveCapacity(sequenceCount * total)
        for b in 0..<sequenceCount {
            ids += (0..<count).map { -1 - Int32($0) } + inputIDs[(b * T)..<((b + 1) * T)]
            types += Array(repeating: 0, count: count) + tokenTypeIDs[(b * T)..<((b + 1) * T)]
            mask += Array(repeating: 1, count: count) + attentionMask[(b * T)..<((b + 1) * T)]
        }
        return EncoderInputs(
            inputIDs: ids, tokenTypeIDs: types, attentionMask: mask, sequenceCount: sequenceCount, sequenceLength: total,
            sampleIndices: sampleIndices)
    }
}
