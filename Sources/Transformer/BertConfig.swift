import Foundation
import Kernels

/// The shape and regularisation of a BERT model, read from and written as a Hugging Face
/// `config.json` (keys such as `hidden_size` map to Swift names through `CodingKeys`).
///
/// Missing keys take Hugging Face's `BertConfig` defaults (bert-base). Keys of Hugging Face configs
/// that do not change the computation (`architectures`, `transformers_version`, `use_cache`, ...)
/// are ignored; values this implementation cannot honour are errors naming the key.
public struct BertConfig: Codable, Equatable, Sendable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var hiddenLayerCount: Int
    public var attentionHeadCount: Int
    public var intermediateSize: Int
    public var hiddenActivation: ActivationFunction
    public var hiddenDropoutProbability: Float
    public var attentionDropoutProbability: Float
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int
    public var initializerRange: Float
    public var layerNormEpsilon: Float
    /// Id of [PAD]: its word embedding row gets no gradient from the lookup (as in HF).
    public var padTokenID: Int
    /// Classes of the next-sentence head: 2 (binary), 3 (next / same document / other document) or
    /// 0 (no NSP head). SwiftBERT's own key `num_nsp_labels`; Hugging Face always has 2.
    public var nspClassCount: Int
    /// The head on the encoder, from and to config.json's `architectures`.
    public var head: ModelHead = .preTraining
    /// Label names in id order (`id2label`): one output each for the classification and tagging heads.
    public var labels: [String] = []
    /// What the sequence-classification head's outputs mean (`problem_type`); nil infers it as
    /// transformers does: regression for one output, else single-label classification.
    public var problemType: ProblemType?
    /// Dropout before the classifier (`classifier_dropout`); nil uses `hidden_dropout_prob`.
    public var classifierDropout: Float?
    /// LoRA adapters on the encoder's projections, which then train alone with the modules they name
    /// (not part of config.json: peft's adapter_config.json holds them).
    public var lora: LoraSettings? = nil
    /// Prompt tuning's virtual tokens in front of every sequence (not part of config.json either).
    public var prompt: PromptTuningSettings? = nil
    /// Prefix tuning's learned keys and values in every layer's attention (not part of config.json).
    public var prefix: PrefixTuningSettings? = nil

    /// Whether a peft adapter trains on this model (its other parameters frozen).
    public var hasAdapter: Bool { lora != nil || prompt != nil || prefix != nil }
    /// Whether the adapter is one of peft's prompt-learning methods, whose files name their table
    /// `prompt_embeddings` and wrap the model one level less deep than LoRA's.
    public var hasPromptLearning: Bool { prompt != nil || prefix != nil }
    /// Positions the virtual tokens of prompt tuning take in front of every sequence.
    public var virtualTokenCount: Int { prompt?.virtualTokenCount ?? 0 }
    /// Keys and values prefix tuning puts in front of every sequence's in each layer's attention.
    public var keyPrefixLength: Int { prefix?.virtualTokenCount ?? 0 }
    /// The network that computes the prompt or prefix table in training (P-tuning, `prefix_projection`).
    public var promptEncoder: PromptEncoderSettings? { prompt?.encoder ?? prefix?.encoder }
    /// The longest text the model takes: its positions less those the prompt or prefix takes.
    public var textPositions: Int { maxPositionEmbeddings - virtualTokenCount - keyPrefixLength }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case hiddenLayerCount = "num_hidden_layers"
        case attentionHeadCount = "num_attention_heads"
        case intermediateSize = "intermediate_size"
        case hiddenActivation = "hidden_act"
        case hiddenDropoutProbability = "hidden_dropout_prob"
        case attentionDropoutProbability = "attention_probs_dropout_prob"
        case maxPositionEmbeddings = "max_position_embeddings"
        case typeVocabSize = "type_vocab_size"
        case initializerRange = "initializer_range"
        case layerNormEpsilon = "layer_norm_eps"
        case padTokenID = "pad_token_id"
        case nspClassCount = "num_nsp_labels"
    }

    /// Keys written for Hugging Face compatibility; they are not part of the model's shape.
    enum MarkerKeys: String, CodingKey {
        case architectures
        case modelType = "model_type"
        case positionEmbeddingType = "position_embedding_type"
        case isDecoder = "is_decoder"
        case addCrossAttention = "add_cross_attention"
    }

    /// The fine-tuning heads' keys, written only for those heads.
    enum HeadKeys: String, CodingKey {
        case id2label, label2id
        case problemType = "problem_type"
        case classifierDropout = "classifier_dropout"
        case numLabels = "num_labels"
    }

    public init(
        vocabSize: Int = 30522, hiddenSize: Int = 768, hiddenLayerCount: Int = 12,
        attentionHeadCount: Int = 12, intermediateSize: Int = 3072,
        hiddenActivation: ActivationFunction = .gelu,
        hiddenDropoutProbability: Float = 0.1, attentionDropoutProbability: Float = 0.1,
        maxPositionEmbeddings: Int = 512, typeVocabSize: Int = 2, initializerRange: Float = 0.02,
        layerNormEpsilon: Float = 1e-12, padTokenID: Int = 0, nspClassCount: Int = 2
    ) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.hiddenLayerCount = hiddenLayerCount
        self.attentionHeadCount = attentionHeadCount
        self.intermediateSize = intermediateSize
        self.hiddenActivation = hiddenActivation
        self.hiddenDropoutProbability = hiddenDropoutProbability
        self.attentionDropoutProbability = attentionDropoutProbability
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.typeVocabSize = typeVocabSize
        self.initializerRange = initializerRange
        self.layerNormEpsilon = layerNormEpsilon
        self.padTokenID = padTokenID
        self.nspClassCount = nspClassCount
    }

    /// The transformers class that loads every tensor of a checkpoint with this config, for
    /// config.json's `architectures`. transformers' NSP head always has 2 outputs: with 3 classes
    /// `BertForPreTraining` fails on `cls.seq_relationship`'s shape, and with none it reports the head
    /// missing and initialises it at random; `BertForMaskedLM` loads both (it reports the pooler and a
    /// 3-way head unexpected and drops them). `BertModel` loads the encoder of any of them.
    public var architectures: [String] {
        guard head == .preTraining else { return [head.className] }
        return nspClassCount == 2 ? ["BertForPreTraining"] : ["BertForMaskedLM"]
    }

    /// Outputs of the head's final linear layer: one per label (one for regression), two for
    /// question answering (start, end), one per choice for multiple choice; 0 for pre-training.
    public var headOutputCount: Int {
        switch head {
        case .preTraining: return 0
        case .sequenceClassification: return resolvedProblemType == .regression ? 1 : labels.count
        case .tokenClassification: return labels.count
        case .questionAnswering: return 2
        case .multipleChoice: return 1
        }
    }

    /// `problemType`, or what transformers infers without it: regression for one label.
    public var resolvedProblemType: ProblemType {
        problemType ?? (labels.count == 1 ? .regression : .singleLabel)
    }

    /// The dropout probability before the classifier.
    public var classifierDropoutProbability: Float { classifierDropout ?? hiddenDropoutProbability }

    /// Channels per attention head.
    public var headSize: Int { hiddenSize / attentionHeadCount }

    public init(from decoder: Decoder) throws {
        let defaults = BertConfig()
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            do {
                return try container.decodeIfPresent(T.self, forKey: key) ?? fallback
            } catch {
                throw BertConfigError.invalidValue(key: key.rawValue, reason: "expected \(T.self)")
            }
        }
        vocabSize = try value(.vocabSize, defaults.vocabSize)
        hiddenSize = try value(.hiddenSize, defaults.hiddenSize)
        hiddenLayerCount = try value(.hiddenLayerCount, defaults.hiddenLayerCount)
        attentionHeadCount = try value(.attentionHeadCount, defaults.attentionHeadCount)
        intermediateSize = try value(.intermediateSize, defaults.intermediateSize)
        let activationName = try value(.hiddenActivation, defaults.hiddenActivation.rawValue)
        guard let activation = ActivationFunction(rawValue: activationName) else {
            throw BertConfigError.invalidValue(
                key: CodingKeys.hiddenActivation.rawValue,
                reason: "\"\(activationName)\" is not supported; use one of "
                    + ActivationFunction.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))
        }
        hiddenActivation = activation
        hiddenDropoutProbability = try value(.hiddenDropoutProbability, defaults.hiddenDropoutProbability)
        attentionDropoutProbability = try value(.attentionDropoutProbability, defaults.attentionDropoutProbability)
        maxPositionEmbeddings = try value(.maxPositionEmbeddings, defaults.maxPositionEmbeddings)
        typeVocabSize = try value(.typeVocabSize, defaults.typeVocabSize)
        initializerRange = try value(.initializerRange, defaults.initializerRange)
        layerNormEpsilon = try value(.layerNormEpsilon, defaults.layerNormEpsilon)
        // HF writes `"pad_token_id": null` for some models; that means no padding index.
        padTokenID = (try? container.decodeNil(forKey: .padTokenID)) == true
            ? defaults.padTokenID : try value(.padTokenID, defaults.padTokenID)
        nspClassCount = try value(.nspClassCount, defaults.nspClassCount)

        let markers = try decoder.container(keyedBy: MarkerKeys.self)
        func marker(_ key: MarkerKeys) throws -> String? {
            do {
                return try markers.decodeIfPresent(String.self, forKey: key)
            } catch {
                throw BertConfigError.invalidValue(key: key.rawValue, reason: "expected a string")
            }
        }
        if let type = try marker(.modelType), type != "bert" {
            throw BertConfigError.invalidValue(
                key: MarkerKeys.modelType.rawValue, reason: "is \"\(type)\"; this is a BERT trainer (\"bert\")")
        }
        if let type = try marker(.positionEmbeddingType), type != "absolute" {
            throw BertConfigError.invalidValue(
                key: MarkerKeys.positionEmbeddingType.rawValue,
                reason: "\"\(type)\" is not supported; only \"absolute\" position embeddings are implemented")
        }
        if (try? markers.decodeIfPresent(Bool.self, forKey: .isDecoder)) == true {
            throw BertConfigError.invalidValue(key: MarkerKeys.isDecoder.rawValue, reason: "decoder BERT is not supported")
        }
        if (try? markers.decodeIfPresent(Bool.self, forKey: .addCrossAttention)) == true {
            throw BertConfigError.invalidValue(
                key: MarkerKeys.addCrossAttention.rawValue, reason: "cross-attention is not supported")
        }
        let classes = (try? markers.decodeIfPresent([String].self, forKey: .architectures)) ?? nil
        head = classes?.lazy.compactMap(ModelHead.init(className:)).first ?? .preTraining
        try decodeHeadKeys(from: decoder)
        try validate()
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(vocabSize, forKey: .vocabSize)
        try container.encode(hiddenSize, forKey: .hiddenSize)
        try container.encode(hiddenLayerCount, forKey: .hiddenLayerCount)
        try container.encode(attentionHeadCount, forKey: .attentionHeadCount)
        try container.encode(intermediateSize, forKey: .intermediateSize)
        try container.encode(hiddenActivation.rawValue, forKey: .hiddenActivation)
        try container.encode(hiddenDropoutProbability, forKey: .hiddenDropoutProbability)
        try container.encode(attentionDropoutProbability, forKey: .attentionDropoutProbability)
        try container.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try container.encode(typeVocabSize, forKey: .typeVocabSize)
        try container.encode(initializerRange, forKey: .initializerRange)
        try container.encode(layerNormEpsilon, forKey: .layerNormEpsilon)
        try container.encode(padTokenID, forKey: .padTokenID)
        try container.encode(nspClassCount, forKey: .nspClassCount)
        var markers = encoder.container(keyedBy: MarkerKeys.self)
        try markers.encode(architectures, forKey: .architectures)
        try markers.encode("bert", forKey: .modelType)
        try markers.encode("absolute", forKey: .positionEmbeddingType)
        guard head != .preTraining else { return }
        var heads = encoder.container(keyedBy: HeadKeys.self)
        // Question answering's two outputs are transformers' default num_labels, and multiple choice
        // ignores num_labels: transformers writes no id2label for them unless labels were given.
        let namesOutputs = head == .sequenceClassification || head == .tokenClassification
        let ids = labels.isEmpty && namesOutputs ? (0..<headOutputCount).map { "LABEL_\($0)" } : labels
        if !ids.isEmpty {
            try heads.encode(
                Dictionary(uniqueKeysWithValues: ids.enumerated().map { (String($0.offset), $0.element) }), forKey: .id2label)
            try heads.encode(Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($0.element, $0.offset) }), forKey: .label2id)
        }
        if head == .sequenceClassification {
            try heads.encode(resolvedProblemType.rawValue, forKey: .problemType)
        }
        if let classifierDropout {
            try heads.encode(classifierDropout, forKey: .classifierDropout)
        } else {
            try heads.encodeNil(forKey: .classifierDropout)
        }
    }

    /// `id2label` (or `num_labels`), `problem_type` and `classifier_dropout`.
    private mutating func decodeHeadKeys(from decoder: Decoder) throws {
        let keys = try decoder.container(keyedBy: HeadKeys.self)
        if keys.contains(.id2label) {
            guard let map = try? keys.decode([String: String].self, forKey: .id2label) else {
                throw BertConfigError.invalidValue(
                    key: HeadKeys.id2label.rawValue, reason: "expected an object of label names by id (\"0\": \"NEG\", ...)")
            }
            // Only canonical decimal keys: "00" or "+1" would name an id twice or miss the lookup below.
            let ids = map.keys.compactMap { key in Int(key).flatMap { String($0) == key ? $0 : nil } }.sorted()
            guard ids.count == map.count, ids == Array(0..<ids.count) else {
                throw BertConfigError.invalidValue(
                    key: HeadKeys.id2label.rawValue, reason: "ids must be \"0\", \"1\", ... without gaps, got \(map.keys.sorted())")
            }
            labels = ids.map { map[String($0)]! }
        } else if keys.contains(.numLabels) {
            guard let count = try? keys.decode(Int.self, forKey: .numLabels) else {
                throw BertConfigError.invalidValue(key: HeadKeys.numLabels.rawValue, reason: "expected an integer")
            }
            guard (1...1_000_000).contains(count) else {
                throw BertConfigError.invalidValue(key: HeadKeys.numLabels.rawValue, reason: "must be in 1...1000000, got \(count)")
            }
            labels = (0..<count).map { "LABEL_\($0)" }
        }
        if keys.contains(.problemType), (try? keys.decodeNil(forKey: .problemType)) != true {
            guard let name = try? keys.decode(String.self, forKey: .problemType) else {
                throw BertConfigError.invalidValue(key: HeadKeys.problemType.rawValue, reason: "expected a string or null")
            }
            guard let type = ProblemType(rawValue: name) else {
                throw BertConfigError.invalidValue(
                    key: HeadKeys.problemType.rawValue,
                    reason: "\"\(name)\" is not one of " + ProblemType.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))
            }
            problemType = type
        }
        if keys.contains(.classifierDropout), (try? keys.decodeNil(forKey: .classifierDropout)) != true {
            guard let value = try? keys.decode(Float.self, forKey: .classifierDropout) else {
                throw BertConfigError.invalidValue(key: HeadKeys.classifierDropout.rawValue, reason: "expected a number or null")
            }
            classifierDropout = value
        }
    }

    /// Checks that the values describe a model this implementation can build; errors name the key.
    public func validate() throws {
        func require(_ condition: Bool, _ key: CodingKeys, _ reason: String) throws {
            if !condition { throw BertConfigError.invalidValue(key: key.rawValue, reason: reason) }
        }
        // Upper bounds far above any BERT keep the size arithmetic exact; whether a model fits in
        // memory is checked where it is built, against the machine.
        func require(_ value: Int, in range: ClosedRange<Int>, _ key: CodingKeys) throws {
            try require(range.contains(value), key, "must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
        }
        try require(vocabSize, in: 1...Int(Int32.max), .vocabSize)
        try require(hiddenSize, in: 1...65536, .hiddenSize)
        try require(hiddenLayerCount, in: 0...1024, .hiddenLayerCount)
        try require(attentionHeadCount, in: 1...4096, .attentionHeadCount)
        try require(
            hiddenSize % attentionHeadCount == 0, .attentionHeadCount,
            "hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(attentionHeadCount)")
        try require(intermediateSize, in: 1...1_048_576, .intermediateSize)
        try require(
            (0..<1).contains(hiddenDropoutProbability), .hiddenDropoutProbability,
            "must be in [0, 1), got \(hiddenDropoutProbability)")
        try require(
            (0..<1).contains(attentionDropoutProbability), .attentionDropoutProbability,
            "must be in [0, 1), got \(attentionDropoutProbability)")
        try require(maxPositionEmbeddings, in: 1...1_048_576, .maxPositionEmbeddings)
        try require(typeVocabSize, in: 1...65536, .typeVocabSize)
        try require(
            (0...1).contains(initializerRange), .initializerRange,
            "must be in [0, 1] (the standard deviation of the initial weights, typically 0.02), got \(initializerRange)")
        try require(
            layerNormEpsilon > 0 && layerNormEpsilon <= 1, .layerNormEpsilon,
            "must be in (0, 1], typically 1e-12, got \(layerNormEpsilon)")
        try require(
            [0, 2, 3].contains(nspClassCount), .nspClassCount,
            "must be 2 (binary NSP), 3 (three-way NSP) or 0 (no NSP head), got \(nspClassCount)")
        if let classifierDropout, !(0..<1).contains(classifierDropout) {
            throw BertConfigError.invalidValue(
                key: HeadKeys.classifierDropout.rawValue, reason: "must be in [0, 1), got \(classifierDropout)")
        }
        if [.sequenceClassification, .tokenClassification].contains(head), headOutputCount < 1 {
            throw BertConfigError.invalidValue(
                key: HeadKeys.id2label.rawValue, reason: "the \(head.className) head needs at least one label")
        }
        // label2id maps names back to ids.
        var seen = Set<String>()
        if let repeated = labels.first(where: { !seen.insert($0).inserted }) {
            throw BertConfigError.invalidValue(
                key: HeadKeys.id2label.rawValue, reason: "label \"\(repeated)\" occurs twice; label names must be unique")
        }
        if head == .sequenceClassification, problemType == .regression, labels.count > 1 {
            throw BertConfigError.invalidValue(
                key: HeadKeys.problemType.rawValue,
                reason: "regression has one output, but id2label has \(labels.count) labels; multi-output regression is not "
                    + "supported (use num_labels 1)")
        }
        // Each size is bounded above; their product can still describe a model no machine holds.
        guard let count = parameterCount, count <= Self.maximumParameterCount else {
            throw BertConfigError.invalidValue(
                key: largestDimension.key.rawValue,
                reason: "is \(largestDimension.value), which gives the model more than \(Self.maximumParameterCount) parameters; "
                    + "check the value")
        }
    }

    /// The size key with the largest value: the likeliest culprit when the model is too large.
    private var largestDimension: (key: CodingKeys, value: Int) {
        [(CodingKeys.vocabSize, vocabSize), (.hiddenSize, hiddenSize), (.intermediateSize, intermediateSize),
         (.hiddenLayerCount, hiddenLayerCount), (.maxPositionEmbeddings, maxPositionEmbeddings),
         (.typeVocabSize, typeVocabSize)].max { $0.1 < $1.1 }!
    }

    /// Throws when the model's parameters, at `bytesPerParameter` bytes each (4 for the weights alone,
    /// 16 with gradients and Adam moments), exceed this machine's memory: a mistyped or damaged
    /// config.json must end in a message, not in an allocation failure. `path` names the file.
    public func checkFitsInMemory(bytesPerParameter: Int, path: String? = nil) throws {
        let count = Double(parameterCount ?? Int.max)
        let needed = count * Double(bytesPerParameter), memory = Double(ProcessInfo.processInfo.physicalMemory)
        guard needed > memory else { return }
        throw BertConfigError.invalidValue(
            key: largestDimension.key.rawValue,
            reason: String(format: "is %d, which gives the model %.3g parameters, %.1f GB at %d bytes each, more than this "
                + "machine's %.1f GB of memory; check the value", largestDimension.value, count, needed / 1e9,
                bytesPerParameter, memory / 1e9),
            path: path)
    }

    /// 2^36 parameters: 256 GiB of Float weights alone, far above any model this trainer runs.
    public static let maximumParameterCount = 1 << 36

    /// Parameters of the model with this config and its head, or nil when the count overflows `Int`.
    public var parameterCount: Int? {
        func product(_ factors: Int...) -> Int? {
            var result = 1
            for factor in factors {
                let (value, overflow) = result.multipliedReportingOverflow(by: factor)
                if overflow { return nil }
                result = value
            }
            return result
        }
        func sum(_ terms: Int?...) -> Int? {
            var result = 0
            for term in terms {
                guard let term else { return nil }
                let (value, overflow) = result.addingReportingOverflow(term)
                if overflow { return nil }
                result = value
            }
            return result
        }
        let C = hiddenSize, I = intermediateSize, V = vocabSize
        let embeddings = sum(product(V, C), product(maxPositionEmbeddings, C), product(typeVocabSize, C), product(2, C))
        let layer = sum(product(4, C, C), product(2, C, I), product(9, C), I)
        let pooler = head.hasPooler ? sum(product(C, C), C) : 0
        let K = head == .preTraining ? 0 : headOutputCount
        let pretrainingHeads = head == .preTraining
            ? sum(product(C, C), V, product(3, C), product(nspClassCount, C), nspClassCount) : 0
        let heads = sum(pooler, pretrainingHeads, product(K, C), K)
        return sum(embeddings, layer.flatMap { product($0, hiddenLayerCount) }, heads)
    }

    /// Reads a Hugging Face `config.json`.
    public static func load(contentsOfFile path: String) throws -> BertConfig {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw BertConfigError.unreadable(path: path, reason: error.localizedDescription)
        }
        do {
            return try JSONDecoder().decode(BertConfig.self, from: data)
        } catch let error as BertConfigError {
            throw error.in(path)
        } catch let error as DecodingError {
            throw BertConfigError.unreadable(path: path, reason: "not a JSON object of BertConfig keys (\(error.summary))")
        } catch {
            throw BertConfigError.unreadable(path: path, reason: "\(error.localizedDescription)")
        }
    }

    /// Writes a `config.json` that Hugging Face `BertForPreTraining.from_pretrained` reads.
    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

/// A config that cannot be read or describes a model that cannot be built.
public enum BertConfigError: Error, LocalizedError, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case invalidValue(key: String, reason: String, path: String? = nil)

    func `in`(_ path: String) -> BertConfigError {
        if case let .invalidValue(key, reason, nil) = self { return .invalidValue(key: key, reason: reason, path: path) }
        return self
    }

    /// One line: values quoted from the file may hold line breaks, which are shown escaped.
    public var description: String {
        switch self {
        case let .unreadable(path, reason):
            return "cannot read model config \(path): \(reason)".escapingLineBreaks
        case let .invalidValue(key, reason, path):
            let place = path.map { " in \($0)" } ?? ""
            return "model config key \"\(key)\"\(place): \(reason); fix the value in the config file".escapingLineBreaks
        }
    }

    public var errorDescription: String? { description }
}

/// The head on top of the encoder: which transformers class a checkpoint belongs to.
public enum ModelHead: String, CaseIterable, Equatable, Sendable {
    /// Masked-LM and next-sentence heads (`BertForPreTraining`, or `BertForMaskedLM` without a 2-way NSP head).
    case preTraining
    case sequenceClassification
    case tokenClassification
    case questionAnswering
    case multipleChoice

    /// The transformers class.
    public var className: String {
        switch self {
        case .preTraining: return "BertForPreTraining"
        case .sequenceClassification: return "BertForSequenceClassification"
        case .tokenClassification: return "BertForTokenClassification"
        case .questionAnswering: return "BertForQuestionAnswering"
        case .multipleChoice: return "BertForMultipleChoice"
        }
    }

    /// The head of a transformers class name; nil for other classes (`BertModel`, ...).
    init?(className: String) {
        switch className {
        case "BertForPreTraining", "BertForMaskedLM": self = .preTraining
        default:
            guard let head = ModelHead.allCases.first(where: { $0.className == className }) else { return nil }
            self = head
        }
    }

    /// transformers builds the token-classification and question-answering models without a pooler.
    public var hasPooler: Bool { self != .tokenClassification && self != .questionAnswering }
}

/// transformers' `problem_type` of sequence classification, which picks the loss.
public enum ProblemType: String, CaseIterable, Equatable, Sendable {
    /// Cross-entropy over the labels.
    case singleLabel = "single_label_classification"
    /// Binary cross-entropy with logits per label (multi-hot targets).
    case multiLabel = "multi_label_classification"
    /// Mean squared error on one output.
    case regression
}
