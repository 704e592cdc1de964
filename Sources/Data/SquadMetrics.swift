/// Exact match and token F1 with the rules of the official SQuAD evaluation scripts (v1.1 and v2.0).
public enum SquadMetrics {
    /// Exact match and F1 as percentages over `total` questions.
    public struct Score: Equatable, Sendable {
        public var exact: Double
        public var f1: Double
        public var total: Int
    }

    /// One question's exact match (0 or 1) and F1 (0...1), best over its gold answers.
    public struct QuestionScore: Equatable, Sendable {
        public var id: String
        public var exact: Double
        public var f1: Double
    }

    public struct Result: Equatable, Sendable {
        public var overall: Score
        /// v2.0: questions with answers (nil when there are none, as the official script leaves it out).
        public var hasAnswer: Score?
        /// v2.0: questions without answers.
        public var noAnswer: Score?
        public var questions: [QuestionScore]
    }

    /// SQuAD v1.1: a question without a prediction scores 0 (and counts); one without gold answers
    /// (not part of v1.1) scores 0.
    public static func evaluateV1(examples: [SquadExample], predictions: [String: String]) -> Result {
        var questions: [QuestionScore] = []
        for example in examples {
            guard let prediction = predictions[example.id] else { continue }
            let predicted = normalizedWords(prediction)
            var exact = 0.0, f1 = 0.0
            for gold in example.answers.map({ normalizedWords($0.text) }) {
                exact = max(exact, predicted == gold ? 1 : 0)
                f1 = max(f1, tokenF1(gold: gold, prediction: predicted))
            }
            questions.append(QuestionScore(id: example.id, exact: exact, f1: f1))
        }
        return Result(overall: summary(questions, total: examples.count), hasAnswer: nil, noAnswer: nil,
                      questions: questions)
    }

    /// SQuAD v2.0: gold answers that normalise to nothing are dropped, and a question without gold
    /// answers has "" as its only right answer; F1 is 1 when gold and prediction are both empty and 0 when
    /// only one is. Every question needs a prediction ("" for no answer).
    public static func evaluateV2(examples: [SquadExample], predictions: [String: String]) throws -> Result {
        var questions: [QuestionScore] = []
        var hasAnswer: [QuestionScore] = [], noAnswer: [QuestionScore] = []
        for example in examples {
            guard let prediction = predictions[example.id] else {
                throw SquadError(path: nil, location: "question '\(example.id)'",
                                 message: "has no prediction; SQuAD v2.0 scores need one per question (\"\" for no answer)")
            }
            let predicted = normalizedWords(prediction)
            var golds = example.answers.map { normalizedWords($0.text) }.filter { !$0.isEmpty }
            if golds.isEmpty { golds = [[]] }
            var exact = 0.0, f1 = 0.0
            for gold in golds {
                exact = max(exact, predicted == gold ? 1 : 0)
                f1 = max(f1, gold.isEmpty || predicted.isEmpty
                    ? (gold == predicted ? 1 : 0)
                    : tokenF1(gold: gold, prediction: predicted))
            }
            let score = QuestionScore(id: example.id, exact: exact, f1: f1)
            questions.append(score)
            if example.isImpossible { noAnswer.append(score) } else { hasAnswer.append(score) }
        }
        return Result(overall: summary(questions, total: questions.count),
                      hasAnswer: hasAnswer.isEmpty ? nil : summary(hasAnswer, total: hasAnswer.count),
                      noAnswer: noAnswer.isEmpty ? nil : summary(noAnswer, total: noAnswer.count),
                      questions: questions)
    }

    /// The official `normalize_answer`: lower case (Python's `str.lower`), remove ASCII punctuation,
    /// replace the whole words a, an and the by a space, then collapse whitespace to single spaces.
    public static func normalizeAnswer(_ text: String) -> String {
        var result = ""
        for word in normalizedWords(text) {
            if !result.isEmpty { result += " " }
            result.unicodeScalars.append(contentsOf: word.map { Unicode.Scalar($0)! })
        }
        return result
    }

    // MARK: - Rules

    /// The words of the normalised answer, as scalars (compared as Python compares strings, not by
    /// canonical equivalence as Swift's `String` is).
    private static func normalizedWords(_ text: String) -> [[UInt32]] {
        let unicode = UnicodeCharacterData.shared
        let scalars = text.unicodeScalars.map(\.value)
        var lowered: [UInt32] = []
        scalars.withUnsafeBufferPointer { unicode.appendLowercase(of: $0, to: &lowered) }
        let kept = lowered.filter { !asciiPunctuation.contains($0) }
        // `\b(a|an|the)\b`: an article is a whole run of word characters.
        var withoutArticles: [UInt32] = []
        var index = 0
        while index < kept.count {
            guard isWordCharacter(kept[index]) else {
                withoutArticles.append(kept[index])
                index += 1
                continue
            }
            var end = index
            while end < kept.count && isWordCharacter(kept[end]) { end += 1 }
            let run = kept[index..<end]
            if articles.contains(where: { $0.elementsEqual(run) }) {
                withoutArticles.append(0x20)
            } else {
                withoutArticles.append(contentsOf: run)
            }
            index = end
        }
        return withoutArticles.split(whereSeparator: isPythonWhitespace).map { Array($0) }
    }

    /// Python's `string.punctuation`.
    private static let asciiPunctuation = Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".unicodeScalars.map(\.value))
    private static let articles: [[UInt32]] = ["a", "an", "the"].map { $0.unicodeScalars.map(\.value) }

    /// Python's `\w` on `str`: `isalnum()` (letters Lu/Ll/Lt/Lm/Lo or a numeric type) or "_".
    private static func isWordCharacter(_ value: UInt32) -> Bool {
        if value == 0x5F { return true }
        guard let scalar = Unicode.Scalar(value) else { return false }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return scalar.properties.numericType != nil
        }
    }

    /// Python's `str.isspace()`, which `str.split()` splits on.
    private static func isPythonWhitespace(_ value: UInt32) -> Bool {
        switch value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    /// Harmonic mean of precision and recall of the common words (counted with multiplicity).
    private static func tokenF1(gold: [[UInt32]], prediction: [[UInt32]]) -> Double {
        var goldCounts: [[UInt32]: Int] = [:]
        for word in gold { goldCounts[word, default: 0] += 1 }
        var same = 0
        for word in prediction where goldCounts[word, default: 0] > 0 {
            goldCounts[word]! -= 1
            same += 1
        }
        if same == 0 { return 0 }
        let precision = Double(same) / Double(prediction.count), recall = Double(same) / Double(gold.count)
        return 2 * precision * recall / (precision + recall)
    }

    private static func summary(_ questions: [QuestionScore], total: Int) -> Score {
        Score(exact: 100 * questions.reduce(0) { $0 + $1.exact } / Double(total),
              f1: 100 * questions.reduce(0) { $0 + $1.f1 } / Double(total), total: total)
    }
}
