import Foundation
import Training
import XCTest

/// Fine-tuning metrics and pipeline entity grouping against Tests/TrainingTests/Fixtures/metrics/,
/// written by scripts/make_metric_fixtures.py from scikit-learn, scipy, seqeval and transformers.
final class TaskMetricsTests: XCTestCase {
    private let tolerance = 1e-9
    private let scoreTolerance: Float = 1e-6

    private func cases(_ file: String, _ key: String) throws -> [[String: Any]] {
        try XCTUnwrap(loadFixture("metrics/" + file)[key] as? [[String: Any]], "\(file): \(key)")
    }

    private func ints(_ value: Any?) -> [Int] { (value as? [Any] ?? []).map { ($0 as? NSNumber)?.intValue ?? .min } }
    private func number(_ value: Any?) -> Double { (value as? NSNumber)?.doubleValue ?? .nan }

    private func assertCounts(_ counts: MatchCounts, _ expected: Any?, _ context: String,
                              file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = try XCTUnwrap(expected as? [String: Any], context, file: file, line: line)
        XCTAssertEqual(counts.precision, number(expected["precision"]), accuracy: tolerance, context, file: file, line: line)
        XCTAssertEqual(counts.recall, number(expected["recall"]), accuracy: tolerance, context, file: file, line: line)
        XCTAssertEqual(counts.f1, number(expected["f1"]), accuracy: tolerance, context, file: file, line: line)
        XCTAssertEqual(counts.actual, (expected["support"] as? NSNumber)?.intValue, context, file: file, line: line)
    }

    // MARK: - Classification

    func testSingleLabelClassificationMatchesScikitLearn() throws {
        let all = try cases("classification.json", "single_label")
        XCTAssertGreaterThanOrEqual(all.count, 10)
        for c in all {
            let name = c["name"] as? String ?? "?"
            let metrics = try ClassificationMetrics(labels: ints(c["labels"]), predictions: ints(c["predictions"]))
            XCTAssertEqual(metrics.accuracy, number(c["accuracy"]), accuracy: tolerance, name)
            XCTAssertEqual(metrics.macroF1, number(c["macro_f1"]), accuracy: tolerance, name)
            XCTAssertEqual(metrics.microF1, number(c["micro_f1"]), accuracy: tolerance, name)
            XCTAssertEqual(metrics.matthewsCorrelation, number(c["mcc"]), accuracy: tolerance, name)
            let perClass = try XCTUnwrap(c["per_class"] as? [[String: Any]])
            XCTAssertEqual(metrics.perClass.map(\.label), perClass.map { ($0["label"] as? NSNumber)?.intValue ?? -1 }, name)
            for (got, expected) in zip(metrics.perClass, perClass) {
                try assertCounts(got.counts, expected, "\(name) class \(got.label)")
            }
        }
    }

    func testMultiLabelClassificationMatchesScikitLearn() throws {
        for c in try cases("classification.json", "multi_label") {
            let name = c["name"] as? String ?? "?"
            let labels = (c["labels"] as? [Any] ?? []).map { ints($0).map { $0 == 1 } }
            let logits = (c["logits"] as? [Any] ?? []).map { doubles($0).map { Float($0) } }
            let metrics = try MultiLabelMetrics(labels: labels, predictions: MultiLabelMetrics.predictions(logits: logits))
            XCTAssertEqual(metrics.subsetAccuracy, number(c["subset_accuracy"]), accuracy: tolerance, name)
            XCTAssertEqual(metrics.microF1, number(c["micro_f1"]), accuracy: tolerance, name)
            XCTAssertEqual(metrics.macroF1, number(c["macro_f1"]), accuracy: tolerance, name)
        }
    }

    func testRegressionMatchesScipyAndUndefinedCorrelationsAreNil() throws {
        var undefined = 0
        for c in try cases("regression.json", "cases") {
            let name = c["name"] as? String ?? "?"
            let metrics = try RegressionMetrics(labels: doubles(c["labels"]), predictions: doubles(c["predictions"]))
            XCTAssertEqual(metrics.meanSquaredError, number(c["mse"]), accuracy: tolerance, name)
            for (got, key) in [(metrics.pearson, "pearson"), (metrics.spearman, "spearman")] {
                if c[key] is NSNull {
                    XCTAssertNil(got, "\(name) \(key): scipy gives NaN")
                    undefined += 1
                } else {
                    XCTAssertEqual(try XCTUnwrap(got, "\(name) \(key)"), number(c[key]), accuracy: tolerance, "\(name) \(key)")
                }
            }
        }
        XCTAssertGreaterThanOrEqual(undefined, 4, "the fixture covers constant inputs and a single point")
    }

    func testAverageRanksMatchScipyRankdata() throws {
        for c in try cases("regression.json", "ranks") {
            XCTAssertEqual(RegressionMetrics.averageRanks(doubles(c["values"])), doubles(c["ranks"]), "\(c["values"] ?? "")")
        }
    }

    func testMismatchedOrEmptyInputsAreClearErrors() {
        XCTAssertThrowsError(try ClassificationMetrics(labels: [0, 1], predictions: [0])) {
            XCTAssertEqual("\($0)", "classification metrics: 2 labels but 1 predictions; pass one prediction per label")
        }
        XCTAssertThrowsError(try ClassificationMetrics(labels: [], predictions: [])) {
            XCTAssertEqual("\($0)", "classification metrics: no examples to score")
        }
        XCTAssertThrowsError(try MultiLabelMetrics(labels: [[true, false], [true]], predictions: [[true, false], [true]])) {
            XCTAssertTrue("\($0)".contains("example 1 has 1 labels"), "\($0)")
        }
        XCTAssertThrowsError(try RegressionMetrics(labels: [1, .nan], predictions: [1, 2])) {
            XCTAssertTrue("\($0)".contains("finite"), "\($0)")
        }
    }

    // MARK: - Entities

    func testEntityScoresMatchSeqevalInLenientAndStrictModes() throws {
        var modes = Set<String>(), errors = 0
        for c in try cases("entities.json", "cases") {
            let name = c["name"] as? String ?? "?"
            let truth = try XCTUnwrap(c["true"] as? [[String]]), predicted = try XCTUnwrap(c["pred"] as? [[String]])
            let matching: EntityMatching
            if let scheme = c["scheme"] as? String, c["mode"] as? String == "strict" {
                matching = .strict(try XCTUnwrap(StrictTaggingScheme(rawValue: scheme), scheme))
            } else {
                matching = .lenient
            }
            modes.insert("\(matching)")
            if let error = c["error"] as? String {
                errors += 1
                XCTAssertThrowsError(try EntityMetrics(truth: truth, predictions: predicted, matching: matching),
                                     "\(name): seqeval raised \(error)")
                continue
            }
            let metrics = try EntityMetrics(truth: truth, predictions: predicted, matching: matching)
            try assertCounts(metrics.micro, c["micro"], "\(name) micro")
            let perType = try XCTUnwrap(c["per_type"] as? [String: Any])
            XCTAssertEqual(Set(metrics.perType.map(\.type)), Set(perType.keys), name)
            XCTAssertEqual(metrics.perType.map(\.type), perType.keys.sorted(), "\(name): types in name order")
            for entry in metrics.perType { try assertCounts(entry.counts, perType[entry.type], "\(name) \(entry.type)") }

            // The chunks themselves, not only their counts.
            let expected = try XCTUnwrap(c["true_entities"] as? [[Any]]).map { e -> EntitySpan in
                let n = e.compactMap { ($0 as? NSNumber)?.intValue }
                // seqeval: strict (sentence, type, start, end); lenient (type, start, last) in the flattened sequence.
                return matching == .lenient
                    ? EntitySpan(sentence: 0, type: e[0] as? String ?? "", start: n[0], end: n[1] + 1)
                    : EntitySpan(sentence: n[0], type: e[1] as? String ?? "", start: n[1], end: n[2])
            }
            XCTAssertEqual(try EntityMetrics.entities(truth, matching: matching), Set(expected), name)
        }
        XCTAssertEqual(modes.count, 3, "lenient, strict IOB2 and strict IOBES are all covered")
        XCTAssertEqual(errors, 2)
    }

    func testStrictModeNamesTheTagItRejects() {
        XCTAssertThrowsError(try EntityMetrics(truth: [["O"], ["B-PER", "E-PER"]], predictions: [["O"], ["B-PER", "I-PER"]],
                                               matching: .strict(.iob2))) {
            XCTAssertEqual("\($0)", "entity metrics, true tags of sentence 1: tag \"E-PER\" at token 1 is not one of the "
                           + "scheme's (prefixes I, O, B); use the lenient mode for other tags")
        }
        XCTAssertThrowsError(try EntityMetrics(truth: [["O", ""]], predictions: [["O", "O"]])) {
            XCTAssertTrue("\($0)".contains("sentence 0: empty tag at token 1"), "\($0)")
        }
        XCTAssertThrowsError(try EntityMetrics(truth: [["O", "O"]], predictions: [["O"]]))
    }

    func testTokenClassificationDropsIgnoredPositionsAsRunNerDoes() throws {
        for c in try cases("entities.json", "token_cases") {
            let name = c["name"] as? String ?? "?"
            let labels = (c["labels"] as? [Any] ?? []).map(ints), predictions = (c["predictions"] as? [Any] ?? []).map(ints)
            XCTAssertTrue(labels.joined().contains(TokenClassificationMetrics.ignoredLabel), name)
            let metrics = try TokenClassificationMetrics(labels: labels, predictions: predictions,
                                                         labelNames: try XCTUnwrap(c["label_names"] as? [String]))
            XCTAssertEqual(metrics.accuracy, number(c["accuracy"]), accuracy: tolerance, name)
            try assertCounts(metrics.entities.micro, c["micro"], name)
        }
        XCTAssertThrowsError(try TokenClassificationMetrics(labels: [[0, 7]], predictions: [[0, 0]], labelNames: ["O", "B-X"])) {
            XCTAssertEqual("\($0)", "token classification metrics: true label id 7 in sequence 0 is outside the 2 label "
                           + "names; pass ids of id2label")
        }
        XCTAssertThrowsError(try TokenClassificationMetrics(labels: [[-100]], predictions: [[0]], labelNames: ["O"])) {
            XCTAssertEqual("\($0)", "token classification metrics: no labelled tokens to score")
        }
    }

    func testNamedValuesUseTheExampleScriptsKeys() throws {
        let classification = try ClassificationMetrics(labels: [0, 1, 1, 2], predictions: [0, 1, 2, 2])
        XCTAssertEqual(classification.namedValues, [
            NamedMetric("accuracy", classification.accuracy), NamedMetric("f1_macro", classification.macroF1),
            NamedMetric("f1_micro", classification.microF1),
            NamedMetric("matthews_correlation", classification.matthewsCorrelation)])
        let multiLabel = try MultiLabelMetrics(labels: [[true, false]], predictions: [[true, true]])
        XCTAssertEqual(multiLabel.namedValues.map(\.name), ["subset_accuracy", "f1_micro", "f1_macro"])
        XCTAssertEqual(multiLabel.namedValues.map(\.value), [multiLabel.subsetAccuracy, multiLabel.microF1, multiLabel.macroF1])
        let regression = try RegressionMetrics(labels: [1, 1], predictions: [1, 2])
        XCTAssertEqual(regression.namedValues, [NamedMetric("pearson", nil), NamedMetric("spearmanr", nil),
                                                NamedMetric("mse", regression.meanSquaredError)])
        let tokens = try TokenClassificationMetrics(labels: [[1, 2, 0, 3]], predictions: [[1, 2, 0, 0]],
                                                    labelNames: ["O", "B-PER", "I-PER", "B-LOC"])
        XCTAssertEqual(tokens.namedValues.map(\.name), ["precision", "recall", "f1", "accuracy",
                                                        "LOC_precision", "LOC_recall", "LOC_f1", "LOC_number",
                                                        "PER_precision", "PER_recall", "PER_f1", "PER_number"])
        XCTAssertEqual(tokens.namedValues[2].value, tokens.entities.micro.f1)
        XCTAssertEqual(tokens.namedValues[11].value, Double(tokens.entities.perType[1].counts.actual))
    }

    // MARK: - Pipeline entity grouping

    func testEntityGroupingMatchesTheTokenClassificationPipeline() throws {
        let fixture = try loadFixture("metrics/grouping.json")
        let labelNames = try XCTUnwrap(fixture["id2label"] as? [String])
        let all = try XCTUnwrap(fixture["cases"] as? [[String: Any]])
        var unknown = 0, groups = 0
        for c in all {
            let text = try XCTUnwrap(c["text"] as? String)
            let tokens = try XCTUnwrap(c["tokens"] as? [[String: Any]]).map { t -> ScoredToken in
                if t["is_unknown"] as? Bool == true { unknown += 1 }
                return ScoredToken(index: (t["index"] as? NSNumber)?.intValue ?? -1, token: t["token"] as? String ?? "",
                                   isUnknown: t["is_unknown"] as? Bool ?? false, start: (t["start"] as? NSNumber)?.intValue ?? -1,
                                   end: (t["end"] as? NSNumber)?.intValue ?? -1,
                                   scores: TokenEntityGrouping.softmax(doubles(t["logits"]).map { Float($0) }))
            }
            let none = try TokenEntityGrouping.tokenEntities(tokens, text: text, labelNames: labelNames)
            let expectedNone = try XCTUnwrap(c["none"] as? [[String: Any]])
            XCTAssertEqual(none.count, expectedNone.count, text)
            for (got, expected) in zip(none, expectedNone) {
                XCTAssertEqual(got.entity, expected["entity"] as? String, text)
                XCTAssertEqual(got.word, expected["word"] as? String, text)
                XCTAssertEqual([got.index, got.start, got.end], ["index", "start", "end"].map { (expected[$0] as? NSNumber)?.intValue ?? -1 }, text)
                XCTAssertEqual(got.score, Float(number(expected["score"])), accuracy: scoreTolerance, text)
            }
            let simple = try TokenEntityGrouping.entityGroups(tokens, text: text, labelNames: labelNames)
            let expectedSimple = try XCTUnwrap(c["simple"] as? [[String: Any]])
            XCTAssertEqual(simple.count, expectedSimple.count, text)
            for (got, expected) in zip(simple, expectedSimple) {
                XCTAssertEqual(got.entityGroup, expected["entity_group"] as? String, text)
                XCTAssertEqual(got.word, expected["word"] as? String, text)
                XCTAssertEqual([got.start, got.end], ["start", "end"].map { (expected[$0] as? NSNumber)?.intValue ?? -1 }, text)
                XCTAssertEqual(got.score, Float(number(expected["score"])), accuracy: scoreTolerance, text)
            }
            groups += simple.count
        }
        XCTAssertGreaterThan(unknown, 0, "an [UNK] token shows the text it covers")
        XCTAssertGreaterThan(groups, all.count)
    }

    func testWordPieceDecodingMatchesTheTokenizersDecoder() throws {
        let decoded = try XCTUnwrap(loadFixture("metrics/grouping.json")["decoded"] as? [[String: Any]])
        for d in decoded {
            let pieces = try XCTUnwrap(d["pieces"] as? [String])
            XCTAssertEqual(TokenEntityGrouping.decodeWordPieces(pieces), d["text"] as? String, "\(pieces)")
        }
    }

    func testEntityGroupingRejectsScoresAndOffsetsThatDoNotFit() {
        let token = ScoredToken(index: 1, token: "a", isUnknown: true, start: 0, end: 5, scores: [0.5, 0.5])
        XCTAssertThrowsError(try TokenEntityGrouping.tokenEntities([token], text: "abc", labelNames: ["O", "B-X"])) {
            XCTAssertEqual("\($0)", "entity grouping: token 1 covers characters 0..<5 of a text of 3; pass the "
                           + "tokenizer's offsets")
        }
        XCTAssertThrowsError(try TokenEntityGrouping.entityGroups([token], text: "abcdef", labelNames: ["O"])) {
            XCTAssertTrue("\($0)".contains("token 1 has 2 scores for 1 labels"), "\($0)")
        }
    }
}
