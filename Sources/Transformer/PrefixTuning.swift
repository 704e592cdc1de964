/// Prefix tuning (P-tuning v2) as Hugging Face peft's `PrefixTuningConfig` defines it for BERT: every
/// layer's self-attention sees `n` learned keys and values in front of the sequence's own.
///
/// peft keeps them in one (n, 2 L C) table, `prompt_embeddings`: row v holds, for each layer l, the key
/// of virtual token v at columns 2lC ..< (2l+1)C and its value at (2l+1)C ..< (2l+2)C, heads side by
/// side. transformers runs the prefix as a key/value cache of length n: the text's tokens take
/// positions n ..< n + T, the prefix is attended by every query (peft extends the attention mask with
/// ones), and no output row belongs to it, so every head works unchanged.
public struct PrefixTuningSettings: Sendable, Equatable {
    public var virtualTokenCount: Int
    /// Modules trained in full beside the prefix; nil: the task head's output layer.
    public var modulesToSave: [String]?
    /// `prefix_projection`: the prefix is the output of this encoder (kind `.projection`) during training.
    public var encoder: PromptEncoderSettings?

    public init(virtualTokenCount: Int, modulesToSave: [String]? = nil, encoder: PromptEncoderSettings? = nil) {
        self.virtualTokenCount = virtualTokenCount
        self.modulesToSave = modulesToSave
        self.encoder = encoder
    }

    /// Columns of one virtual token's row: a key and a value for each layer.
    static func rowWidth(_ config: BertConfig) -> Int { 2 * config.hiddenLayerCount * config.hiddenSize }

    /// Checks the settings against the model.
    public func check(_ config: BertConfig, sequenceLength: Int? = nil) throws {
        func fail(_ key: String, _ message: String) -> LoraSettingsError { LoraSettingsError(key: key, message: message) }
        guard virtualTokenCount >= 1 else {
            throw fail("num_virtual_tokens", "is \(virtualTokenCount); prefix tuning needs at least 1 virtual token")
        }
        try encoder?.check(config)
        if let T = sequenceLength, T + virtualTokenCount > config.maxPositionEmbeddings {
            throw fail("num_virtual_tokens", "is \(virtualTokenCount); with sequences of \(T) tokens that is more than the "
                + "model's \(config.maxPositionEmbeddings) positions (the text's positions start after the prefix)")
        }
    }
}
