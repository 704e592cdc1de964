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

    func swiftbert(_ arguments: [String]) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.binary())
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
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
}
