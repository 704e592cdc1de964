import Foundation

// Entity-level precision, recall and F1 of token classification with seqeval's rules (seqeval 1.2.2,
// what transformers' run_ner.py reports): chunks are read from the tags, an entity counts as found
// when type, start and end all match. Two ways to read chunks, as seqeval has:
// - lenient (seqeval's default, compatible with conlleval.pl): any tag sequence is accepted, IOB1,
//   IOB2 and IOBES alike; an I- after O or after another type opens a chunk;
// - strict (`mode='strict', scheme=IOB2|IOBES`): only the scheme's prefixes, and a chunk only counts
//   when it starts and ends as the scheme says (an I- after O starts nothing).

/// How chunks are read from tags.
public enum EntityMatching: Equatable, Sendable {
    /// seqeval's default mode (conlleval.pl).
    case lenient
    /// seqeval's `mode='strict'` with the given scheme.
    case strict(StrictTaggingScheme)
}

/// The schemes of seqeval's strict mode that SwiftBERT's token-classification data uses.
public enum StrictTaggingScheme: String, Equatable, Sendable, CaseIterable {
    case iob2 = "IOB2"
    case iobes = "IOBES"
}

/// One entity: its type and its tokens `start..<end`. In strict mode `sentence` is the sentence's
/// index and positions count within it; in lenient mode, as in seqeval, the sentences are read as one
/// sequence with an O after each, `sentence` is 0 and positions count in that sequence.
public struct EntitySpan: Hashable, Sendable {
    public var sentence: Int
    public var type: String
    public var start: Int
    public var end: Int
    public init(sentence: Int, type: String, start: Int, end: Int) {
        self.sentence = sentence
        self.type = type
        self.start = start
        self.end = end
    }
}

/// Entity-level scores: micro average over all types and per type (with the support, the number of
/// true entities), types in the order of their names' code points (Python's `sorted`).
public struct EntityMetrics: Equatable, Sendable {
    public var micro: MatchCounts
    public var perType: [TypeCounts]

    public struct TypeCounts: Equatable, Sendable {
        public var type: String
        public var counts: MatchCounts
    }

    /// `truth` and `predictions`: tags per sentence (`B-PER`, `I-PER`, `O`, ...), one per token.
    public init(truth: [[String]], predictions: [[String]], matching: EntityMatching = .lenient) throws {
        guard truth.count == predictions.count,
              zip(truth, predictions).allSatisfy({ $0.count == $1.count }) else {
            throw TaskMetricsError("entity metrics: true and predicted tags differ in sentence count or length; "
                                   + "pass one predicted tag per true tag")
        }
        let trueEntities = try Self.entities(truth, matching: matching, side: "true")
        let predictedEntities = try Self.entities(predictions, matching: matching, side: "predicted")
        let types = Set(trueEntities.map(\.type)).union(predictedEntities.map(\.type))
            .sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        perType = types.map { type in
            let actual = trueEntities.filter { $0.type == type }
            let predicted = predictedEntities.filter { $0.type == type }
            return TypeCounts(type: type, counts: MatchCounts(truePositives: actual.intersection(predicted).count,
                                                              predicted: predicted.count, actual: actual.count))
        }
        micro = perType.map(\.counts).reduce(MatchCounts(), +)
    }

    /// The entities of all sentences as a set, as seqeval compares them.
    public static func entities(_ sentences: [[String]], matching: EntityMatching,
                                side: String = "") throws -> Set<EntitySpan> {
        switch matching {
        case .lenient:
            for (index, sentence) in sentences.enumerated() {
                if let position = sentence.firstIndex(of: "") {
                    throw TaskMetricsError("entity metrics, \(side) tags of sentence \(index): empty tag at token "
                                           + "\(position); use O outside entities")
                }
            }
            // seqeval flattens the sentences with an O after each, so a chunk cannot run into the next
            // sentence (except with tags that are not chunk tags at all, which seqeval also lets through).
            let flat = sentences.flatMap { $0 + ["O"] }
            return Set(try LenientChunker.chunks(flat).map {
                EntitySpan(sentence: 0, type: $0.type, start: $0.start, end: $0.end)
            })
        case .strict(let scheme):
            var all = Set<EntitySpan>()
            for (index, sentence) in sentences.enumerated() {
                do {
                    all.formUnion(try StrictChunker(scheme: scheme).entities(sentence, sentence: index))
                } catch let error as TaskMetricsError {
                    throw TaskMetricsError("entity metrics, \(side) tags of sentence \(index): \(error.message)")
                }
            }
            return all
        }
    }
}

// MARK: - Lenient chunks (seqeval's default mode)

/// seqeval's `get_entities` with `start_of_chunk` / `end_of_chunk`: a tag is its first character
/// (B, I, E, S, O, or anything else) and the type is what follows the first "-" after it.
public enum LenientChunker {
    /// Chunks of one tag sequence, `start..<end` in token positions.
    public static func chunks(_ tags: [String]) throws -> [(type: String, start: Int, end: Int)] {
        var chunks: [(type: String, start: Int, end: Int)] = []
        var previousTag: Unicode.Scalar = "O"
        var previousType = ""
        var begin = 0
        for (i, label) in (tags + ["O"]).enumerated() {
            guard let tag = label.unicodeScalars.first else {
                throw TaskMetricsError("entity metrics: empty tag at position \(i); use O outside entities")
            }
            let type = Self.type(of: label)
            if endOfChunk(previousTag: previousTag, tag: tag, previousType: previousType, type: type) {
                chunks.append((type: previousType, start: begin, end: i))
            }
            if startOfChunk(previousTag: previousTag, tag: tag, previousType: previousType, type: type) {
                begin = i
            }
            previousTag = tag
            previousType = type
        }
        return chunks
    }

    /// "B-PER" -> "PER", "B-X-Y" -> "X-Y", "O" and "B" -> "_" (untyped), as seqeval splits.
    static func type(of label: String) -> String {
        // By code points, as Python indexes strings.
        let rest = label.unicodeScalars.dropFirst()
        let type = rest.firstIndex(of: "-").map { rest[rest.index(after: $0)...] } ?? rest
        return type.isEmpty ? "_" : String(String.UnicodeScalarView(type))
    }

    /// Whether a chunk ended between the previous token and this one.
    static func endOfChunk(previousTag: Unicode.Scalar, tag: Unicode.Scalar, previousType: String,
                           type: String) -> Bool {
        switch (previousTag, tag) {
        case ("E", _), ("S", _): return true
        case ("B", "B"), ("B", "S"), ("B", "O"), ("I", "B"), ("I", "S"), ("I", "O"): return true
        default: return previousTag != "O" && previousTag != "." && previousType != type
        }
    }

    /// Whether a chunk started between the previous token and this one.
    static func startOfChunk(previousTag: Unicode.Scalar, tag: Unicode.Scalar, previousType: String,
                             type: String) -> Bool {
        switch (previousTag, tag) {
        case (_, "B"), (_, "S"): return true
        case ("E", "E"), ("E", "I"), ("S", "E"), ("S", "I"), ("O", "E"), ("O", "I"): return true
        default: return tag != "O" && tag != "." && previousType != type
        }
    }
}

// MARK: - Strict chunks (seqeval's mode='strict')

/// seqeval's `Tokens.entities` for a scheme: a chunk starts where the scheme's start patterns match,
/// runs while its inside patterns match, and counts only if its end pattern matches there.
public struct StrictChunker: Sendable {
    enum Prefix: Unicode.Scalar { case i = "I", o = "O", b = "B", e = "E", s = "S", u = "U", l = "L" }
    enum TypeCondition { case any, same, different }
    /// (previous prefixes, current prefixes, type condition)
    typealias Pattern = (previous: Set<Prefix>, current: Set<Prefix>, type: TypeCondition)

    struct Token {
        var prefix: Prefix
        var type: String
    }

    let allowed: Set<Prefix>
    let startPatterns: [Pattern]
    let insidePatterns: [Pattern]
    let endPatterns: [Pattern]

    public init(scheme: StrictTaggingScheme) {
        let any: Set<Prefix> = [.i, .o, .b, .e, .s, .u, .l]
        switch scheme {
        case .iob2:
            allowed = [.i, .o, .b]
            startPatterns = [(any, [.b], .any)]
            insidePatterns = [([.b], [.i], .same), ([.i], [.i], .same)]
            endPatterns = [([.i], [.o], .any), ([.i], [.i], .different), ([.i], [.b], .any),
                           ([.b], [.o], .any), ([.b], [.i], .different), ([.b], [.b], .any)]
        case .iobes:
            allowed = [.i, .o, .b, .e, .s]
            startPatterns = [(any, [.b], .any), (any, [.s], .any)]
            insidePatterns = [([.b], [.i], .same), ([.b], [.e], .same), ([.i], [.i], .same), ([.i], [.e], .same)]
            endPatterns = [([.s], any, .any), ([.e], any, .any)]
        }
    }

    /// The entities of one sentence, `start..<end` within it.
    public func entities(_ tags: [String], sentence: Int = 0) throws -> [EntitySpan] {
        let outside = Token(prefix: .o, type: "_")
        let tokens = try tags.enumerated().map { try token($1, position: $0) } + [outside]
        var entities: [EntitySpan] = []
        var previous = outside
        var i = 0
        while i < tokens.count {
            let current = tokens[i]
            if matches(startPatterns, previous, current) {
                let end = forward(tokens, from: i + 1, previous: current)
                if matches(endPatterns, tokens[end - 1], tokens[end]) {
                    entities.append(EntitySpan(sentence: sentence, type: current.type, start: i, end: end))
                }
                i = end
            } else {
                i += 1
            }
            previous = tokens[i - 1]
        }
        return entities
    }

    /// The first position from `start` that does not continue the chunk (the trailing O never does).
    private func forward(_ tokens: [Token], from start: Int, previous: Token) -> Int {
        var previous = previous
        for i in start..<tokens.count {
            guard matches(insidePatterns, previous, tokens[i]) else { return i }
            previous = tokens[i]
        }
        return tokens.count - 1
    }

    private func matches(_ patterns: [Pattern], _ previous: Token, _ current: Token) -> Bool {
        patterns.contains { pattern in
            guard pattern.previous.contains(previous.prefix), pattern.current.contains(current.prefix) else {
                return false
            }
            switch pattern.type {
            case .any: return true
            case .same: return previous.type == current.type
            case .different: return previous.type != current.type
            }
        }
    }

    /// seqeval's `Token`: the prefix is the first character, the type the rest without the "-"s
    /// around it ("_" when nothing is left).
    private func token(_ label: String, position: Int) throws -> Token {
        let allowedNames = "IOBES".unicodeScalars.filter { Prefix(rawValue: $0).map(allowed.contains) ?? false }
            .map(String.init).joined(separator: ", ")
        guard let first = label.unicodeScalars.first, let prefix = Prefix(rawValue: first), allowed.contains(prefix)
        else {
            throw TaskMetricsError("tag \"\(label)\" at token \(position) is not one of the scheme's "
                                   + "(prefixes \(allowedNames)); use the lenient mode for other tags")
        }
        let type = String(label.unicodeScalars.dropFirst()).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return Token(prefix: prefix, type: type.isEmpty ? "_" : type)
    }
}

// MARK: - Token classification

/// What transformers' run_ner.py reports for token classification: the accuracy over labelled
/// tokens and seqeval's entity scores, after dropping the positions labelled -100 (special tokens
/// and word continuations that carry no label).
public struct TokenClassificationMetrics: TaskMetricValues, Equatable, Sendable {
    /// The label id of positions without a label (PyTorch's CrossEntropyLoss ignore_index).
    public static let ignoredLabel = -100

    public var accuracy: Double
    public var entities: EntityMetrics

    /// `labels` and `predictions`: label ids per sequence and token; `labelNames`: id2label.
    public init(labels: [[Int]], predictions: [[Int]], labelNames: [String],
                matching: EntityMatching = .lenient) throws {
        let metric = "token classification metrics"
        guard labels.count == predictions.count else {
            throw TaskMetricsError("\(metric): \(labels.count) labelled sequences but \(predictions.count) predicted")
        }
        func name(_ id: Int, sequence: Int, what: String) throws -> String {
            guard labelNames.indices.contains(id) else {
                throw TaskMetricsError("\(metric): \(what) label id \(id) in sequence \(sequence) is outside the "
                                       + "\(labelNames.count) label names; pass ids of id2label")
            }
            return labelNames[id]
        }
        var truth: [[String]] = [], predicted: [[String]] = []
        var correct = 0, total = 0
        for (sequence, (labelRow, predictionRow)) in zip(labels, predictions).enumerated() {
            guard labelRow.count == predictionRow.count else {
                throw TaskMetricsError("\(metric): sequence \(sequence) has \(labelRow.count) labels but "
                                       + "\(predictionRow.count) predictions; pass one per token")
            }
            var trueTags: [String] = [], predictedTags: [String] = []
            for (label, prediction) in zip(labelRow, predictionRow) where label != Self.ignoredLabel {
                trueTags.append(try name(label, sequence: sequence, what: "true"))
                predictedTags.append(try name(prediction, sequence: sequence, what: "predicted"))
                if trueTags.last == predictedTags.last { correct += 1 }
            }
            total += trueTags.count
            truth.append(trueTags)
            predicted.append(predictedTags)
        }
        guard total > 0 else { throw TaskMetricsError("\(metric): no labelled tokens to score") }
        accuracy = Double(correct) / Double(total)
        entities = try EntityMetrics(truth: truth, predictions: predicted, matching: matching)
    }

    /// run_ner.py's keys: the micro averages, then per type as with `return_entity_level_metrics`.
    public var namedValues: [NamedMetric] {
        let micro = entities.micro
        return [NamedMetric("precision", micro.precision), NamedMetric("recall", micro.recall),
                NamedMetric("f1", micro.f1), NamedMetric("accuracy", accuracy)]
            + entities.perType.flatMap { entry in
                [NamedMetric("\(entry.type)_precision", entry.counts.precision),
                 NamedMetric("\(entry.type)_recall", entry.counts.recall),
                 NamedMetric("\(entry.type)_f1", entry.counts.f1),
                 NamedMetric("\(entry.type)_number", Double(entry.counts.actual))]
            }
    }
}
