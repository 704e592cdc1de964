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
///
/// With LoRA (`BertConfig.lora`) each adapted projection's `lora_A.weight` and `lora_B.weight` follow
/// its layer's tensors; prompt tuning's and prefix tuning's `prompt_embeddings` follow the embeddings. With any, only
/// some entries train: the frozen ones come first (in the order above)
/// and the trainable ones last, so gradients, optimizer moments, the all-reduce, clipping and the
/// non-finite check cover the suffix `trainableRange` alone. Without LoRA every entry trains and
/// the suffix is the whole buffer.
public struct ParameterTable: Sendable {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        /// Index of the first element in the flat buffer.
        public let offset: Int
        public var count: Int
        /// Whether weight decay applies (not to LayerNorm weights and biases, as in BERT).
        public let decays: Bool
        /// Whether it trains (has a gradient and optimizer moments).
        public var trainable = true
        /// The part of the model it belongs to: -1 the embeddings, l encoder layer l, L the pooler and head.
        let part: Int

        public var range: Range<Int> { offset..<(offset + count) }
    }

    public let entries: [Entry]
    public let totalCount: Int
    /// The trainable entries' elements, the end of the buffer; the gradient buffer holds these alone,
    /// gradient element i belonging to parameter element `trainableRange.lowerBound + i`.
    public let trainableRange: Range<Int>
    /// Range of each encoder layer's trainable parameters in the gradient buffer (possibly empty).
    public let layerRanges: [Range<Int>]
    /// Range of the trainable embedding parameters in the gradient buffer (the start).
    public let embeddingRange: Range<Int>
    /// Range of the trainable pooler and head parameters in the gradient buffer (the end).
    public let headRange: Range<Int>
    /// The LoRA-adapted modules of each encoder layer (empty without LoRA).
    public let adaptedModules: [[LoraModule]]
    private let indexByName: [String: Int]

    /// The table of `config`; its adapter settings must have been checked (`LoraSettings.adaptedModules`,
    /// `PromptTuningSettings.check`).
    public init(config: BertConfig) {
        let C = config.hiddenSize, I = config.intermediateSize, V = config.vocabSize
        let lora = config.lora
        var entries: [Entry] = []
        var offset = 0
        var part = -1
        func add(_ name: String, _ shape: [Int], decays: Bool) {
            let count = shape.reduce(1, *)
            entries.append(Entry(name: name, shape: shape, offset: offset, count: count, decays: decays, part: part))
            offset += count
        }
        let adaptedModules: [[LoraModule]]
        do {
            adaptedModules = try lora?.adaptedModules(config) ?? Array(repeating: [], count: config.hiddenLayerCount)
        } catch {
            preconditionFailure("unchecked LoRA settings: \(error)")
        }
        func linear(_ prefix: String, out: Int, in inputs: Int) {
            add(prefix + ".weight", [out, inputs], decays: true)
            add(prefix + ".bias", [out], decays: false)
        }
        func layerNorm(_ prefix: String) {
            add(prefix + ".weight", [C], decays: false)
            add(prefix + ".bias", [C], decays: false)
        }
        /// The prompt methods' (n, width) table, or the encoder that computes it.
        func addPromptTable(_ n: Int, width: Int) {
            guard let encoder = config.promptEncoder else {
                add(PromptTuningSettings.entryName, [n, width], decays: true)
                return
            }
            add(PromptEncoderSettings.namePrefix + "embedding.weight", [n, C], decays: true)
            for entry in encoder.recurrentEntries(config) {
                add(entry.name, entry.shape, decays: entry.shape.count > 1)
            }
            for layer in encoder.layers(config, outputWidth: width) {
                linear(layer.name, out: layer.outputs, in: layer.inputs)
            }
        }
        add("bert.embeddings.word_embeddings.weight", [V, C], decays: true)
        add("bert.embeddings.position_embeddings.weight", [config.maxPositionEmbeddings, C], decays: true)
        add("bert.embeddings.token_type_embeddings.weight", [config.typeVocabSize, C], decays: true)
        layerNorm("bert.embeddings.LayerNorm")
        if let prompt = config.prompt {
            addPromptTable(prompt.virtualTokenCount, width: C)
        }
        if let prefix = config.prefix {
            // Counted with layer 0: its gradient is complete once layer 0's attention is done.
            part = 0
            addPromptTable(prefix.virtualTokenCount, width: PrefixTuningSettings.rowWidth(config))
        }
        for layer in 0..<config.hiddenLayerCount {
            part = layer
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
            for module in adaptedModules[layer] {
                let (inputs, outputs) = module.shape(config)
                let names = LoraSettings.entryNames(layer: layer, module: module)
                add(names.a, [lora!.rank, inputs], decays: true)
                add(names.b, [outputs, lora!.rank], decays: true)
            }
        }
        part = config.hiddenLayerCount
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
        if let lora {
            entries = Self.frozenFirst(
                entries, trainable: Self.trainableNames(entries.map(\.name), bias: lora.bias, saved: lora.savedModules(head: config.head)))
        } else if config.hasPromptLearning {
            let saved = config.prompt?.modulesToSave ?? config.prefix?.modulesToSave ?? Self.headOutputModules(config.head)
            entries = Self.frozenFirst(entries, trainable: Self.trainableNames(entries.map(\.name), bias: .none, saved: saved))
        }
        self.init(laidOut: entries, layerCount: config.hiddenLayerCount, adaptedModules: adaptedModules)
    }

    /// A table of `entries` already laid out (offsets contiguous from 0, frozen ones first); parts
    /// -1 (embeddings), 0 ..< `layerCount` (layers) and `layerCount` (the rest) give the gradient
    /// ranges backward reports.
    init(laidOut entries: [Entry], layerCount: Int, adaptedModules: [[LoraModule]]) {
        let total = entries.last.map { $0.range.upperBound } ?? 0
        let trainableStart = entries.first(where: \.trainable)?.offset ?? total
        // Each part's trainable entries are contiguous (they keep the model's order), in the gradient buffer.
        func gradientRange(part: Int) -> Range<Int> {
            let mine = entries.filter { $0.trainable && $0.part <= part }
            let before = entries.filter { $0.trainable && $0.part < part }
            func end(_ list: [Entry]) -> Int { list.last.map { $0.range.upperBound - trainableStart } ?? 0 }
            return end(before)..<end(mine)
        }
        self.entries = entries
        self.totalCount = total
        self.trainableRange = trainableStart..<total
        self.layerRanges = (0..<layerCount).map(gradientRange(part:))
        self.embeddingRange = gradientRange(part: -1)
        self.headRange = gradientRange(part: layerCount)
        self.adaptedModules = adaptedModules
        var index: [String: Int] = [:]
        for (i, entry) in entries.enumerated() { index[entry.name] = i }
        self.indexByName = index
    }

    /// The modules peft trains in full beside an adapter unless told otherwise: the head's output layer.
    static func headOutputModules(_ head: ModelHead) -> [String] {
        switch head {
        case .preTraining: return []
        case .sequenceClassification, .tokenClassification, .multipleChoice: return ["classifier"]
        case .questionAnswering: return ["qa_outputs"]
        }
    }

    /// The names that train with an adapter: its own tensors, the biases `bias` names and the modules
    /// of `saved` (matched as peft matches them: the module's name ends with the given one).
    static func trainableNames(_ names: [String], bias: LoraBias, saved: [String]) -> Set<String> {
        Set(names.filter { name in
            if name.contains(".lora_A.") || name.contains(".lora_B.") || name == PromptTuningSettings.entryName
                || PromptEncoderSettings.isEncoderEntry(name) {
                return true
            }
            if bias == .all && name.contains("bias") { return true }
            let components = name.split(separator: ".")
            let modules = (1..<components.count).map { components[..<$0].joined(separator: ".") }
            return modules.contains { module in saved.contains { module.hasSuffix($0) } }
        })
    }

    /// The entries re-laid out with the frozen ones first, each group in its original order.
    static func frozenFirst(_ entries: [Entry], trainable: Set<String>) -> [Entry] {
        var marked = entries
        for i in marked.indices { marked[i].trainable = trainable.contains(marked[i].name) }
        var offset = 0
        return (marked.filter { !$0.trainable } + marked.filter(\.trainable)).map { entry in
            var moved = Entry(
                name: entry.name, shape: entry.shape, offset: offset, count: entry.count, decays: entry.decays, part: entry.part)
            moved.trainable = entry.trainable
            offset += entry.count
            return moved
        }
    }

    /// Elements that train (the gradient buffer's size).
    public var trainableCount: Int { trainableRange.count }

    /// Where an entry's gradient lies in the gradient buffer; nil for a frozen one.
    public func gradientRange(of entry: Entry) -> Range<Int>? {
        entry.trainable ? (entry.offset - trainableRange.lowerBound)..<(entry.range.upperBound - trainableRange.lowerBound) : nil
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
