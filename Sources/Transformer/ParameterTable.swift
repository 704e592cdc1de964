/// The one table that lays out every parameter of a BERT model and its head (`BertConfig.head`) in a
/// flat buffer.
///
/// Names and shapes are Hugging Face `BertForPreTraining` state-dict names (linear weights are
/// `[out, in]`), so a checkpoint is a Hugging Face model without transposes. Parameters,
/// gradients and optimizer moments all use this layout. Order: embeddings, layers 0 ..< L, pooler
/// (for the heads that have one), head, so backward finishes contiguous ranges from the end of the buffer towards the start.
///
/// Inside a layer the query, key and value weights are adjacent (then their three biases), so the
/// three projections are one GEMM with a (3C, C) weight and a (3C) bias. The MLM decoder weight is
/// the word embedding table (tied) and has no entry; HF's `cls.predictions.decoder.bias` is
/// `cls.predictions.bias`.
public struct ParameterTable: Sendable {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        /// Index of the first element in the flat buffer.
        public let offset: Int
        public var count: Int
        /// Whether weight decay applies (not to LayerNorm weights and biases, as in BERT).
        public let decays: Bool

        public var range: Range<Int> { offset..<(offset + count) }
    }

    public let entries: [Entry]
    public let totalCount: Int
    /// Flat range of each encoder layer's parameters.
    public let layerRanges: [Range<Int>]
    /// Flat range of the embedding parameters (the start of the buffer).
    public let embeddingRange: Range<Int>
    /// Flat range of the pooler and the head (the end of the buffer).
    public let headRange: Range<Int>
    private let indexByName: [String: Int]

    public init(config: BertConfig) {
        let C = config.hiddenSize, I = config.intermediateSize, V = config.vocabSize
        var entries: [Entry] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int], decays: Bool) {
            let count = shape.reduce(1, *)
            entries.append(Entry(name: name, shape: shape, offset: offset, count: count, decays: decays))
            offset += count
        }
        func linear(_ prefix: String, out: Int, in inputs: Int) {
            add(prefix + ".weight", [out, inputs], decays: true)
            add(prefix + ".bias", [out], decays: false)
        }
        func layerNorm(_ prefix: String) {
            add(prefix + ".weight", [C], decays: false)
            add(prefix + ".bias", [C], decays: false)
        }
        add("bert.embeddings.word_embeddings.weight", [V, C], decays: true)
        add("bert.embeddings.position_embeddings.weight", [config.maxPositionEmbeddings, C], decays: true)
        add("bert.embeddings.token_type_embeddings.weight", [config.typeVocabSize, C], decays: true)
        layerNorm("bert.embeddings.LayerNorm")
        let embeddingEnd = offset
        var layerRanges: [Range<Int>] = []
        for layer in 0..<config.hiddenLayerCount {
            let start = offset
            let prefix = "bert.encoder.layer.\(layer)."
            for projection in ["query", "key", "value"] {
                add(prefix + "attention.self.\(projection).weight", [C, C], decays: true)
            }
            for projection in ["query", "key", "value"] {
                add(prefix + "attention.self.\(projection).bias", [C], decays: false)
            }
            linear(prefix + "attention.output.dense", out: C, in: C)
            layerNorm(prefix + "attention.output.LayerNorm")
            linear(prefix + "intermediate.dense", out: I, in: C)
            linear(prefix + "output.dense", out: C, in: I)
            layerNorm(prefix + "output.LayerNorm")
            layerRanges.append(start..<offset)
        }
        let headStart = offset
        if config.head.hasPooler { linear("bert.pooler.dense", out: C, in: C) }
        switch config.head {
        case .preTraining:
            add("cls.predictions.bias", [V], decays: false)
            linear("cls.predictions.transform.dense", out: C, in: C)
            layerNorm("cls.predictions.transform.LayerNorm")
            if config.nspClassCount > 0 {
                linear("cls.seq_relationship", out: config.nspClassCount, in: C)
            }
        case .sequenceClassification, .tokenClassification, .multipleChoice:
            linear("classifier", out: config.headOutputCount, in: C)
        case .questionAnswering:
            linear("qa_outputs", out: config.headOutputCount, in: C)
        }
        self.entries = entries
        self.totalCount = offset
        self.layerRanges = layerRanges
        self.embeddingRange = 0..<embeddingEnd
        self.headRange = headStart..<offset
        var index: [String: Int] = [:]
        for (i, entry) in entries.enumerated() { index[entry.name] = i }
        self.indexByName = index
    }

    public func entry(named name: String) -> Entry? {
        indexByName[name].map { entries[$0] }
    }

    /// The entry for a name that the model itself builds; a missing one is a programming error.
    func offset(of name: String) -> Int {
        guard let entry = entry(named: name) else { preconditionFailure("no parameter named \(name)") }
        return entry.offset
    }
}
