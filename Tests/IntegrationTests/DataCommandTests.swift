import Foundation
import XCTest

/// The data commands run as a user runs them: `tokenize` against the reference ids, `vocab`, and
/// `prepare`'s handling of bad input.
final class DataCommandTests: XCTestCase {
    let vocab = Tool.root.appendingPathComponent("corpus/vocab.txt").path

    func testTokenizeGivesTheReferenceIdsLineByLine() throws {
        let fixture = Tool.root.appendingPathComponent("Tests/DataTests/Fixtures/tokenizer/hard-cases.json")
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture)) as? [String: Any]
        let cases = try XCTUnwrap(object?["cases"] as? [[String: Any]])
        // One case per input line: texts that hold line breaks cannot be given line by line.
        let single = cases.filter { !($0["text"] as! String).contains(where: \.isNewline) }
        XCTAssertGreaterThan(single.count, 40)
        for (mode, flags) in [("uncased", [String]()), ("cased", ["--cased"])] {
            let input = single.map { $0["text"] as! String }.joined(separator: "\n") + "\n"
            let result = try Tool.swiftbert(["tokenize", "--vocab", vocab, "--ids"] + flags, input: input)
            XCTAssertEqual(result.status, 0, result.stderr)
            let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            XCTAssertEqual(lines.count, single.count, mode)
            for (line, testCase) in zip(lines, single) {
                let expected = ((testCase[mode] as? [String: Any])?["ids"] as? [Int] ?? []).map(String.init).joined(separator: " ")
                XCTAssertEqual(String(line), expected, "\(mode): \(testCase["text"] as! String)")
            }
        }
    }

    func testTokenizeNamesAMissingVocabulary() throws {
        let result = try Tool.swiftbert(["tokenize", "--vocab", "/nonexistent/vocab.txt"], input: "hello\n")
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("/nonexistent/vocab.txt"), result.stderr)
    }

    func testVocabLearnsAVocabularyWithBertsSpecialTokens() throws {
        let out = TrainingFixture.runDirectory("vocab") + ".txt"
        let result = try Tool.swiftbert(
            ["vocab", "--input", Tool.root.appendingPathComponent("corpus/kjv.txt").path, "--size", "3000", "--out", out])
        XCTAssertEqual(result.status, 0, result.stderr)
        let tokens = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(tokens.count, 3000)
        XCTAssertEqual(tokens[0], "[PAD]")
        XCTAssertEqual(Array(tokens[100...103]), ["[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    }

    /// `vocab --bpe` writes a directory the byte-level tokenizer loads, refuses to replace it without
    /// --overwrite, and rejects WordPiece's flags and sizes with no merge.
    func testVocabBPEWritesATokenizerDirectory() throws {
        let directory = TrainingFixture.runDirectory("vocab-bpe")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let input = Tool.root.appendingPathComponent("Tests/DataTests/Fixtures/corpora/python-docs").path
        let out = directory + "/tokenizer"
        let arguments = ["vocab", "--bpe", "--input", input, "--size", "400", "--out", out]
        let result = try Tool.swiftbert(arguments)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("wrote 400 tokens and 143 merges to \(out)"), result.stdout)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: out).sorted(),
            ["merges.txt", "tokenizer.json", "tokenizer_config.json", "vocab.json"])
        let merges = try String(contentsOfFile: out + "/merges.txt", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(merges.first, "#version: 0.2")
        XCTAssertEqual(merges.count, 144)

        let again = try Tool.swiftbert(arguments)
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("pass --overwrite"), again.stderr)
        let replaced = try Tool.swiftbert(["vocab", "--bpe", "--input", input, "--size", "300", "--out", out, "--overwrite"])
        XCTAssertEqual(replaced.status, 0, replaced.stderr)
        XCTAssertEqual(try String(contentsOfFile: out + "/merges.txt", encoding: .utf8).split(separator: "\n").count, 44)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["tokenizer"])

        for (flags, message) in [(["--size", "400", "--cased"], "--cased is for WordPiece"), (["--size", "257"], "--size must exceed 257")] {
            let failed = try Tool.swiftbert(["vocab", "--bpe", "--input", input, "--out", directory + "/other"] + flags)
            XCTAssertNotEqual(failed.status, 0)
            XCTAssertTrue(failed.stderr.contains(message), failed.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/other"))
    }

    func testPrepareRejectsBadInputWithoutLeavingOutput() throws {
        let directory = TrainingFixture.runDirectory("bad-input")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let empty = directory + "/empty.txt"
        try Data().write(to: URL(fileURLWithPath: empty))
        let binary = directory + "/binary.txt"
        try Data([0x61, 0x62, 0xFF, 0xFE, 0x0A]).write(to: URL(fileURLWithPath: binary))
        let cases: [(input: String, vocab: String, expected: String)] = [
            (empty, vocab, "empty.txt"),
            (binary, vocab, "binary.txt"),
            (Tool.root.appendingPathComponent("corpus/kjv.txt").path, directory + "/missing-vocab.txt", "missing-vocab.txt"),
        ]
        for (index, testCase) in cases.enumerated() {
            let out = directory + "/out-\(index)"
            let result = try Tool.swiftbert(["prepare", "--input", testCase.input, "--vocab", testCase.vocab, "--out", out])
            XCTAssertNotEqual(result.status, 0, testCase.expected)
            XCTAssertTrue(result.stderr.contains(testCase.expected), "\(testCase.expected): \(result.stderr)")
            let left = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains("out-\(index)") }
            XCTAssertEqual(left, [], "\(testCase.expected): output left behind")
        }
    }

    // MARK: - Causal LM

    let bpeTokenizer = Tool.root.appendingPathComponent("Tests/DataTests/Fixtures/bpe/tokenizer.json").path

    func testPrepareCausalLMPacksSequencesAndSaysHowMany() throws {
        let out = TrainingFixture.runDirectory("causal-lm")
        addTeardownBlock { try? FileManager.default.removeItem(atPath: out) }
        let result = try Tool.swiftbert([
            "prepare", "--objective", "causal_lm", "--tokenizer", bpeTokenizer,
            "--input", Tool.root.appendingPathComponent("corpus/kjv.txt").path, "--out", out, "--max-seq-length", "256",
            "--validation-fraction", "0.05", "--overwrite",
        ])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("sequences of 256 tokens"), result.stdout)
        XCTAssertTrue(result.stdout.contains("336 documents"), result.stdout)
        let manifest = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: out + "/manifest.json"))) as? [String: Any])
        XCTAssertEqual(manifest["objective"] as? String, "causal_lm")
        let vocabulary = try XCTUnwrap(manifest["vocabulary"] as? [String: Any])
        XCTAssertEqual(vocabulary["eos_id"] as? Int, 0)
        XCTAssertEqual(vocabulary["file"] as? String, "tokenizer.json")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/tokenizer.json"))
        let train = try XCTUnwrap(manifest["train"] as? [String: Any])
        XCTAssertTrue(result.stdout.contains("\(train["instances"] as! Int) train"), result.stdout)

        let inspect = try Tool.swiftbert(["inspect", out])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains("checksums          OK"), inspect.stdout)
    }

    func testPrepareCausalLMRefusesBERTOptionsAndAMissingTokenizer() throws {
        let directory = TrainingFixture.runDirectory("causal-lm-options")
        addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let kjv = Tool.root.appendingPathComponent("corpus/kjv.txt").path
        let noEndOfText = directory + "/tokenizer.json"
        let text = try String(contentsOfFile: bpeTokenizer, encoding: .utf8)
        try text.replacingOccurrences(of: "<|endoftext|>", with: "<|other|>").write(toFile: noEndOfText, atomically: true, encoding: .utf8)
        let causal = ["prepare", "--objective", "causal_lm", "--input", kjv, "--max-seq-length", "64"]
        let cases: [(arguments: [String], expected: String)] = [
            (causal + ["--tokenizer", bpeTokenizer, "--vocab", vocab], "--vocab is an --objective mlm option"),
            (causal + ["--tokenizer", bpeTokenizer, "--dupe-factor", "5"], "--dupe-factor is an --objective mlm option"),
            (causal + ["--tokenizer", bpeTokenizer, "--whole-word-masking"], "--whole-word-masking is an --objective mlm option"),
            (causal + ["--tokenizer", bpeTokenizer, "--nsp", "none"], "--nsp is an --objective mlm option"),
            (causal, "--tokenizer is required with --objective causal_lm"),
            (["prepare", "--objective", "causal_lm", "--input", kjv, "--tokenizer", bpeTokenizer], "--max-seq-length is required"),
            (["prepare", "--input", kjv, "--vocab", vocab, "--tokenizer", bpeTokenizer], "--tokenizer is for --objective causal_lm"),
            (["prepare", "--input", kjv], "--vocab is required"),
            (["prepare", "--objective", "gpt", "--input", kjv, "--vocab", vocab], "--objective must be one of mlm, causal_lm"),
            (causal + ["--tokenizer", noEndOfText], "has no <|endoftext|> token"),
            (causal + ["--tokenizer", directory + "/missing.json"], "missing.json"),
            (causal + ["--tokenizer", Tool.root.appendingPathComponent("corpus/vocab.txt").path], "vocab.txt"),
        ]
        for (index, testCase) in cases.enumerated() {
            let out = directory + "/out-\(index)"
            let result = try Tool.swiftbert(testCase.arguments + ["--out", out])
            XCTAssertNotEqual(result.status, 0, testCase.expected)
            XCTAssertTrue(result.stderr.contains(testCase.expected), "\(testCase.expected): \(result.stderr)")
            if testCase.expected.contains("<|endoftext|>") {
                XCTAssertTrue(result.stderr.contains(noEndOfText), "names the file: \(result.stderr)")
            }
            let left = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains("out-\(index)") }
            XCTAssertEqual(left, [], "\(testCase.expected): output left behind")
        }
    }
}
