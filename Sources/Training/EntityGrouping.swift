import Foundation

// What transformers' TokenClassificationPipeline (5.24, pipelines/token_classification.py) returns
// for one text, from the model's per-token scores: with aggregation_strategy "none" one entry per
// token, with "simple" adjacent tokens of one entity merged into a group. Both drop label "O".

/// One model token of a text (special tokens left out), as the pipeline's `gather_pre_entities` sees it.
public struct ScoredToken: Equatable, Sendable {
    /// Position in the model input, counting [CLS] as 0.
    public var index: Int
    /// The vocabulary piece ("##" continuations included).
    public var token: String
    /// Whether the piece is [UNK]; the pipeline then shows the text the token covers instead.
    public var isUnknown: Bool
    /// The characters the token covers: `start..<end` in Unicode code points of the text (the
    /// tokenizer's offsets).
    public var start: Int
    public var end: Int
    /// Softmax probabilities over the labels (`TokenEntityGrouping.softmax` of the logits).
    public var scores: [Float]

    public init(index: Int, token: String, isUnknown: Bool, start: Int, end: Int, scores: [Float]) {
        self.index = index
        self.token = token
        self.isUnknown = isUnknown
        self.start = start
        self.end = end
        self.scores = scores
    }
}

/// One entry of aggregation_strategy "none": a token's most likely label.
public struct TokenEntity: Equatable, Sendable {
    public var entity: String
    public var score: Float
    public var index: Int
    public var word: String
    public var start: Int
    public var end: Int
}

/// One entry of aggregation_strategy "simple": adjacent tokens of one entity type.
public struct EntityGroup: Equatable, Sendable {
    /// The type: the first token's label after its first "-" ("B-PER" -> "PER").
    public var entityGroup: String
    /// The mean of the tokens' scores.
    public var score: Float
    /// The tokens joined back by WordPiece decoding (lower-cased pieces for an uncased model).
    public var word: String
    public var start: Int
    public var end: Int
}

public enum TokenEntityGrouping {
    /// The label the pipeline leaves out by default (`ignore_labels=["O"]`).
    public static let outsideLabel = "O"

    /// Softmax of one token's logits in Float, shifted by the maximum as the pipeline computes it.
    public static func softmax(_ logits: [Float]) -> [Float] {
        let maximum = logits.max() ?? 0
        let exponentials = logits.map { exp($0 - maximum) }
        let sum = exponentials.reduce(0, +)
        return exponentials.map { $0 / sum }
    }

    /// aggregation_strategy "none": each token with its most likely label (the first on ties), "O" left out.
    public static func tokenEntities(_ tokens: [ScoredToken], text: String,
                                     labelNames: [String]) throws -> [TokenEntity] {
        try labelled(tokens, text: text, labelNames: labelNames).filter { $0.entity != outsideLabel }
    }

    /// aggregation_strategy "simple": tokens grouped while the label's type stays the same and the
    /// label is not a B- (a label without B-/I- continues as an I- of its whole name); groups of "O"
    /// left out.
    public static func entityGroups(_ tokens: [ScoredToken], text: String,
                                    labelNames: [String]) throws -> [EntityGroup] {
        var groups: [EntityGroup] = []
        var run: [TokenEntity] = []
        func close() {
            guard let first = run.first, let last = run.last else { return }
            let label = first.entity
            let type = label.firstIndex(of: "-").map { String(label[label.index(after: $0)...]) } ?? label
            // Float mean, accumulated in Double: within float rounding of numpy's float32 nanmean.
            let score = Float(run.reduce(0.0) { $0 + Double($1.score) } / Double(run.count))
            groups.append(EntityGroup(entityGroup: type, score: score, word: decodeWordPieces(run.map(\.word)),
                                      start: first.start, end: last.end))
        }
        for entity in try labelled(tokens, text: text, labelNames: labelNames) {
            if let previous = run.last {
                let (prefix, type) = bioTag(entity.entity)
                if !(type == bioTag(previous.entity).type && prefix != "B") {
                    close()
                    run = []
                }
            }
            run.append(entity)
        }
        close()
        return groups.filter { $0.entityGroup != outsideLabel }
    }

    /// The pipeline's `get_tag`: "B-X" -> (B, X), "I-X" -> (I, X), anything else -> (I, whole label).
    static func bioTag(_ label: String) -> (prefix: String, type: String) {
        for prefix in ["B", "I"] where label.hasPrefix(prefix + "-") {
            return (prefix, String(label.dropFirst(2)))
        }
        return ("I", label)
    }

    /// The tokenizers library's WordPiece decoder (prefix "##", cleanup on), which the pipeline
    /// calls through `convert_tokens_to_string`: continuation pieces glue to the previous piece,
    /// others follow a space, then each piece's spaces before punctuation and contractions go.
    public static func decodeWordPieces(_ pieces: [String]) -> String {
        pieces.enumerated().map { i, piece in
            var text = piece
            if i > 0 { text = piece.hasPrefix("##") ? String(piece.dropFirst(2)) : " " + piece }
            for (from, to) in cleanups { text = text.replacingOccurrences(of: from, with: to) }
            return text
        }.joined()
    }

    private static let cleanups = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                                   (" n't", "n't"), (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"),
                                   (" 've", "'ve"), (" 're", "'re")]

    /// Every token with its most likely label, "O" included: the pipeline's `aggregate` before filtering.
    private static func labelled(_ tokens: [ScoredToken], text: String,
                                 labelNames: [String]) throws -> [TokenEntity] {
        let codePoints = Array(text.unicodeScalars)
        return try tokens.map { token in
            // max(by:) keeps the first of equal maxima, as numpy's argmax does.
            guard token.scores.count == labelNames.count,
                  let best = token.scores.indices.max(by: { token.scores[$0] < token.scores[$1] }) else {
                throw TaskMetricsError("entity grouping: token \(token.index) has \(token.scores.count) scores for "
                                       + "\(labelNames.count) labels; pass one score per label of id2label")
            }
            guard 0 <= token.start, token.start <= token.end, token.end <= codePoints.count else {
                throw TaskMetricsError("entity grouping: token \(token.index) covers characters \(token.start)..<"
                                       + "\(token.end) of a text of \(codePoints.count); pass the tokenizer's offsets")
            }
            let word = token.isUnknown
                ? String(String.UnicodeScalarView(codePoints[token.start..<token.end])) : token.token
            return TokenEntity(entity: labelNames[best], score: token.scores[best], index: token.index, word: word,
                               start: token.start, end: token.end)
        }
    }
}
