import Foundation

// MARK: - Evaluation decoding (run_qa's postprocess_qa_predictions)

/// A candidate answer of an example.
public struct SquadCandidate: Equatable, Sendable {
    /// The context's text at `characters`; "" for no answer, "empty" when there was no candidate at all.
    public var text: String
    /// Unicode scalars of the context (0..<0 for no answer).
    public var characters: Range<Int>
    /// start logit + end logit
    public var score: Float
    public var startLogit: Float
    public var endLogit: Float
    /// Softmax of `score` over the example's n-best candidates.
    public var probability: Float
}

/// The decoded answer of one example.
public struct SquadPrediction: Equatable, Sendable {
    public var id: String
    /// The answer; "" when SQuAD v2.0 decoding judges the question unanswerable.
    public var text: String
    /// The best candidates, best first.
    public var nBest: [SquadCandidate]
    /// v2.0: the null score minus the best non-null candidate's score (the quantity compared with the
    /// threshold); nil for v1.1.
    public var nullScoreDifference: Float?
}

/// Turns start and end logits of windows into answers as transformers' utils_qa.py
/// `postprocess_qa_predictions` does: per example, over all its windows, the `nBestSize` largest start
/// and end logits of each window are paired; a pair counts when both are context tokens, the end is not
/// before the start and the span has at most `maxAnswerLength` tokens; its score is the sum of the two
/// logits and its text the context between the tokens' offsets. For SQuAD v2.0 the null answer scores
/// [CLS] start + [CLS] end (its smallest value over the windows) and wins when it beats the best
/// non-null candidate by more than `nullScoreDifferenceThreshold`.
public struct SquadDecoder: Sendable {
    public var nBestSize: Int
    public var maxAnswerLength: Int
    /// Decode for SQuAD v2.0 (questions may have no answer).
    public var allowsNoAnswer: Bool
    public var nullScoreDifferenceThreshold: Float

    public init(nBestSize: Int = 20, maxAnswerLength: Int = 30, allowsNoAnswer: Bool = false,
                nullScoreDifferenceThreshold: Float = 0) {
        self.nBestSize = nBestSize
        self.maxAnswerLength = maxAnswerLength
        self.allowsNoAnswer = allowsNoAnswer
        self.nullScoreDifferenceThreshold = nullScoreDifferenceThreshold
    }

    /// One prediction per example. `startLogits[f]` and `endLogits[f]` are the model's logits for
    /// `features[f]`, [features][tokens] (with any padding the model saw: padded positions take part in
    /// the n-best selection as they do in the reference, but are never answers).
    public func predictions(
        examples: [SquadExample], features: [SquadFeature], startLogits: [[Float]], endLogits: [[Float]]
    ) -> [SquadPrediction] {
        precondition(startLogits.count == features.count && endLogits.count == features.count,
                     "one row of start and end logits per feature")
        var featuresOfExample = Array(repeating: [Int](), count: examples.count)
        for (index, feature) in features.enumerated() { featuresOfExample[feature.exampleIndex].append(index) }
        return examples.indices.map { exampleIndex in
            prediction(for: examples[exampleIndex], featureIndices: featuresOfExample[exampleIndex],
                       features: features, startLogits: startLogits, endLogits: endLogits)
        }
    }

    private struct Span {
        var characters: Range<Int>
        var score: Float
        var startLogit: Float
        var endLogit: Float
    }

    private func prediction(
        for example: SquadExample, featureIndices: [Int], features: [SquadFeature],
        startLogits: [[Float]], endLogits: [[Float]]
    ) -> SquadPrediction {
        var null: Span?
        var spans: [Span] = []
        for featureIndex in featureIndices {
            let starts = startLogits[featureIndex], ends = endLogits[featureIndex]
            let offsets = features[featureIndex].offsets
            let nullScore = starts[0] + ends[0]
            if null == nil || null!.score > nullScore {
                null = Span(characters: 0..<0, score: nullScore, startLogit: starts[0], endLogit: ends[0])
            }
            for start in largest(nBestSize, of: starts) {
                for end in largest(nBestSize, of: ends) {
                    guard start < offsets.count, end < offsets.count,
                          let first = offsets[start], let last = offsets[end],
                          end >= start, end - start + 1 <= maxAnswerLength else { continue }
                    spans.append(Span(characters: first.lowerBound..<last.upperBound,
                                      score: starts[start] + ends[end], startLogit: starts[start], endLogit: ends[end]))
                }
            }
        }
        if allowsNoAnswer, let null { spans.append(null) }
        // Best first; equal scores keep their order (Python's sort is stable).
        var best = spans.indices.sorted { spans[$0].score > spans[$1].score || (spans[$0].score == spans[$1].score && $0 < $1) }
            .prefix(nBestSize).map { spans[$0] }
        if allowsNoAnswer, let null, !best.contains(where: { $0.characters == 0..<0 }) { best.append(null) }
        let context = Array(example.context.unicodeScalars)
        var candidates = best.map { span -> SquadCandidate in
            var text = ""
            text.unicodeScalars.append(contentsOf: context[span.characters])
            return SquadCandidate(text: text, characters: span.characters, score: span.score,
                                  startLogit: span.startLogit, endLogit: span.endLogit, probability: 0)
        }
        if candidates.isEmpty || (candidates.count == 1 && candidates[0].text.isEmpty) {
            candidates.insert(SquadCandidate(text: "empty", characters: 0..<0, score: 0, startLogit: 0, endLogit: 0,
                                             probability: 0), at: 0)
        }
        let maxScore = candidates.map(\.score).max()!
        let exps = candidates.map { exp($0.score - maxScore) }
        let total = exps.reduce(0, +)
        for index in candidates.indices { candidates[index].probability = exps[index] / total }

        guard allowsNoAnswer, let null else {
            return SquadPrediction(id: example.id, text: candidates[0].text, nBest: candidates, nullScoreDifference: nil)
        }
        let bestNonNull = candidates.first { !$0.text.isEmpty }!
        let difference = null.score - bestNonNull.startLogit - bestNonNull.endLogit
        return SquadPrediction(id: example.id, text: difference > nullScoreDifferenceThreshold ? "" : bestNonNull.text,
                               nBest: candidates, nullScoreDifference: difference)
    }

    /// Indices of the `count` largest values, largest first (numpy's argsort reversed; among equal
    /// values the later index comes first).
    private func largest(_ count: Int, of values: [Float]) -> [Int] {
        Array(values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 > $1) }.prefix(count))
    }
}

// MARK: - Pipeline decoding (the question-answering pipeline's answer and score)

/// An answer as the Hugging Face question-answering pipeline returns it.
public struct SquadPipelineAnswer: Equatable, Sendable {
    public var answer: String
    /// The product of the start and end probabilities, each a softmax over the window's context
    /// tokens and [CLS].
    public var score: Double
    /// Unicode scalars of the context: `start..<end`.
    public var start: Int
    public var end: Int
}

/// Decodes as transformers' `QuestionAnsweringPipeline` (the last version, 4.x, with a fast tokenizer
/// and `align_to_words`): per window, softmax of the start and end logits over the context tokens and
/// [CLS]; span scores are start probability x end probability for spans of at most `maxAnswerLength`
/// tokens; the `topK` best of each window, widened to whole words, then the `topK` best over all
/// windows. With `handlesImpossibleAnswer`, the smallest [CLS] x [CLS] probability over the windows
/// competes as the answer "" at 0..<0.
///
/// The pipeline's windows are `SquadFeatureBuilder`'s with its defaults: `maxLength` =
/// min(model_max_length, 384), `docStride` = min(maxLength / 2, 128).
public struct SquadPipelineDecoder: Sendable {
    public var topK: Int
    public var maxAnswerLength: Int
    public var handlesImpossibleAnswer: Bool

    public init(topK: Int = 1, maxAnswerLength: Int = 15, handlesImpossibleAnswer: Bool = false) {
        self.topK = topK
        self.maxAnswerLength = maxAnswerLength
        self.handlesImpossibleAnswer = handlesImpossibleAnswer
    }

    /// The answers to `example` from its windows `features` and their logits, [features][tokens].
    public func answers(
        example: SquadExample, features: [SquadFeature], startLogits: [[Float]], endLogits: [[Float]]
    ) -> [SquadPipelineAnswer] {
        var answers: [SquadPipelineAnswer] = []
        var nullScore = 1_000_000.0
        let context = Array(example.context.unicodeScalars)
        for (featureIndex, feature) in features.enumerated() {
            // The pipeline's p_mask: context tokens and [CLS] take part in the softmax.
            let allowed = feature.inputIDs.indices.map { feature.offsets[$0] != nil || $0 == 0 }
            var starts = softmax(startLogits[featureIndex], allowed)
            var ends = softmax(endLogits[featureIndex], allowed)
            if handlesImpossibleAnswer { nullScore = min(nullScore, starts[0] * ends[0]) }
            starts[0] = 0
            ends[0] = 0
            for span in bestSpans(starts, ends) {
                // Spans on [CLS] can only be picked with probability 0 (fewer spans than topK); the
                // pipeline would fall back to token offsets for them: they are left out.
                guard feature.offsets[span.start] != nil, feature.offsets[span.end] != nil else { continue }
                // Widen to whole words of this window (the encoding's word_to_chars).
                var start = span.start, end = span.end
                while start > 0, feature.words[start - 1] != nil, feature.words[start - 1] == feature.words[span.start] { start -= 1 }
                while end + 1 < feature.words.count, feature.words[end + 1] != nil, feature.words[end + 1] == feature.words[span.end] { end += 1 }
                let characters = feature.offsets[start]!.lowerBound..<feature.offsets[end]!.upperBound
                var text = ""
                text.unicodeScalars.append(contentsOf: context[characters])
                answers.append(SquadPipelineAnswer(answer: text, score: span.score, start: characters.lowerBound,
                                                   end: characters.upperBound))
            }
        }
        if handlesImpossibleAnswer { answers.append(SquadPipelineAnswer(answer: "", score: nullScore, start: 0, end: 0)) }
        let order = answers.indices.sorted { answers[$0].score > answers[$1].score || (answers[$0].score == answers[$1].score && $0 < $1) }
        return order.prefix(topK).map { answers[$0] }
    }

    /// exp(x - max) / sum over the allowed positions; others get -10000 first, as in the pipeline.
    private func softmax(_ logits: [Float], _ allowed: [Bool]) -> [Double] {
        let masked = logits.indices.map { allowed[$0] ? Double(logits[$0]) : -10_000 }
        let maximum = masked.max()!
        let exps = masked.map { Foundation.exp($0 - maximum) }
        let total = exps.reduce(0, +)
        return exps.map { $0 / total }
    }

    /// The `topK` best (start, end) pairs of one window, start <= end < start + maxAnswerLength, best
    /// first; equal scores in row-major order.
    private func bestSpans(_ starts: [Double], _ ends: [Double]) -> [(start: Int, end: Int, score: Double)] {
        var spans: [(start: Int, end: Int, score: Double)] = []
        for start in starts.indices {
            for end in start..<min(start + maxAnswerLength, ends.count) {
                spans.append((start, end, starts[start] * ends[end]))
            }
        }
        spans.sort { $0.score > $1.score || ($0.score == $1.score && ($0.start, $0.end) < ($1.start, $1.end)) }
        return Array(spans.prefix(topK))
    }
}
