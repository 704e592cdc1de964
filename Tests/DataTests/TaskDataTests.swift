import Crypto
import Foundation
import XCTest
@testable import Data

/// Readers, encoding and collation of labelled data for fine-tuning. Encodings are compared with
/// Hugging Face's BertTokenizerFast (Fixtures/tasks/hf-encodings.json, scripts/make_task_data_fixtures.py).
final class TaskDataTests: XCTestCase {
    static let fixtures = TestPaths.repositoryRoot.appendingPathComponent("Tests/DataTests/Fixtures/tasks")
    static let tokenizer = BertTokenizer(vocabulary: try! Vocabulary(contentsOfFile: TestPaths.vocabulary))

    func fixture(_ name: String) -> String { Self.fixtures.appendingPathComponent(name).path }

    /// Writes `content` to a fresh file named `name` and returns its path.
    func file(_ name: String, _ content: String) throws -> String {
        try file(name, Array(content.utf8))
    }

    func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = try TestPaths.temporaryDirectory(self).appendingPathComponent(name)
        try Foundation.Data(bytes).write(to: url)
        return url.path
    }

    /// Asserts that `body` throws a TaskDataError naming `path`, `line` and `field`, with `phrase` in its message.
    func assertTaskError<T>(
        _ body: @autoclosure () throws -> T, path: String, line: Int?, field: String? = nil, _ phrase: String,
        file: StaticString = #filePath, line sourceLine: UInt = #line
    ) {
        XCTAssertThrowsError(try body(), file: file, line: sourceLine) { error in
            guard let error = error as? TaskDataError else {
                return XCTFail("expected a TaskDataError, got \(error)", file: file, line: sourceLine)
            }
            XCTAssertEqual(error.path, path, file: file, line: sourceLine)
            XCTAssertEqual(error.line, line, "\(error)", file: file, line: sourceLine)
            XCTAssertEqual(error.field, field, "\(error)", file: file, line: sourceLine)
            XCTAssertTrue(error.description.contains(phrase), "'\(phrase)' not in: \(error)", file: file, line: sourceLine)
            XCTAssertFalse(error.description.contains("\n"), file: file, line: sourceLine)
        }
    }

    // MARK: - Encoding against Hugging Face

    struct Reference: Decodable {
        struct Single: Decodable { let text: String; let max_length: Int; let input_ids: [Int32]; let token_type_ids: [Int32] }
        struct Pair: Decodable {
            let text: String; let pair: String; let max_length: Int; let input_ids: [Int32]; let token_type_ids: [Int32]
        }
        struct Words: Decodable {
            let words: [String]; let tags: [Int32]; let max_length: Int
            let input_ids: [Int32]; let word_ids: [Int32]; let labels: [Int32]
        }
        struct Choices: Decodable {
            let context: String; let prefix: String; let endings: [String]; let max_length: Int
            let input_ids: [[Int32]]; let token_type_ids: [[Int32]]
        }
        let singles: [Single]
        let pairs: [Pair]
        let words: [Words]
        let choices: [Choices]
    }

    static let reference = try! JSONDecoder().decode(
        Reference.self, from: Foundation.Data(contentsOf: fixtures.appendingPathComponent("hf-encodings.json")))

    func testSingleTextsMatchHuggingFace() throws {
        for case_ in Self.reference.singles {
            let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: case_.max_length)
            let feature = encoder.encode(TextExample(line: 1, text: case_.text))
            XCTAssertEqual(feature.sequences, [EncodedSequence(inputIDs: case_.input_ids, tokenTypeIDs: case_.token_type_ids)],
                           "\(case_.text.prefix(40)) max_length \(case_.max_length)")
        }
    }

    func testPairTruncationMatchesHuggingFaceLongestFirst() throws {
        XCTAssertGreaterThan(Self.reference.pairs.count, 300)
        for case_ in Self.reference.pairs {
            let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: case_.max_length)
            let sequence = encoder.encode(case_.text, pair: case_.pair)
            XCTAssertEqual(sequence, EncodedSequence(inputIDs: case_.input_ids, tokenTypeIDs: case_.token_type_ids),
                           "'\(case_.text)' + '\(case_.pair)' max_length \(case_.max_length)")
        }
    }

    func testSplitIntoWordsMatchesHuggingFaceLabelsAndWordIDs() throws {
        for case_ in Self.reference.words {
            let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: case_.max_length)
            let feature = encoder.encode(TaggedExample(line: 3, words: case_.words, tags: case_.tags))
            let context = "\(case_.words.prefix(5)) max_length \(case_.max_length)"
            XCTAssertEqual(feature.sequences.map(\.inputIDs), [case_.input_ids], context)
            XCTAssertEqual(feature.sequences[0].tokenTypeIDs, [Int32](repeating: 0, count: case_.input_ids.count), context)
            XCTAssertEqual(feature.wordIDs, case_.word_ids, context)
            XCTAssertEqual(feature.tokenLabels, case_.labels, context)
        }
    }

    func testUntaggedWordsGetIgnoredLabelsEverywhere() throws {
        let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 16)
        let feature = encoder.encode(TaggedExample(line: 1, words: ["Peter", "Blackburn"], tags: []))
        XCTAssertEqual(feature.tokenLabels, [Int32](repeating: ignoredLabel, count: feature.wordIDs.count))
        XCTAssertEqual(feature.wordIDs.first, -1)
        XCTAssertEqual(feature.wordIDs.last, -1)
    }

    func testMultipleChoiceMatchesRunSwag() throws {
        for case_ in Self.reference.choices {
            let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: case_.max_length)
            let feature = encoder.encode(ChoiceExample(line: 1, context: case_.context, questionPrefix: case_.prefix,
                                                       endings: case_.endings, label: 2))
            XCTAssertEqual(feature.sequences.map(\.inputIDs), case_.input_ids)
            XCTAssertEqual(feature.sequences.map(\.tokenTypeIDs), case_.token_type_ids)
            XCTAssertEqual(feature.label, .classIndex(2))
        }
    }

    func testConcurrentEncodingKeepsOrderAndEqualsSerial() throws {
        let examples = (0..<1000).map { TextExample(line: $0 + 1, text: "example number \($0) of many", pair: "pair \($0 * 7)") }
        let serial = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 32, workerCount: 1)
        let expected = examples.map(serial.encode)
        for workers in [1, 3, 8] {
            let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 32, workerCount: workers)
            XCTAssertEqual(encoder.features(examples), expected, "\(workers) workers")
        }
        XCTAssertEqual(serial.features([TextExample]()), [])
    }

    func testMaxLengthBelowThreeIsRejected() {
        XCTAssertThrowsError(try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 2)) { error in
            XCTAssertTrue("\(error)".contains("max_length"), "\(error)")
        }
    }

    // MARK: - Sequence classification readers

    func testCSVQuotingCRLFAndByteOrderMark() throws {
        let data = try TaskReader.readTextExamples(path: fixture("reviews.csv"), options: TextTaskOptions(textField: "sentence"))
        XCTAssertEqual(data.examples.map(\.text), ["a stirring, funny film", "he said \"no\"", "two\r\nlines", "plain text"])
        XCTAssertEqual(data.examples.map(\.line), [2, 3, 5, 7])
        XCTAssertEqual(data.labelNames, ["positive", "negative", "neutral"])
        XCTAssertEqual(data.examples.map(\.label), [.classIndex(0), .classIndex(1), .classIndex(0), .classIndex(2)])
    }

    func testDigitLabelsAreClassIndicesWithNumericNames() throws {
        let data = try TaskReader.readTextExamples(path: fixture("sst.tsv"), options: TextTaskOptions(textField: "sentence"))
        XCTAssertEqual(data.labelNames, ["0", "1", "2"])
        XCTAssertEqual(data.examples.map(\.label), [.classIndex(1), .classIndex(0), .classIndex(2)])
        XCTAssertNil(data.examples[0].pair)
    }

    func testGivenLabelListMapsNamesAndIndices() throws {
        var options = TextTaskOptions(textField: "sentence")
        options.labelNames = ["negative", "positive", "neutral"]
        let reviews = try TaskReader.readTextExamples(path: fixture("reviews.csv"), options: options)
        XCTAssertEqual(reviews.labelNames, ["negative", "positive", "neutral"])
        XCTAssertEqual(reviews.examples.map(\.label), [.classIndex(1), .classIndex(0), .classIndex(1), .classIndex(2)])
        let sst = try TaskReader.readTextExamples(path: fixture("sst.tsv"), options: options)
        XCTAssertEqual(sst.examples.map(\.label), [.classIndex(1), .classIndex(0), .classIndex(2)])
    }

    func testPairFieldsAreFoundByHuggingFaceNames() throws {
        let mnli = try TaskReader.readTextExamples(path: fixture("mnli.jsonl"))
        XCTAssertEqual(mnli.examples.map(\.text), ["A man plays a guitar.", "A cat sleeps.", "Kids at a park."])
        XCTAssertEqual(mnli.examples.map(\.pair), ["A person makes music.", "The cat runs.", "Children are outdoors."])
        XCTAssertEqual(mnli.examples.map(\.line), [1, 2, 4])
        XCTAssertEqual(mnli.labelNames, ["0", "1", "2"])
        XCTAssertEqual(mnli.examples.map(\.label), [.classIndex(0), .classIndex(2), .classIndex(0)])
        let qnli = try file("q.jsonl", #"{"question": "Who?", "sentence": "Me.", "label": "entailment"}"# + "\n")
        let example = try TaskReader.readTextExamples(path: qnli).examples[0]
        XCTAssertEqual([example.text, example.pair], ["Who?", "Me."])
    }

    func testMultiLabelFromArraysAndSeparatedStrings() throws {
        var options = TextTaskOptions()
        options.labelKind = .multiLabel
        options.labelField = "labels"
        let json = try TaskReader.readTextExamples(path: fixture("topics.jsonl"), options: options)
        XCTAssertEqual(json.labelNames, ["finance", "sports"])
        XCTAssertEqual(json.examples.map(\.label), [.classIndices([0, 1]), .classIndices([]), .classIndices([1, 0])])
        options.labelSeparator = "|"
        options.labelNames = ["sports", "finance", "weather"]
        let csv = try TaskReader.readTextExamples(path: fixture("topics.csv"), options: options)
        XCTAssertEqual(csv.examples.map(\.label), [.classIndices([1, 0]), .classIndices([])])
    }

    func testRegressionTargets() throws {
        var options = TextTaskOptions()
        options.labelKind = .regression
        options.labelField = "score"
        let sts = try TaskReader.readTextExamples(path: fixture("sts.csv"), options: options)
        XCTAssertEqual(sts.examples.map(\.label), [.value(5.0), .value(3.8), .value(-0.5)])
        XCTAssertEqual(sts.examples[2].pair, "Nothing alike.")
        XCTAssertEqual(sts.labelNames, [])
    }

    func testLabelTabTextAndOneTextPerLine() throws {
        var options = TextTaskOptions(format: .labelTabText)
        let news = try TaskReader.readTextExamples(path: fixture("news.tsv"), options: options)
        XCTAssertEqual(news.labelNames, ["alt.atheism", "sci.space", "comp.graphics"])
        XCTAssertEqual(news.examples.map(\.text), ["first post text", "second post", "third\tpost with a tab", "fourth"])
        XCTAssertEqual(news.examples.map(\.label), [.classIndex(0), .classIndex(1), .classIndex(2), .classIndex(1)])
        options = TextTaskOptions(format: .lines(label: "pos"))
        options.labelNames = ["neg", "pos"]
        let positive = try TaskReader.readTextExamples(path: fixture("pos.txt"), options: options)
        XCTAssertEqual(positive.examples, [TextExample(line: 1, text: "很好的书", label: .classIndex(1)),
                                           TextExample(line: 3, text: "内容不错", label: .classIndex(1))])
    }

    func testUnlabelledDataForPrediction() throws {
        let path = try file("predict.jsonl", #"{"text": "no label here"}"# + "\n")
        var options = TextTaskOptions()
        options.requiresLabels = false
        XCTAssertEqual(try TaskReader.readTextExamples(path: path, options: options).examples,
                       [TextExample(line: 1, text: "no label here")])
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 1, field: "label", "missing label")
    }

    // MARK: - Token classification readers

    func testCoNLLSkipsDocstartAndTakesTheLastColumn() throws {
        let data = try TaskReader.readTaggedExamples(path: fixture("ner.conll"), options: TaggedTaskOptions(format: .conll))
        XCTAssertEqual(data.labelNames, ["B-ORG", "O", "B-MISC", "B-PER", "I-PER"])
        XCTAssertEqual(data.examples, [
            TaggedExample(line: 3, words: ["EU", "rejects", "German", "call", "."], tags: [0, 1, 2, 1, 1]),
            TaggedExample(line: 9, words: ["Peter", "Blackburn"], tags: [3, 4]),
        ])
    }

    func testWordSlashTagLinesWithIdTokenAndPeoplesDailyEntities() throws {
        var options = TaggedTaskOptions(format: .wordSlashTag(dropsFirstToken: true))
        let pos = try TaskReader.readTaggedExamples(path: fixture("people-daily.txt"), options: options)
        XCTAssertEqual(pos.examples.map(\.line), [1, 2, 4])
        XCTAssertEqual(pos.examples[0].words, ["迈向", "充满", "希望"])
        XCTAssertEqual(pos.examples[2].words, ["邓", "小平", "在", "北京", "上海", "１", "http://a/b"])
        XCTAssertEqual(pos.examples[2].tags.map { pos.labelNames[Int($0)] }, ["nr", "nr", "p", "ns", "ns", "m", "n"])
        options.peoplesDailyEntities = true
        let entities = try TaskReader.readTaggedExamples(path: fixture("people-daily.txt"), options: options)
        let names = { (example: TaggedExample) in example.tags.map { entities.labelNames[Int($0)] } }
        XCTAssertEqual(names(entities.examples[1]), ["B-ORG", "O", "O", "O", "O", "B-PER", "I-PER"])
        XCTAssertEqual(names(entities.examples[2]), ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "O", "O"])
    }

    func testPeoplesDailyEntityTags() {
        XCTAssertEqual(peoplesDailyEntityTags(["nr", "nr", "v", "nr", "ns", "ns", "nt", "nt", "nr"]),
                       ["B-PER", "I-PER", "O", "B-PER", "B-LOC", "B-LOC", "B-ORG", "B-ORG", "B-PER"])
    }

    func testJSONLinesTagsAsIndicesOrNames() throws {
        let conll2003 = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
        var options = TaggedTaskOptions()
        options.labelNames = conll2003
        let indexed = try TaskReader.readTaggedExamples(path: fixture("ner.jsonl"), options: options)
        XCTAssertEqual(indexed.labelNames, conll2003)
        XCTAssertEqual(indexed.examples[0], TaggedExample(line: 1, words: ["EU", "rejects", "German", "call"], tags: [3, 0, 7, 0]))
        let named = try TaskReader.readTaggedExamples(path: fixture("ner-names.jsonl"), options: options)
        XCTAssertEqual(named.examples.map(\.tags), [[1, 2, 0, 5], [5]])
        let readNames = try TaskReader.readTaggedExamples(path: fixture("ner-names.jsonl"))
        XCTAssertEqual(readNames.labelNames, ["B-PER", "I-PER", "O", "B-LOC"])
    }

    // MARK: - Multiple choice readers

    func testSwagAndQuestionChoices() throws {
        let swag = try TaskReader.readChoiceExamples(path: fixture("swag.jsonl"))
        XCTAssertEqual(swag.examples[1], ChoiceExample(
            line: 2, context: "A man is sitting on a roof.", questionPrefix: "He",
            endings: ["is using wrap.", "is ripping tiles off.", "is holding a cube.", "starts pulling up roofing."], label: 3))
        XCTAssertEqual(swag.examples[1].secondText(1), "He is ripping tiles off.")
        let questions = try TaskReader.readChoiceExamples(path: fixture("questions.jsonl"))
        XCTAssertEqual(questions.examples, [
            ChoiceExample(line: 1, context: "Where do fish live?", questionPrefix: "", endings: ["water", "trees", "sky"], label: 0),
            ChoiceExample(line: 2, context: "What is cold?", questionPrefix: "", endings: ["fire", "ice", "sun"], label: 1),
        ])
        XCTAssertEqual(questions.examples[0].secondText(2), "sky")
    }

    // MARK: - Errors

    func testEveryMalformedInputIsOneErrorNamingFileLineAndField() throws {
        var path = try file("empty.csv", " \n\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: nil, "empty")

        path = try file("header.csv", "text,label\n\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: nil, "no examples")

        path = try file("bad.csv", Array("text,label\nok,1\n".utf8) + [0x62, 0xFF, 0x2C, 0x31, 0x0A])
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 3, "invalid UTF-8")

        path = try file("quote.csv", "text,label\n\"fine\",1\n\"never closed,1\nmore,0\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 3, field: "column 1",
                        "unterminated quoted field")

        path = try file("after.csv", "text,label\n\"a\"b,1\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 2, field: "column 1",
                        "after the closing quote")

        path = try file("columns.csv", "text,label\nthree,fields,here\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 2, "3 fields, the header has 2")

        path = try file("missing.tsv", "sentence\tlabel\nhello\t1\n")
        assertTaskError(try TaskReader.readTextExamples(path: path, options: TextTaskOptions(textField: "text")),
                        path: path, line: 2, field: "text", "'sentence', 'label'")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 2, "no text field")

        path = try file("dup.csv", "text,text\na,b\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 1, field: "text", "twice")

        path = try file("type.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": 5, \"label\": 1}\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 2, field: "text", "a number")

        path = try file("syntax.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\" \"label\": 1}\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 2, "invalid JSON")

        path = try file("array.jsonl", "[1, 2]\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 1, "an array")

        path = try file("label.jsonl", "{\"text\": \"a\", \"label\": \"pos\"}\n{\"text\": \"b\", \"label\": \"meh\"}\n")
        var options = TextTaskOptions()
        options.labelNames = ["neg", "pos"]
        assertTaskError(try TaskReader.readTextExamples(path: path, options: options), path: path, line: 2,
                        field: "label", "'meh' is not in the label list")

        path = try file("mixed.jsonl", "{\"text\": \"a\", \"label\": \"pos\"}\n{\"text\": \"b\", \"label\": 1}\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 2, field: "label", "other labels")

        path = try file("fraction.jsonl", "{\"text\": \"a\", \"label\": 1.5}\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 1, field: "label", "not a class index")

        path = try file("list.jsonl", "{\"text\": \"a\", \"label\": [1]}\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: 1, field: "label", "single-label")

        options = TextTaskOptions()
        options.labelKind = .regression
        path = try file("nan.csv", "text,label\na,0.5\nb,nan\n")
        assertTaskError(try TaskReader.readTextExamples(path: path, options: options), path: path, line: 3,
                        field: "label", "not a finite number")
        path = try file("word.csv", "text,label\na,high\n")
        assertTaskError(try TaskReader.readTextExamples(path: path, options: options), path: path, line: 2,
                        field: "label", "'high' is not a number")

        path = try file("news.tsv", "alt.atheism\tok\nno tab here\n")
        assertTaskError(try TaskReader.readTextExamples(path: path, options: TextTaskOptions(format: .labelTabText)),
                        path: path, line: 2, "no tab")

        path = try file("data.txt", "text\n")
        assertTaskError(try TaskReader.readTextExamples(path: path), path: path, line: nil, "cannot tell the format")

        assertTaskError(try TaskReader.readTextExamples(path: "/nonexistent/x.csv"), path: "/nonexistent/x.csv",
                        line: nil, "cannot read")
    }

    func testMalformedTaggedAndChoiceInputs() throws {
        var path = try file("count.jsonl", "{\"tokens\": [\"a\", \"b\"], \"ner_tags\": [0]}\n")
        assertTaskError(try TaskReader.readTaggedExamples(path: path), path: path, line: 1, field: "ner_tags",
                        "2 tokens but 1 tags")

        path = try file("tokens.jsonl", "{\"tokens\": \"a b\", \"ner_tags\": [0]}\n")
        assertTaskError(try TaskReader.readTaggedExamples(path: path), path: path, line: 1, field: "tokens", "expected an array")

        path = try file("tag.jsonl", "{\"tokens\": [\"a\"], \"ner_tags\": [true]}\n")
        assertTaskError(try TaskReader.readTaggedExamples(path: path), path: path, line: 1, field: "ner_tags", "neither")

        path = try file("tags.conll", "EU B-ORG\nrejects\n")
        assertTaskError(try TaskReader.readTaggedExamples(path: path, options: TaggedTaskOptions(format: .conll)),
                        path: path, line: 2, field: "tag", "one column")

        path = try file("unknown.conll", "EU B-ORG\n\nPeter B-PER\nBlackburn I-XYZ\n")
        var conll = TaggedTaskOptions(format: .conll)
        conll.labelNames = ["O", "B-ORG", "B-PER", "I-PER"]
        assertTaskError(try TaskReader.readTaggedExamples(path: path, options: conll), path: path, line: 4, field: "tag",
                        "'I-XYZ' is not in the label list")

        path = try file("docstart.conll", "-DOCSTART- -X- O O\n\n")
        assertTaskError(try TaskReader.readTaggedExamples(path: path, options: TaggedTaskOptions(format: .conll)),
                        path: path, line: nil, "no examples")

        path = try file("pd.txt", "迈向/v  充满/v\n希望  的/u\n")
        assertTaskError(try TaskReader.readTaggedExamples(path: path, options: TaggedTaskOptions(format: .wordSlashTag(dropsFirstToken: false))),
                        path: path, line: 2, field: "tag", "'希望' is not word/TAG")

        path = try file("tags.jsonl", "{\"tokens\": [\"a\"], \"ner_tags\": [\"B-XYZ\"]}\n")
        var options = TaggedTaskOptions()
        options.labelNames = ["O", "B-PER"]
        assertTaskError(try TaskReader.readTaggedExamples(path: path, options: options), path: path, line: 1,
                        field: "ner_tags", "'B-XYZ' is not in the label list")

        path = try file("ner.csv", "tokens,ner_tags\na,0\n")
        assertTaskError(try TaskReader.readTaggedExamples(path: path), path: path, line: nil, "JSON lines")

        path = try file("swag.jsonl", "{\"sent1\": \"a\", \"sent2\": \"b\", \"ending0\": \"c\", \"ending1\": \"d\", \"label\": 2}\n")
        assertTaskError(try TaskReader.readChoiceExamples(path: path), path: path, line: 1, field: "label",
                        "not the index of a choice")

        path = try file("choices.jsonl", "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"label\": 0}\n"
                            + "{\"question\": \"q\", \"choices\": [\"a\"], \"label\": 0}\n")
        assertTaskError(try TaskReader.readChoiceExamples(path: path), path: path, line: 2, field: "choices",
                        "1 choices, line 1 has 2")
    }

    // MARK: - Collation

    func testDynamicPaddingToTheLongestSequence() throws {
        let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 64)
        let features = encoder.features([TextExample(line: 1, text: "short", label: .classIndex(1)),
                                         TextExample(line: 2, text: "a bit longer text", pair: "and a pair", label: .classIndex(0))])
        let batch = PaddedBatch(features: features, padID: Self.tokenizer.vocabulary.padID)
        let (short, long) = (features[0].sequences[0], features[1].sequences[0])
        XCTAssertEqual(batch.sequenceCount, 2)
        XCTAssertEqual(batch.sequenceLength, long.inputIDs.count)
        XCTAssertEqual(batch.sequencesPerExample, 1)
        let padding = long.inputIDs.count - short.inputIDs.count
        XCTAssertGreaterThan(padding, 0)
        XCTAssertEqual(batch.inputIDs, short.inputIDs + [Int32](repeating: 0, count: padding) + long.inputIDs)
        XCTAssertEqual(batch.tokenTypeIDs, short.tokenTypeIDs + [Int32](repeating: 0, count: padding) + long.tokenTypeIDs)
        XCTAssertEqual(batch.attentionMask, [Int32](repeating: 1, count: short.inputIDs.count)
                           + [Int32](repeating: 0, count: padding) + [Int32](repeating: 1, count: long.inputIDs.count))
        XCTAssertEqual(batch.labels, .classIndices([1, 0]))
    }

    func testBatchLabelShapes() throws {
        let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 16)
        let padID = Self.tokenizer.vocabulary.padID
        let multi = encoder.features([TextExample(line: 1, text: "a", label: .classIndices([2, 0])),
                                      TextExample(line: 2, text: "b", label: .classIndices([]))])
        XCTAssertEqual(PaddedBatch(features: multi, padID: padID, labelCount: 3).labels, .multiHot([1, 0, 1, 0, 0, 0], labelCount: 3))
        let values = encoder.features([TextExample(line: 1, text: "a", label: .value(0.5)), TextExample(line: 2, text: "b", label: .value(-2))])
        XCTAssertEqual(PaddedBatch(features: values, padID: padID).labels, .values([0.5, -2]))
        let unlabelled = encoder.features([TextExample(line: 1, text: "a", label: .value(0.5)), TextExample(line: 2, text: "b")])
        XCTAssertEqual(PaddedBatch(features: unlabelled, padID: padID).labels, .none)

        let tagged = encoder.features([TaggedExample(line: 1, words: ["Peter", "Blackburn", "visits"], tags: [1, 2, 0]),
                                       TaggedExample(line: 2, words: ["Paris"], tags: [5])])
        let batch = PaddedBatch(features: tagged, padID: padID)
        let length = batch.sequenceLength
        XCTAssertEqual(length, tagged[0].tokenLabels.count)
        guard case let .tokenLabels(labels) = batch.labels else { return XCTFail("\(batch.labels)") }
        XCTAssertEqual(labels, tagged[0].tokenLabels + tagged[1].tokenLabels
                           + [Int32](repeating: ignoredLabel, count: length - tagged[1].tokenLabels.count))
        XCTAssertEqual(labels[length + 1], 5)
    }

    func testMultipleChoiceBatchesFlattenChoices() throws {
        let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 32)
        let data = try TaskReader.readChoiceExamples(path: fixture("swag.jsonl"))
        let features = encoder.features(data.examples)
        let batch = PaddedBatch(features: features, padID: Self.tokenizer.vocabulary.padID)
        XCTAssertEqual(batch.sequenceCount, 8)
        XCTAssertEqual(batch.sequencesPerExample, 4)
        XCTAssertEqual(batch.labels, .classIndices([0, 3]))
        let row5 = features[1].sequences[1].inputIDs
        XCTAssertEqual(Array(batch.inputIDs[(5 * batch.sequenceLength)..<(5 * batch.sequenceLength + row5.count)]), row5)
    }

    // MARK: - Feature cache

    /// A copy of fixture `name` in a fresh directory (the cache is written beside it).
    func copiedFixture(_ name: String) throws -> String {
        let path = try TestPaths.temporaryDirectory(self).appendingPathComponent(name).path
        try FileManager.default.copyItem(atPath: fixture(name), toPath: path)
        return path
    }

    func testFeatureCacheIsWrittenBesideTheDataAndReused() throws {
        let path = try copiedFixture("mnli.jsonl")
        let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 16)
        let first = try encoder.cachedFeatures(path: path, options: TextTaskOptions())
        XCTAssertFalse(first.fromCache)
        let cachePath = try XCTUnwrap(first.cachePath)
        XCTAssertEqual(URL(fileURLWithPath: cachePath).deletingLastPathComponent(), URL(fileURLWithPath: path).deletingLastPathComponent())
        let data = try TaskReader.readTextExamples(path: path)
        XCTAssertEqual(first.features, encoder.features(data.examples))
        XCTAssertEqual(first.labelNames, data.labelNames)
        let second = try encoder.cachedFeatures(path: path, options: TextTaskOptions())
        XCTAssertTrue(second.fromCache)
        XCTAssertEqual(second.features, first.features)
        XCTAssertEqual(second.labelNames, first.labelNames)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path).count, 2,
                       "no temporary file left behind")
    }

    func testFeatureCacheRoundTripsEveryLabelShape() throws {
        let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 24)
        var regression = TextTaskOptions()
        regression.labelKind = .regression
        regression.labelField = "score"
        var multi = TextTaskOptions()
        multi.labelKind = .multiLabel
        multi.labelField = "labels"
        let sets = [
            try encoder.cachedFeatures(path: try copiedFixture("sts.csv"), options: regression),
            try encoder.cachedFeatures(path: try copiedFixture("topics.jsonl"), options: multi),
            try encoder.cachedFeatures(path: try copiedFixture("ner.conll"), options: TaggedTaskOptions(format: .conll)),
            try encoder.cachedFeatures(path: try copiedFixture("swag.jsonl"), options: ChoiceTaskOptions()),
        ]
        for set in sets {
            let path = try XCTUnwrap(set.cachePath)
            let reread = try XCTUnwrap(FeatureCache.decode([UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: path))),
                                                           key: Self.key(of: path, set)))
            XCTAssertEqual(reread.0, set.features, path)
            XCTAssertEqual(reread.1, set.labelNames, path)
        }
    }

    /// The key stored in the header of the cache file at `path`.
    static func key(of path: String, _ set: TaskFeatureSet) throws -> [UInt8] {
        Array([UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: path)))[8..<40])
    }

    func testFeatureCacheKeyChangesWithDataAndSettings() throws {
        let path = try copiedFixture("sst.tsv")
        let options = TextTaskOptions(textField: "sentence")
        let encoder16 = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 16)
        let original = try encoder16.cachedFeatures(path: path, options: options)
        let shorter = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 4).cachedFeatures(path: path, options: options)
        XCTAssertFalse(shorter.fromCache)
        XCTAssertNotEqual(shorter.cachePath, original.cachePath)
        XCTAssertEqual(shorter.features[0].sequences[0].inputIDs.count, 4)
        var listed = options
        listed.labelNames = ["2", "1", "0"]
        let relabelled = try encoder16.cachedFeatures(path: path, options: listed)
        XCTAssertFalse(relabelled.fromCache)
        XCTAssertEqual(relabelled.features[0].label, .classIndex(1))
        XCTAssertEqual(relabelled.features[1].label, .classIndex(2))

        try Foundation.Data("idx\tsentence\tlabel\n0\tnew text\t1\n".utf8).write(to: URL(fileURLWithPath: path))
        let changed = try encoder16.cachedFeatures(path: path, options: options)
        XCTAssertFalse(changed.fromCache)
        XCTAssertNotEqual(changed.cachePath, original.cachePath)
        XCTAssertEqual(changed.features.count, 1)
    }

    func testDamagedOrTruncatedCacheIsRecomputed() throws {
        let path = try copiedFixture("ner.jsonl")
        let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 16)
        let original = try encoder.cachedFeatures(path: path, options: TaggedTaskOptions())
        let cachePath = try XCTUnwrap(original.cachePath)
        let bytes = [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: cachePath)))
        var damaged = bytes
        damaged[bytes.count - 5] ^= 0x01
        for broken in [damaged, Array(bytes.dropLast(3)), Array(bytes.prefix(20)), []] {
            try Foundation.Data(broken).write(to: URL(fileURLWithPath: cachePath))
            let reloaded = try encoder.cachedFeatures(path: path, options: TaggedTaskOptions())
            XCTAssertFalse(reloaded.fromCache)
            XCTAssertEqual(reloaded.features, original.features)
            XCTAssertEqual([UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: cachePath))), bytes, "rewritten whole")
        }
    }

    func testCachedLoadReportsReaderErrors() throws {
        let path = try file("bad.jsonl", "{\"text\": \"a\"}\n")
        let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 16)
        assertTaskError(try encoder.cachedFeatures(path: path, options: TextTaskOptions()), path: path, line: 1,
                        field: "label", "missing label")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path),
                       ["bad.jsonl"], "no cache for data that fails")
    }

    // MARK: - Real data (../shared/tasks, where present)

    /// Set to ../shared/tasks (where it exists) to read the project's real labelled data whole.
    static let sharedTasksVariable = "SWIFTBERT_SHARED_TASKS"

    func testSharedTaskDataReadsWholeAndEncodes() throws {
        guard let root = ProcessInfo.processInfo.environment[Self.sharedTasksVariable] else {
            // The whole files are not in the repository: .ci/run runs this test again, with the
            // variable set, where ../shared/tasks exists (CI has it).
            throw XCTSkip("\(Self.sharedTasksVariable) is not set: .ci/run's step 2 runs this on ../shared/tasks")
        }
        let tasks = URL(fileURLWithPath: root)
        let readStart = DispatchTime.now().uptimeNanoseconds
        // Counts from ../shared/tasks/README.md.
        let train = try TaskReader.readTextExamples(path: tasks.appendingPathComponent("20newsgroups/train.tsv").path,
                                                    options: TextTaskOptions(format: .labelTabText))
        XCTAssertEqual(train.examples.count, 11_293)
        XCTAssertEqual(train.labelNames.count, 20)
        var testOptions = TextTaskOptions(format: .labelTabText)
        testOptions.labelNames = train.labelNames
        XCTAssertEqual(try TaskReader.readTextExamples(path: tasks.appendingPathComponent("20newsgroups/test.tsv").path,
                                                       options: testOptions).examples.count, 7_528)
        // neg.txt's line 11014 holds only ideographic spaces: no text, so no example.
        for (file, count) in [("pos", 16_548), ("neg", 18_575)] {
            var options = TextTaskOptions(format: .lines(label: file))
            options.labelNames = ["neg", "pos"]
            let reviews = try TaskReader.readTextExamples(path: tasks.appendingPathComponent("zh-sentiment/\(file).txt").path,
                                                          options: options)
            XCTAssertEqual(reviews.examples.count, count, file)
        }
        var options = TaggedTaskOptions(format: .wordSlashTag(dropsFirstToken: false))
        options.peoplesDailyEntities = true
        let dailyPath = tasks.appendingPathComponent("people-daily-1998/199801.txt").path
        let daily = try TaskReader.readTaggedExamples(path: dailyPath, options: options)
        XCTAssertEqual(daily.examples.count, 19_484)
        print("read the five files in \(String(format: "%.2f", Double(DispatchTime.now().uptimeNanoseconds - readStart) / 1e9)) s")

        // Digests of BertTokenizerFast's encodings of the same data (scripts/make_task_data_fixtures.py
        // --shared-digests): every id, token type, word id and label of every example.
        struct Digest: Decodable { let examples: Int; let max_length: Int; let sha256: String; let label_names: [String]? }
        let digests = try JSONDecoder().decode([String: Digest].self, from: Foundation.Data(
            contentsOf: Self.fixtures.appendingPathComponent("shared-task-digests.json")))
        let encoder = try TaskEncoder(tokenizer: Self.tokenizer, maxLength: 128)
        for (file, examples) in [("20newsgroups/train.tsv", { encoder.features(train.examples) }),
                                 ("people-daily-1998/199801.txt", { encoder.features(daily.examples) })] {
            let expected = try XCTUnwrap(digests[file])
            XCTAssertEqual(expected.max_length, encoder.maxLength)
            let start = DispatchTime.now().uptimeNanoseconds
            let features = examples()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            var hasher = SHA256()
            func update(_ values: [Int32]) {
                for value in values + [-1] { withUnsafeBytes(of: value.littleEndian) { hasher.update(bufferPointer: $0) } }
            }
            for feature in features {
                update(feature.sequences[0].inputIDs)
                update(feature.sequences[0].tokenTypeIDs)
                if !feature.wordIDs.isEmpty {
                    update(feature.wordIDs)
                    update(feature.tokenLabels)
                }
            }
            XCTAssertEqual(features.count, expected.examples, file)
            XCTAssertEqual(hasher.finalize().map { String(format: "%02x", $0) }.joined(), expected.sha256, file)
            if let names = expected.label_names { XCTAssertEqual(daily.labelNames, names) }
            let tokens = features.reduce(0) { $0 + $1.sequences[0].inputIDs.count }
            print("\(file): \(features.count) examples, \(tokens) tokens encoded in \(String(format: "%.2f", seconds)) s")
        }

        // The cache over real data: a copy (nothing is written beside ../shared), cold then warm.
        let copy = try TestPaths.temporaryDirectory(self).appendingPathComponent("train.tsv").path
        try FileManager.default.copyItem(atPath: tasks.appendingPathComponent("20newsgroups/train.tsv").path, toPath: copy)
        var timings: [String] = []
        for expectedFromCache in [false, true] {
            let start = DispatchTime.now().uptimeNanoseconds
            let set = try encoder.cachedFeatures(path: copy, options: TextTaskOptions(format: .labelTabText))
            timings.append(String(format: "%.2f s", Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
            XCTAssertEqual(set.fromCache, expectedFromCache)
            XCTAssertEqual(set.features, encoder.features(train.examples))
        }
        print("20newsgroups/train.tsv through the cache: \(timings[0]) cold, \(timings[1]) warm")
    }
}
