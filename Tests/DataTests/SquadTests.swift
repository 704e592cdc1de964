import Data
import Foundation
import XCTest

/// Question answering data against transformers' fast tokenizer, run_qa.py's features and decoding,
/// the question-answering pipeline and the official SQuAD scores, through fixtures written by
/// scripts/make_squad_fixtures.py.
final class SquadTests: XCTestCase {
    private static let directory = TestPaths.repositoryRoot.appendingPathComponent("Tests/DataTests/Fixtures/squad")
    private static let squadPath = directory.appendingPathComponent("squad.json").path

    private func fixture<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Foundation.Data(contentsOf: Self.directory.appendingPathComponent(name)))
    }

    private func tokenizer() throws -> BertTokenizer {
        BertTokenizer(vocabulary: try Vocabulary(contentsOfFile: TestPaths.vocabulary), lowercase: true)
    }

    private func ranges(_ pairs: [[Int]]) -> [Range<Int>] { pairs.map { $0[0]..<$0[1] } }

    /// Strings compared scalar by scalar (Swift's `==` equates canonically equivalent strings).
    private func scalars(_ text: String) -> [UInt32] { text.unicodeScalars.map(\.value) }

    // MARK: - Offsets

    private struct OffsetCases: Decodable {
        struct Case: Decodable {
            let text: String
            let ids: [Int32]
            let offsets: [[Int]]
            let words: [Int]
        }
        let cases: [Case]
    }

    func testOffsetsMatchFastTokenizer() throws {
        let fixture = try fixture("offsets.json", as: OffsetCases.self)
        XCTAssertGreaterThan(fixture.cases.count, 15)
        let tokenizer = try tokenizer()
        for testCase in fixture.cases {
            let tokenized = tokenizer.encodeWithOffsets(testCase.text)
            XCTAssertEqual(tokenized.ids, testCase.ids, "ids of \(testCase.text.debugDescription)")
            XCTAssertEqual(tokenized.ids, tokenizer.encode(testCase.text), "encode of \(testCase.text.debugDescription)")
            XCTAssertEqual(tokenized.offsets, ranges(testCase.offsets), "offsets of \(testCase.text.debugDescription)")
            XCTAssertEqual(tokenized.words, testCase.words, "words of \(testCase.text.debugDescription)")
        }
    }

    // MARK: - Reading

    func testReadsQuestionsAnswersAndImpossibleQuestions() throws {
        let dataset = try SquadDataset(contentsOfFile: Self.squadPath)
        XCTAssertEqual(dataset.examples.count, 13)
        XCTAssertTrue(dataset.hasImpossibleQuestions)
        XCTAssertEqual(dataset.examples.filter(\.isImpossible).map(\.id), ["swift-kotlin", "world-lima", "capital-none"])
        let dessert = try XCTUnwrap(dataset.examples.first { $0.id == "world-dessert" })
        XCTAssertEqual(dessert.answers.count, 2)
        let context = Array(dessert.context.unicodeScalars)
        var text = ""
        text.unicodeScalars.append(contentsOf: context[dessert.answers[0].characters])
        XCTAssertEqual(scalars(text), scalars("crème brûlée"))
    }

    /// Writes `json` to a file and returns the reader's error message.
    private func readError(_ json: String) throws -> String {
        let url = try TestPaths.temporaryDirectory(self).appendingPathComponent("bad.json")
        try json.write(to: url, atomically: true, encoding: .utf8)
        do {
            _ = try SquadDataset(contentsOfFile: url.path)
        } catch let error as SquadError {
            XCTAssertTrue(error.description.hasPrefix("'\(url.path)': "), error.description)
            return error.description
        }
        XCTFail("no error for \(json)")
        return ""
    }

    private func squad(_ qas: String, context: String = "Paris is in France.") -> String {
        #"{"data": [{"title": "t", "paragraphs": [{"context": "\#(context)", "qas": [\#(qas)]}]}, "#
            + #"{"paragraphs": [{"context": "\#(context)", "qas": [\#(qas.replacingOccurrences(of: "\"q1\"", with: "\"r1\""))]}]}]}"#
    }

    func testBadFilesNameTheJSONPathAndTheFix() throws {
        let good = #"{"id": "q1", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]}"#
        XCTAssertNoThrow(try SquadDataset(parsing: squad(good), path: "ok.json"))
        let wrongStart = try readError(squad(good.replacingOccurrences(of: "12", with: "11")))
        XCTAssertTrue(wrongStart.contains("data[0].paragraphs[0].qas[0].answers[0].answer_start: 11 is not where"), wrongStart)
        XCTAssertTrue(wrongStart.contains("it occurs at 12"), wrongStart)
        let outside = try readError(squad(good.replacingOccurrences(of: "12", with: "400")))
        XCTAssertTrue(outside.contains("answer_start: 400"), outside)
        let fraction = try readError(squad(good.replacingOccurrences(of: "12", with: "12.5")))
        XCTAssertTrue(fraction.contains("answer_start: is 12.5, expected a whole number"), fraction)
        let missingQuestion = try readError(squad(good.replacingOccurrences(of: #""question": "Where?", "#, with: "")))
        XCTAssertTrue(missingQuestion.contains("data[0].paragraphs[0].qas[0].question: is missing"), missingQuestion)
        let duplicate = try readError(squad(good + ", " + good))
        XCTAssertTrue(duplicate.contains("data[0].paragraphs[0].qas[1].id: 'q1' is already the id of data[0].paragraphs[0].qas[0]"),
                      duplicate)
        let contradiction = try readError(squad(good.replacingOccurrences(of: "}]}", with: #"}], "is_impossible": true}"#)))
        XCTAssertTrue(contradiction.contains("qas[0].is_impossible: is true but the question has answers"), contradiction)
        let notArray = try readError(#"{"data": {"paragraphs": []}}"#)
        XCTAssertTrue(notArray.contains("data: is an object, expected an array"), notArray)
        let syntax = try readError("{\"data\": [\n}")
        XCTAssertTrue(syntax.contains("line 2, column 1"), syntax)
        // The second article's errors name it.
        let second = try readError(squad(good).replacingOccurrences(of: #""r1""#, with: "7"))
        XCTAssertTrue(second.contains("data[1].paragraphs[0].qas[0].id: is a number, expected a string"), second)
    }

    // MARK: - Features

    private struct Features: Decodable {
        struct Feature: Decodable {
            let example: Int
            let input_ids: [Int32]
            let token_type_ids: [Int32]
            let start_position: Int
            let end_position: Int
            let offsets: [[Int]?]
        }
        let max_length: Int
        let doc_stride: Int
        let features: [Feature]
    }

    private func builtFeatures() throws -> (SquadDataset, [SquadFeature], Features) {
        let expected = try fixture("features.json", as: Features.self)
        let dataset = try SquadDataset(contentsOfFile: Self.squadPath)
        let builder = SquadFeatureBuilder(tokenizer: try tokenizer(), maxLength: expected.max_length,
                                          docStride: expected.doc_stride)
        return (dataset, try builder.features(for: dataset.examples), expected)
    }

    func testWindowsMatchRunQAFeatures() throws {
        let (_, features, expected) = try builtFeatures()
        XCTAssertEqual(features.count, expected.features.count)
        XCTAssertGreaterThan(Set(expected.features.map(\.example)).count, 10)
        XCTAssertTrue(expected.features.contains { $0.start_position > 0 }, "some windows hold answers")
        for (index, (feature, reference)) in zip(features, expected.features).enumerated() {
            XCTAssertEqual(feature.exampleIndex, reference.example, "window \(index)")
            XCTAssertEqual(feature.inputIDs, reference.input_ids, "window \(index)")
            XCTAssertEqual(feature.tokenTypeIDs, reference.token_type_ids, "window \(index)")
            XCTAssertEqual(feature.startPosition, reference.start_position, "window \(index)")
            XCTAssertEqual(feature.endPosition, reference.end_position, "window \(index)")
            XCTAssertEqual(feature.offsets, reference.offsets.map { $0.map { $0[0]..<$0[1] } }, "window \(index)")
            XCTAssertLessThanOrEqual(feature.inputIDs.count, expected.max_length)
        }
    }

    /// run_qa.py would point the start at [SEP] here (the answer starts on the last context token).
    func testAnswerOnLastContextTokenStartsThere() throws {
        let (dataset, features, _) = try builtFeatures()
        let exampleIndex = try XCTUnwrap(dataset.examples.firstIndex { $0.id == "capital-last-token" })
        let feature = try XCTUnwrap(features.first { $0.exampleIndex == exampleIndex })
        XCTAssertEqual(feature.startPosition, feature.inputIDs.count - 2)
        XCTAssertEqual(feature.endPosition, feature.inputIDs.count - 2)
    }

    func testQuestionTooLongForTheWindowIsAnError() throws {
        let example = SquadExample(id: "long", question: Array(repeating: "why", count: 40).joined(separator: " "),
                                   context: "Paris is in France.", answers: [])
        let builder = SquadFeatureBuilder(tokenizer: try tokenizer(), maxLength: 32, docStride: 8)
        XCTAssertThrowsError(try builder.features(for: [example])) { error in
            XCTAssertTrue("\(error)".hasPrefix("question 'long': the question has 40 tokens"), "\(error)")
        }
        let stride = SquadFeatureBuilder(tokenizer: try tokenizer(), maxLength: 16, docStride: 12)
        let longContext = SquadExample(id: "c", question: "Where?", context: String(repeating: "Paris is in France. ", count: 5),
                                       answers: [])
        XCTAssertThrowsError(try stride.features(for: [longContext])) { error in
            XCTAssertTrue("\(error)".contains("doc_stride (12) must be smaller"), "\(error)")
        }
    }

    // MARK: - Decoding

    private struct Decoding: Decodable {
        struct Candidate: Decodable {
            let text: String
            let start: Int
            let end: Int
            let score: Float
            let start_logit: Float
            let end_logit: Float
            let probability: Float
        }
        struct Prediction: Decodable {
            let id: String
            let prediction: String
            let nbest: [Candidate]
            let null_score_diff: Float?
        }
        struct PipelineAnswer: Decodable {
            let answer: String
            let score: Double
            let start: Int
            let end: Int
        }
        struct PipelineResult: Decodable {
            let id: String
            let answers: [PipelineAnswer]
        }
        let n_best_size: Int
        let max_answer_length: Int
        let null_score_diff_threshold: Float
        let start_logits: [[Float]]
        let end_logits: [[Float]]
        let v1: [Prediction]
        let v2: [Prediction]
        let narrow_n_best_size: Int
        let narrow_max_answer_length: Int
        let v1_narrow: [Prediction]
        let v2_narrow: [Prediction]
        let pipeline_top_k: Int
        let pipeline_max_answer_length: Int
        let pipeline: [PipelineResult]
        let pipeline_impossible: [PipelineResult]
    }

    private func assertMatches(_ predictions: [SquadPrediction], _ expected: [Decoding.Prediction], _ name: String) {
        XCTAssertEqual(predictions.count, expected.count)
        for (prediction, reference) in zip(predictions, expected) {
            let label = "\(name) \(reference.id)"
            XCTAssertEqual(prediction.id, reference.id)
            XCTAssertEqual(scalars(prediction.text), scalars(reference.prediction), label)
            XCTAssertEqual(prediction.nBest.count, reference.nbest.count, label)
            for (candidate, expected) in zip(prediction.nBest, reference.nbest) {
                XCTAssertEqual(scalars(candidate.text), scalars(expected.text), label)
                XCTAssertEqual(candidate.characters, expected.start..<expected.end, label)
                XCTAssertEqual(candidate.score, expected.score, accuracy: 1e-6, label)
                XCTAssertEqual(candidate.startLogit, expected.start_logit, label)
                XCTAssertEqual(candidate.endLogit, expected.end_logit, label)
                XCTAssertEqual(candidate.probability, expected.probability, accuracy: 1e-6, label)
            }
            if let difference = reference.null_score_diff {
                XCTAssertEqual(try XCTUnwrap(prediction.nullScoreDifference), difference, accuracy: 1e-6, label)
            } else {
                XCTAssertNil(prediction.nullScoreDifference, label)
            }
        }
    }

    func testDecodingMatchesPostprocessQAPredictions() throws {
        let (dataset, features, _) = try builtFeatures()
        let expected = try fixture("decoding.json", as: Decoding.self)
        let wide = (expected.n_best_size, expected.max_answer_length)
        let narrow = (expected.narrow_n_best_size, expected.narrow_max_answer_length)
        for (allowsNoAnswer, sizes, reference, name) in [
            (false, wide, expected.v1, "v1"), (true, wide, expected.v2, "v2"),
            (false, narrow, expected.v1_narrow, "v1 narrow"), (true, narrow, expected.v2_narrow, "v2 narrow"),
        ] {
            let decoder = SquadDecoder(nBestSize: sizes.0, maxAnswerLength: sizes.1, allowsNoAnswer: allowsNoAnswer,
                                       nullScoreDifferenceThreshold: expected.null_score_diff_threshold)
            let predictions = decoder.predictions(examples: dataset.examples, features: features,
                                                  startLogits: expected.start_logits, endLogits: expected.end_logits)
            assertMatches(predictions, reference, name)
        }
        XCTAssertTrue(expected.v2.contains { $0.prediction.isEmpty } && expected.v2.contains { !$0.prediction.isEmpty },
                      "the v2 fixture decodes both answers and no-answers")
        XCTAssertTrue(expected.v1_narrow.contains { $0.prediction == "empty" }, "some example has no candidate")
    }

    func testPipelineAnswersMatchQuestionAnsweringPipeline() throws {
        let (dataset, features, _) = try builtFeatures()
        let expected = try fixture("decoding.json", as: Decoding.self)
        for (handles, reference) in [(false, expected.pipeline), (true, expected.pipeline_impossible)] {
            let decoder = SquadPipelineDecoder(topK: expected.pipeline_top_k,
                                               maxAnswerLength: expected.pipeline_max_answer_length,
                                               handlesImpossibleAnswer: handles)
            for (exampleIndex, result) in reference.enumerated() {
                let windows = features.indices.filter { features[$0].exampleIndex == exampleIndex }
                let answers = decoder.answers(example: dataset.examples[exampleIndex], features: windows.map { features[$0] },
                                              startLogits: windows.map { expected.start_logits[$0] },
                                              endLogits: windows.map { expected.end_logits[$0] })
                let label = "\(result.id) handlesImpossibleAnswer \(handles)"
                XCTAssertEqual(answers.count, result.answers.count, label)
                for (answer, reference) in zip(answers, result.answers) {
                    XCTAssertEqual(scalars(answer.answer), scalars(reference.answer), label)
                    XCTAssertEqual(answer.start, reference.start, label)
                    XCTAssertEqual(answer.end, reference.end, label)
                    XCTAssertEqual(answer.score, reference.score, accuracy: 1e-6, label)
                }
            }
        }
    }

    // MARK: - Metrics

    private struct Metrics: Decodable {
        struct Question: Decodable {
            let id: String
            let exact: Double
            let f1: Double
        }
        struct Score: Decodable {
            let exact: Double
            let f1: Double
            let total: Int
        }
        struct Result: Decodable {
            let exact: Double
            let f1: Double
            let total: Int
            let has_answer: Score?
            let no_answer: Score?
            let questions: [Question]
        }
        struct Pair: Decodable {
            let prediction: String
            let gold: String
            let normalized: String
            let exact: Double
            let f1_v1: Double
            let f1_v2: Double
        }
        let predictions: [String: String]
        let v1: Result
        let v1_missing_designer: Result
        let v2: Result
        let pairs: [Pair]
    }

    private func assertMatches(_ result: SquadMetrics.Result, _ expected: Metrics.Result, _ name: String) {
        XCTAssertEqual(result.overall.exact, expected.exact, accuracy: 1e-9, name)
        XCTAssertEqual(result.overall.f1, expected.f1, accuracy: 1e-9, name)
        XCTAssertEqual(result.overall.total, expected.total, name)
        XCTAssertEqual(result.questions.map(\.id), expected.questions.map(\.id), name)
        for (question, reference) in zip(result.questions, expected.questions) {
            XCTAssertEqual(question.exact, reference.exact, "\(name) \(reference.id)")
            XCTAssertEqual(question.f1, reference.f1, accuracy: 1e-12, "\(name) \(reference.id)")
        }
        for (score, reference) in [(result.hasAnswer, expected.has_answer), (result.noAnswer, expected.no_answer)] {
            XCTAssertEqual(score == nil, reference == nil, name)
            if let score, let reference {
                XCTAssertEqual(score.exact, reference.exact, accuracy: 1e-9, name)
                XCTAssertEqual(score.f1, reference.f1, accuracy: 1e-9, name)
                XCTAssertEqual(score.total, reference.total, name)
            }
        }
    }

    func testScoresMatchOfficialEvaluationRules() throws {
        let dataset = try SquadDataset(contentsOfFile: Self.squadPath)
        let expected = try fixture("metrics.json", as: Metrics.self)
        assertMatches(SquadMetrics.evaluateV1(examples: dataset.examples, predictions: expected.predictions), expected.v1, "v1")
        var partial = expected.predictions
        partial["swift-designer"] = nil
        assertMatches(SquadMetrics.evaluateV1(examples: dataset.examples, predictions: partial),
                      expected.v1_missing_designer, "v1 with a missing prediction")
        assertMatches(try SquadMetrics.evaluateV2(examples: dataset.examples, predictions: expected.predictions),
                      expected.v2, "v2")
        XCTAssertThrowsError(try SquadMetrics.evaluateV2(examples: dataset.examples, predictions: partial)) { error in
            XCTAssertTrue("\(error)".hasPrefix("question 'swift-designer': has no prediction"), "\(error)")
        }
    }

    func testNormalizationMatchesOfficialEvaluationRules() throws {
        let expected = try fixture("metrics.json", as: Metrics.self)
        XCTAssertGreaterThan(expected.pairs.count, 10)
        for pair in expected.pairs {
            let label = "\(pair.prediction.debugDescription) against \(pair.gold.debugDescription)"
            XCTAssertEqual(scalars(SquadMetrics.normalizeAnswer(pair.prediction)), scalars(pair.normalized), label)
            // An empty gold answer counts as none under v2.0's rules, as a text under v1.1's.
            let example = SquadExample(id: "x", question: "?", context: pair.gold,
                                       answers: [SquadAnswer(text: pair.gold, start: 0)])
            let v1 = SquadMetrics.evaluateV1(examples: [example], predictions: ["x": pair.prediction])
            XCTAssertEqual(v1.questions[0].exact, pair.exact, label)
            XCTAssertEqual(v1.questions[0].f1, pair.f1_v1, accuracy: 1e-12, label)
            let v2 = try SquadMetrics.evaluateV2(examples: [example], predictions: ["x": pair.prediction])
            XCTAssertEqual(v2.questions[0].f1, pair.f1_v2, accuracy: 1e-12, label)
        }
    }
}
