import Foundation
import XCTest

/// `swiftbert fill-mask` and `swiftbert embed`, run as a user runs them, against what transformers
/// computed on the same model directory (Tests/TransformerTests/Fixtures, written by
/// scripts/make_transformer_fixtures.py): the fill-mask pipeline's top-k and the last hidden states.
final class InferenceCommandTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = repository.appendingPathComponent("Tests/TransformerTests/Fixtures")
    static let model = fixtures.appendingPathComponent("hf-tiny").path

    /// The swiftbert binary: $SWIFTBERT_BINARY, else the one built beside this test bundle (the same
    /// build configuration and scratch path), else the repository's .build/{release,debug}.
    static func binary() throws -> String {
        if let path = ProcessInfo.processInfo.environment["SWIFTBERT_BINARY"] { return path }
        var candidates: [URL] = []
        for anchor in [Bundle.main.bundleURL, URL(fileURLWithPath: CommandLine.arguments[0])] + Bundle.allBundles.map(\.bundleURL) {
            var directory = anchor
            for _ in 0..<3 {
                candidates.append(directory.appendingPathComponent("swiftbert"))
                directory.deleteLastPathComponent()
            }
        }
        candidates += ["release", "debug"].map { repository.appendingPathComponent(".build/\($0)/swiftbert") }
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate.path) {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                return candidate.path
            }
        }
        throw BinaryNotFound(searched: candidates.map(\.path))
    }

    struct BinaryNotFound: Error, CustomStringConvertible {
        let searched: [String]
        var description: String { "no swiftbert binary at \(searched); build it or set SWIFTBERT_BINARY" }
    }

    struct Run {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    func swiftbert(_ arguments: [String], stdin: Data? = nil) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.binary())
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let input = Pipe()
        process.standardInput = input
        try process.run()
        // Written from another thread so that a child writing much output before reading all its
        // input cannot block both.
        DispatchQueue.global().async {
            if let stdin { input.fileHandleForWriting.write(stdin) }
            try? input.fileHandleForWriting.close()
        }
        // Read before waiting so a large output cannot fill the pipe and block the child.
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    // MARK: - fill-mask

    struct Prediction: Decodable, Equatable {
        let score: Double
        let token: Int
        let token_str: String
        let sequence: String
    }

    /// A pipeline answer: one list, or one list per [MASK].
    enum Answer: Decodable {
        case single([Prediction])
        case several([[Prediction]])

        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let single = try? container.decode([Prediction].self) {
                self = .single(single)
            } else {
                self = .several(try container.decode([[Prediction]].self))
            }
        }

        var lists: [[Prediction]] {
            switch self {
            case .single(let list): return [list]
            case .several(let lists): return lists
            }
        }
    }

    struct FillMaskCase: Decodable {
        let text: String
        let top_k: Int
        let output: Answer
    }

    func testFillMaskMatchesTransformersPipeline() throws {
        try checkFillMask(model: Self.model, expectations: "hf-tiny-fill-mask.json", atLeast: 8)
    }

    func testFillMaskAppliesTokenizerCleanUpSetting() throws {
        // tokenizer_config.json with "clean_up_tokenization_spaces": true, as bert-base-uncased has.
        let model = Self.fixtures.appendingPathComponent("hf-tiny-cleanup").path
        try checkFillMask(model: model, expectations: "hf-tiny-cleanup-fill-mask.json", atLeast: 4)
    }

    func checkFillMask(model: String, expectations: String, atLeast minimum: Int) throws {
        let cases = try JSONDecoder().decode(
            [FillMaskCase].self, from: Data(contentsOf: Self.fixtures.appendingPathComponent(expectations)))
        XCTAssertGreaterThanOrEqual(cases.count, minimum)
        for item in cases {
            let run = try swiftbert(["fill-mask", "--model", model, "--top-k", "\(item.top_k)", "--json", item.text])
            XCTAssertEqual(run.status, 0, "\(item.text): \(run.stderr)")
            let answer = try JSONDecoder().decode(Answer.self, from: Data(run.stdout.utf8))
            if case .single = item.output {
                guard case .single = answer else { return XCTFail("\(item.text): expected one list, got \(run.stdout)") }
            }
            XCTAssertEqual(answer.lists.count, item.output.lists.count, item.text)
            for (actual, expected) in zip(answer.lists, item.output.lists) {
                XCTAssertEqual(actual.map(\.token), expected.map(\.token), "top-k ids of \(item.text)")
                XCTAssertEqual(actual.map(\.token_str), expected.map(\.token_str), "token_str of \(item.text)")
                XCTAssertEqual(actual.map(\.sequence), expected.map(\.sequence), "sequence of \(item.text)")
                for (a, e) in zip(actual, expected) {
                    XCTAssertEqual(a.score, e.score, accuracy: 1e-5, "score of \(e.token_str) in \(item.text)")
                }
            }
        }
    }

    func testFillMaskTableOutput() throws {
        let run = try swiftbert(["fill-mask", "--model", Self.model, "--top-k", "2", "Paris is the capital of [MASK]."])
        XCTAssertEqual(run.status, 0, run.stderr)
        let lines = run.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        // The pipeline's first two for this text (hf-tiny-fill-mask.json).
        XCTAssertTrue(lines[0].hasSuffix("paris is the capital of what."), String(lines[0]))
        XCTAssertTrue(lines[1].hasSuffix("paris is the capital of record."), String(lines[1]))
    }

    func testFillMaskErrors() throws {
        let noMask = try swiftbert(["fill-mask", "--model", Self.model, "no mask here"])
        XCTAssertNotEqual(noMask.status, 0)
        XCTAssertTrue(noMask.stderr.contains("[MASK]"), noMask.stderr)
        let missing = try swiftbert(["fill-mask", "--model", "/nonexistent/model", "a [MASK]"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/nonexistent/model"), missing.stderr)
        let topK = try swiftbert(["fill-mask", "--model", Self.model, "--top-k", "0", "a [MASK]"])
        XCTAssertNotEqual(topK.status, 0)
        XCTAssertTrue(topK.stderr.contains("--top-k"), topK.stderr)
    }

    func testFillMaskOnHeadlessModelPrintsNotice() throws {
        let headless = Self.fixtures.appendingPathComponent("hf-tiny-headless").path
        let run = try swiftbert(["fill-mask", "--model", headless, "--top-k", "1", "a [MASK] test"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stderr.contains("cls.predictions.transform.dense.weight"), run.stderr)
    }

    // MARK: - embed

    struct EmbeddingCase: Decodable {
        let text: String
        let cls: [Float]
        let mean: [Float]
    }

    struct EmbedLine: Decodable {
        let text: String
        let embedding: [Float]
    }

    func testEmbedMatchesTransformersHiddenStates() throws {
        let cases = try JSONDecoder().decode(
            [EmbeddingCase].self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("hf-tiny-embeddings.json")))
        for pooling in ["cls", "mean"] {
            // All texts in one batch of different lengths (padding), and in batches of one.
            for batchSize in ["16", "1"] {
                let run = try swiftbert(["embed", "--model", Self.model, "--pooling", pooling, "--batch-size", batchSize, "--json"] + cases.map(\.text))
                XCTAssertEqual(run.status, 0, run.stderr)
                let lines = try run.stdout.split(separator: "\n").map { try JSONDecoder().decode(EmbedLine.self, from: Data($0.utf8)) }
                XCTAssertEqual(lines.map(\.text), cases.map(\.text))
                for (line, item) in zip(lines, cases) {
                    let expected = pooling == "cls" ? item.cls : item.mean
                    XCTAssertEqual(line.embedding.count, expected.count)
                    let worst = zip(line.embedding, expected).map { abs($0 - $1) }.max() ?? .infinity
                    XCTAssertLessThanOrEqual(worst, 1e-4, "\(pooling) embedding of \(item.text), batch \(batchSize)")
                }
            }
        }
    }

    func testEmbedPlainOutputHasOneVectorPerText() throws {
        let run = try swiftbert(["embed", "--model", Self.model, "first text", "second"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let lines = run.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        XCTAssertEqual(lines[0], "first text")
        XCTAssertEqual(lines[1].split(separator: " ").compactMap { Float($0) }.count, 64)
        XCTAssertEqual(lines[2], "second")
        let bad = try swiftbert(["embed", "--model", Self.model, "--pooling", "max", "text"])
        XCTAssertNotEqual(bad.status, 0)
    }

    // MARK: - Texts from files, batches of mixed lengths

    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("inference-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    /// Writes `bytes` to a file of the scratch directory and returns its path.
    func file(_ name: String, _ bytes: Data) throws -> String {
        let url = scratch.appendingPathComponent(name)
        try bytes.write(to: url)
        return url.path
    }

    /// scripts/make_embed_fixtures.py: transformers' vectors of texts of 2-170 tokens run as one padded,
    /// truncated batch.
    struct BatchFixture: Decodable {
        struct Text: Decodable {
            let text: String
            let tokens: Int
            let cls: [Float]
            let mean: [Float]
        }
        let max_length: Int
        let texts: [Text]
    }

    func batchFixture() throws -> BatchFixture {
        try JSONDecoder().decode(BatchFixture.self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("hf-tiny-embed-batch.json")))
    }

    func embedLines(_ run: Run) throws -> [EmbedLine] {
        XCTAssertEqual(run.status, 0, run.stderr)
        return try run.stdout.split(separator: "\n").map { try JSONDecoder().decode(EmbedLine.self, from: Data($0.utf8)) }
    }

    func testEmbedBatchesOfMixedLengthsMatchTextsAloneAndTransformers() throws {
        let fixture = try batchFixture()
        XCTAssertTrue(fixture.texts.contains { $0.tokens > fixture.max_length }, "the fixture must need --truncate")
        let input = try file("texts.txt", Data(fixture.texts.map(\.text).joined(separator: "\n").utf8))
        for pooling in ["cls", "mean"] {
            // Batches of 4 mix lengths (sorted, padded to each batch's longest); batches of 1 run each text alone.
            let batched = try embedLines(swiftbert(
                ["embed", "--model", Self.model, "--pooling", pooling, "--batch-size", "4", "--truncate", "--json", "--input", input]))
            let alone = try embedLines(swiftbert(
                ["embed", "--model", Self.model, "--pooling", pooling, "--batch-size", "1", "--truncate", "--json", "--input", input]))
            XCTAssertEqual(batched.map(\.text), fixture.texts.map(\.text), "output in input order")
            XCTAssertEqual(alone.map(\.text), fixture.texts.map(\.text))
            for ((b, a), reference) in zip(zip(batched, alone), fixture.texts) {
                let expected = pooling == "cls" ? reference.cls : reference.mean
                XCTAssertEqual(b.embedding.count, expected.count)
                let toAlone = zip(b.embedding, a.embedding).map { abs($0 - $1) }.max() ?? .infinity
                let toReference = zip(b.embedding, expected).map { abs($0 - $1) }.max() ?? .infinity
                XCTAssertLessThanOrEqual(toAlone, 1e-5, "\(pooling) of \(reference.tokens)-token text: batched vs alone")
                XCTAssertLessThanOrEqual(toReference, 1e-4, "\(pooling) of \(reference.tokens)-token text vs transformers")
            }
        }
    }

    func testEmbedReadsJSONLinesFromStandardInput() throws {
        let fixture = try batchFixture()
        let lines = try fixture.texts.map { String(decoding: try JSONEncoder().encode(["id": "x", "text": $0.text]), as: UTF8.self) }
        let fromStdin = try swiftbert(
            ["embed", "--model", Self.model, "--pooling", "mean", "--truncate", "--json", "--input", "-", "--format", "jsonl"],
            stdin: Data((lines.joined(separator: "\r\n") + "\r\n").utf8))
        let fromFile = try swiftbert(
            ["embed", "--model", Self.model, "--pooling", "mean", "--truncate", "--json", "--input",
             try file("texts.txt", Data(fixture.texts.map(\.text).joined(separator: "\n").utf8))])
        XCTAssertEqual(try embedLines(fromStdin).map(\.text), fixture.texts.map(\.text))
        XCTAssertEqual(fromStdin.stdout, fromFile.stdout)
    }

    func testEmbedInputErrorsNameFileAndLineAndPrintNothing() throws {
        let fixture = try batchFixture()
        let long = fixture.texts.firstIndex { $0.tokens > fixture.max_length }!
        let texts = try file("texts.txt", Data(fixture.texts.map(\.text).joined(separator: "\n").utf8))
        let utf8 = try file("latin1.txt", Data("good line\n".utf8) + Data([0x63, 0x61, 0x66, 0xE9, 0x0A]))
        let json = try file("bad.jsonl", Data("{\"text\": \"fine\"}\n{\"text\": \"unclosed\n".utf8))
        let notString = try file("number.jsonl", Data("{\"text\": \"fine\"}\n{\"text\": \"fine\"}\n{\"text\": 3}\n".utf8))
        let noText = try file("notext.jsonl", Data("{\"body\": \"x\"}\n".utf8))
        let empty = try file("empty.txt", Data())
        let cases: [(arguments: [String], expected: [String])] = [
            (["--input", texts], ["\(texts) line \(long + 1)", "\(fixture.texts[long].tokens) tokens", "--truncate"]),
            (["--input", texts, "--max-length", "4", "--truncate"], []),
            (["--input", texts, "--max-length", "129"], ["--max-length 129", "max_position_embeddings (128)"]),
            (["--input", utf8], ["\(utf8) line 2", "UTF-8"]),
            (["--input", json, "--format", "jsonl"], ["\(json) line 2", "JSON"]),
            (["--input", notString, "--format", "jsonl"], ["\(notString) line 3", "\"text\" is not a string"]),
            (["--input", noText, "--format", "jsonl"], ["\(noText) line 1", "no \"text\""]),
            (["--input", empty], ["\(empty) is empty"]),
            (["--input", scratch.appendingPathComponent("absent.txt").path], ["absent.txt"]),
            (["--input", texts, "also an argument"], ["not both"]),
            ([], ["--input"]),
        ]
        for (arguments, expected) in cases {
            let run = try swiftbert(["embed", "--model", Self.model, "--json"] + arguments)
            if expected.isEmpty {
                // --max-length 4 with --truncate: every text cut to [CLS] + 2 tokens + [SEP].
                XCTAssertEqual(try embedLines(run).count, fixture.texts.count)
                continue
            }
            XCTAssertNotEqual(run.status, 0, "\(arguments): \(run.stderr)")
            XCTAssertEqual(run.stdout, "", "\(arguments): no partial output")
            for fragment in expected {
                XCTAssertTrue(run.stderr.contains(fragment), "\(arguments): expected '\(fragment)' in \(run.stderr)")
            }
            XCTAssertFalse(run.stderr.contains("Fatal error"), run.stderr)
        }
    }

    func testFillMaskReadsTextsFromFileInBatches() throws {
        let cases = try JSONDecoder().decode(
            [FillMaskCase].self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("hf-tiny-fill-mask.json")))
        let k = cases.map(\.top_k).min()!
        let lines = try cases.map { String(decoding: try JSONEncoder().encode(["text": $0.text]), as: UTF8.self) }
        let input = try file("masks.jsonl", Data(lines.joined(separator: "\n").utf8))
        let run = try swiftbert(
            ["fill-mask", "--model", Self.model, "--top-k", "\(k)", "--batch-size", "3", "--json", "--input", input, "--format", "jsonl"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let answers = try run.stdout.split(separator: "\n").map { try JSONDecoder().decode(Answer.self, from: Data($0.utf8)) }
        XCTAssertEqual(answers.count, cases.count)
        for (answer, item) in zip(answers, cases) {
            XCTAssertEqual(answer.lists.count, item.output.lists.count, item.text)
            for (actual, expected) in zip(answer.lists, item.output.lists) {
                let top = Array(expected.prefix(k))
                XCTAssertEqual(actual.map(\.token), top.map(\.token), "top-\(k) ids of \(item.text)")
                XCTAssertEqual(actual.map(\.sequence), top.map(\.sequence), "sequence of \(item.text)")
                for (a, e) in zip(actual, top) {
                    XCTAssertEqual(a.score, e.score, accuracy: 1e-5, "score of \(e.token_str) in \(item.text)")
                }
            }
        }

        let noMask = try swiftbert(["fill-mask", "--model", Self.model, "--input", "-"], stdin: Data("a [MASK]\nno mask\n".utf8))
        XCTAssertEqual(noMask.status, 1)
        XCTAssertEqual(noMask.stdout, "")
        XCTAssertTrue(noMask.stderr.contains("standard input line 2 has no [MASK]"), noMask.stderr)
    }
}
