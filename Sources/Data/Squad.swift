import Foundation
import Kernels

// MARK: - Examples

/// One question of a SQuAD file with its paragraph's context.
public struct SquadExample: Equatable, Sendable {
    /// `qas[].id`: unique in the file; predictions are keyed by it.
    public var id: String
    public var question: String
    public var context: String
    /// The gold answers; empty when the question has no answer (SQuAD v2.0 `is_impossible`).
    public var answers: [SquadAnswer]

    public init(id: String, question: String, context: String, answers: [SquadAnswer]) {
        self.id = id
        self.question = question
        self.context = context
        self.answers = answers
    }

    public var isImpossible: Bool { answers.isEmpty }
}

/// A gold answer: its text and where it starts in the context.
public struct SquadAnswer: Equatable, Sendable {
    public var text: String
    /// `answer_start`: index of the first Unicode scalar of `text` in the context (a Python `str` index).
    public var start: Int

    public init(text: String, start: Int) {
        self.text = text
        self.start = start
    }

    /// The answer's Unicode scalars in the context.
    public var characters: Range<Int> { start..<(start + text.unicodeScalars.count) }
}

/// A malformed SQuAD file or an example the features cannot be built for: names the file and the JSON
/// path (`data[3].paragraphs[0].qas[2].answers[0].answer_start`) or the question id, and what to do.
public struct SquadError: Error, LocalizedError, CustomStringConvertible, Equatable {
    /// The file, or nil for an example built in memory.
    public let path: String?
    /// The JSON path or `question 'id'`.
    public let location: String
    public let message: String

    public init(path: String?, location: String, message: String) {
        self.path = path
        self.location = location
        self.message = message
    }

    public var description: String {
        ((path.map { "'\($0)': " } ?? "") + "\(location): \(message)").escapingLineBreaks
    }

    public var errorDescription: String? { description }
}

/// A SQuAD v1.1 or v2.0 file: `data[].paragraphs[].context` and `qas[]` with `id`, `question`,
/// `answers[]{text, answer_start}` and (v2.0) `is_impossible`. Other keys (`title`, `version`,
/// `plausible_answers`) are ignored.
public struct SquadDataset: Equatable, Sendable {
    public var examples: [SquadExample]

    public init(examples: [SquadExample]) {
        self.examples = examples
    }

    /// Whether some question has no answer (the file needs SQuAD v2.0 decoding and metrics).
    public var hasImpossibleQuestions: Bool { examples.contains { $0.isImpossible } }

    public init(contentsOfFile path: String) throws {
        let data: Foundation.Data
        do {
            data = try Foundation.Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw SquadError(path: path, location: "file", message: "cannot be read (\(error.localizedDescription)); check the path")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SquadError(path: path, location: "file", message: "is not valid UTF-8; convert it to UTF-8")
        }
        try self.init(parsing: text, path: path)
    }

    /// Reads SQuAD JSON; `path` names the source in errors.
    public init(parsing text: String, path: String) throws {
        let root: JSONValue
        do {
            root = try JSONValue.parse(text)
        } catch let error as JSONValue.SyntaxError {
            throw SquadError(path: path, location: "line \(error.line), column \(error.column)",
                             message: "\(error.message); the file is not valid JSON")
        }
        var reader = Reader(path: path)
        examples = try reader.examples(root)
    }

    private struct Reader {
        let path: String
        var seenIDs: [String: String] = [:]

        init(path: String) { self.path = path }

        static let format = "a SQuAD file is {\"data\": [{\"paragraphs\": [{\"context\": ..., \"qas\": [{\"id\": ..., "
            + "\"question\": ..., \"answers\": [{\"text\": ..., \"answer_start\": ...}]}]}]}]}"

        func fail(_ location: String, _ message: String) -> SquadError {
            SquadError(path: path, location: location, message: message)
        }

        func member(_ value: JSONValue, _ key: String, at location: String) throws -> JSONValue {
            guard case .object = value else {
                throw fail(location.isEmpty ? "file" : location, "is \(value.kindDescription), expected an object; \(Self.format)")
            }
            guard let found = value[key] else { throw fail(join(location, key), "is missing; \(Self.format)") }
            return found
        }

        func array(_ value: JSONValue, _ key: String, at location: String) throws -> [JSONValue] {
            let found = try member(value, key, at: location)
            guard case let .array(items) = found else {
                throw fail(join(location, key), "is \(found.kindDescription), expected an array")
            }
            return items
        }

        func string(_ value: JSONValue, _ key: String, at location: String) throws -> String {
            let found = try member(value, key, at: location)
            guard case let .string(text) = found else {
                throw fail(join(location, key), "is \(found.kindDescription), expected a string")
            }
            return text
        }

        func join(_ location: String, _ key: String) -> String { location.isEmpty ? key : "\(location).\(key)" }

        mutating func examples(_ root: JSONValue) throws -> [SquadExample] {
            var examples: [SquadExample] = []
            for (articleIndex, article) in try array(root, "data", at: "").enumerated() {
                let articleLocation = "data[\(articleIndex)]"
                for (paragraphIndex, paragraph) in try array(article, "paragraphs", at: articleLocation).enumerated() {
                    let location = "\(articleLocation).paragraphs[\(paragraphIndex)]"
                    let context = try string(paragraph, "context", at: location)
                    for (questionIndex, qa) in try array(paragraph, "qas", at: location).enumerated() {
                        examples.append(try example(qa, context: context, at: "\(location).qas[\(questionIndex)]"))
                    }
                }
            }
            return examples
        }

        mutating func example(_ qa: JSONValue, context: String, at location: String) throws -> SquadExample {
            let id = try string(qa, "id", at: location)
            if let first = seenIDs[id] {
                throw fail("\(location).id", "'\(id)' is already the id of \(first); give every question its own id")
            }
            seenIDs[id] = location
            let question = try string(qa, "question", at: location)
            let contextScalars = Array(context.unicodeScalars)
            var answers: [SquadAnswer] = []
            for (answerIndex, item) in try array(qa, "answers", at: location).enumerated() {
                let answerLocation = "\(location).answers[\(answerIndex)]"
                let text = try string(item, "text", at: answerLocation)
                let startValue = try member(item, "answer_start", at: answerLocation)
                guard case let .number(literal) = startValue, let start = Int(literal) else {
                    throw fail("\(answerLocation).answer_start",
                               "is \(literal(startValue)), expected a whole number (a character index into the context)")
                }
                let answer = SquadAnswer(text: text, start: start)
                try check(answer, in: contextScalars, at: answerLocation)
                answers.append(answer)
            }
            if case let .bool(impossible)? = qa["is_impossible"], impossible != answers.isEmpty {
                throw fail("\(location).is_impossible", impossible
                    ? "is true but the question has answers; remove the answers or set is_impossible to false"
                    : "is false but the question has no answers; add an answer or set is_impossible to true")
            }
            return SquadExample(id: id, question: question, context: context, answers: answers)
        }

        func literal(_ value: JSONValue) -> String {
            if case let .number(text) = value { return text }
            return value.kindDescription
        }

        /// The answer's text must be the context's text at `answer_start` (counted in Unicode scalars,
        /// as Python indexes strings).
        func check(_ answer: SquadAnswer, in context: [Unicode.Scalar], at location: String) throws {
            let text = Array(answer.text.unicodeScalars)
            if text.isEmpty { throw fail("\(location).text", "is empty; an answer is a non-empty span of the context") }
            let range = answer.characters
            if range.lowerBound >= 0, range.upperBound <= context.count, Array(context[range]) == text { return }
            var found = "it does not occur in the context"
            if let index = firstIndex(of: text, in: context) { found = "it occurs at \(index)" }
            var here = ""
            if range.lowerBound >= 0 && range.lowerBound < context.count {
                var excerpt = ""
                excerpt.unicodeScalars.append(contentsOf: context[range.lowerBound..<min(range.upperBound, context.count)])
                here = " (the context there reads '\(excerpt)')"
            }
            throw fail("\(location).answer_start",
                       "\(answer.start) is not where the answer '\(answer.text)' starts in the context\(here), "
                       + "\(found); answer_start counts Unicode characters from 0, as Python does: fix it")
        }

        func firstIndex(of text: [Unicode.Scalar], in context: [Unicode.Scalar]) -> Int? {
            guard text.count <= context.count else { return nil }
            return (0...(context.count - text.count)).first { context[$0..<($0 + text.count)].elementsEqual(text) }
        }
    }
}

// MARK: - Features

/// One window of an example: `[CLS] question [SEP] context window [SEP]`, as run_qa.py's
/// `prepare_train_features` / `prepare_validation_features` build it.
public struct SquadFeature: Equatable, Sendable {
    /// Index of the example (in the array the features were built from) this window belongs to.
    public var exampleIndex: Int
    /// token ids, [tokens]
    public var inputIDs: [Int32]
    /// 0 for [CLS] question [SEP], 1 for the context and the last [SEP], [tokens]
    public var tokenTypeIDs: [Int32]
    /// Token of the first answer's first character, or 0 ([CLS]) when the answer is not wholly in this
    /// window or the question has none.
    public var startPosition: Int
    /// Token of the first answer's last character, or 0 as `startPosition`.
    public var endPosition: Int
    /// The context scalars of each context token; nil for the question and special tokens, [tokens].
    public var offsets: [Range<Int>?]
    /// The context word of each context token (as `offsets`), [tokens].
    public var words: [Int?]
}

/// Splits examples into windows: the question whole, the context in windows of at most
/// `maxLength - questionTokens - 3` tokens, each starting `docStride` tokens before the previous one
/// ended (truncation "only_second" with overflowing tokens and a stride, as the fast tokenizer does).
public struct SquadFeatureBuilder: Sendable {
    public let tokenizer: BertTokenizer
    /// `max_seq_length`: tokens per window, special tokens included (run_qa's default 384).
    public var maxLength: Int
    /// `doc_stride`: context tokens shared by consecutive windows (run_qa's default 128).
    public var docStride: Int

    public init(tokenizer: BertTokenizer, maxLength: Int = 384, docStride: Int = 128) {
        self.tokenizer = tokenizer
        self.maxLength = maxLength
        self.docStride = docStride
    }

    /// The windows of every example, in order.
    public func features(for examples: [SquadExample]) throws -> [SquadFeature] {
        var features: [SquadFeature] = []
        // The questions of a paragraph follow each other and share its context: tokenized once.
        var lastContext: (text: String, tokens: TokenizedText)?
        for (index, example) in examples.enumerated() {
            if lastContext == nil || !lastContext!.text.unicodeScalars.elementsEqual(example.context.unicodeScalars) {
                lastContext = (example.context, tokenizer.encodeWithOffsets(example.context))
            }
            try appendFeatures(of: example, index: index, context: lastContext!.tokens, to: &features)
        }
        return features
    }

    /// Appends the windows of `example`, whose context tokenizes to `context`.
    public func appendFeatures(
        of example: SquadExample, index: Int, context: TokenizedText, to features: inout [SquadFeature]
    ) throws {
        let vocabulary = tokenizer.vocabulary
        let cls = vocabulary.id(for: "[CLS]")!, sep = vocabulary.id(for: "[SEP]")!
        // run_qa strips the question's leading whitespace; the tokenizer would drop it anyway.
        let question = tokenizer.encode(example.question)
        let location = "question '\(example.id)'"
        if context.ids.isEmpty {
            throw SquadError(path: nil, location: location, message: "the context has no tokens; give it some text")
        }
        let windowLength = maxLength - question.count - 3
        if windowLength <= 0 || (context.ids.count > windowLength && docStride >= windowLength) {
            throw SquadError(
                path: nil, location: location,
                message: "the question has \(question.count) tokens, which leaves \(max(windowLength, 0)) context "
                    + "tokens per window of max_length \(maxLength); doc_stride (\(docStride)) must be smaller: "
                    + "raise max_length, lower doc_stride or shorten the question")
        }
        let answer = example.answers.first?.characters
        var windowStart = 0
        while true {
            let windowEnd = min(windowStart + windowLength, context.ids.count)
            let window = windowStart..<windowEnd
            let contextStart = question.count + 2
            var inputIDs = [cls] + question + [sep]
            inputIDs.append(contentsOf: context.ids[window])
            inputIDs.append(sep)
            var offsets = [Range<Int>?](repeating: nil, count: contextStart)
            offsets.append(contentsOf: context.offsets[window].map { Optional($0) })
            offsets.append(nil)
            var words = [Int?](repeating: nil, count: contextStart)
            words.append(contentsOf: context.words[window].map { Optional($0) })
            words.append(nil)
            var feature = SquadFeature(
                exampleIndex: index, inputIDs: inputIDs,
                tokenTypeIDs: [Int32](repeating: 0, count: contextStart) + [Int32](repeating: 1, count: window.count + 1),
                startPosition: 0, endPosition: 0, offsets: offsets, words: words)
            if let answer, let span = tokens(of: answer, in: context.offsets[window]) {
                feature.startPosition = contextStart + span.start
                feature.endPosition = contextStart + span.end
            }
            features.append(feature)
            if windowEnd == context.ids.count { break }
            windowStart += windowLength - docStride
        }
    }

    /// The first and last of `offsets` (a window's context tokens) covering `answer`, or nil when the
    /// answer is not wholly inside the window. Tokens are found as run_qa.py finds them: the last
    /// token starting at or before the answer's start, the first ending at or after its end.
    private func tokens(of answer: Range<Int>, in offsets: ArraySlice<Range<Int>>) -> (start: Int, end: Int)? {
        let offsets = Array(offsets)
        guard offsets[0].lowerBound <= answer.lowerBound, offsets[offsets.count - 1].upperBound >= answer.upperBound
        else { return nil }
        var start = 0
        // run_qa.py walks on into [SEP] (offsets (0, 0)) here, giving [SEP] when the answer starts on
        // the window's last token; the search stays inside the context.
        while start < offsets.count && offsets[start].lowerBound <= answer.lowerBound { start += 1 }
        var end = offsets.count - 1
        while end >= 0 && offsets[end].upperBound >= answer.upperBound { end -= 1 }
        return (start - 1, end + 1)
    }
}
