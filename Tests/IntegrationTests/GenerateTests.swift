import Foundation
import XCTest

/// `swiftbert generate` as a user runs it, on the GPT-2 directory transformers wrote with a byte-level
/// BPE tokenizer (Tests/TransformerTests/Fixtures/gpt2/tiny-bpe): the greedy text of each prompt is
/// transformers' (text-generate.json), batched or alone; bad input is one clear error.
final class GenerateTests: XCTestCase {
    static let fixtures = Tool.root.appendingPathComponent("Tests/TransformerTests/Fixtures/gpt2").path
    static let model = fixtures + "/tiny-bpe"

    struct Expected: Decodable {
        struct Result: Decodable {
            let prompt: String
            let tokens: [Int]
            let generated_text: String
        }
        let max_new_tokens: Int
        let results: [Result]
    }

    func testGreedyTextMatchesTransformers() throws {
        let expected = try JSONDecoder().decode(
            Expected.self, from: Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/text-generate.json")))
        let run = try Tool.swiftbert(
            ["generate", "--model", Self.model, "--max-new-tokens", "\(expected.max_new_tokens)", "--json"] + expected.results.map(\.prompt))
        XCTAssertEqual(run.status, 0, run.stderr)
        let lines = run.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, expected.results.count)
        for (line, result) in zip(lines, expected.results) {
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            XCTAssertEqual(object["generated_text"] as? String, result.generated_text)
            XCTAssertEqual(object["tokens"] as? [Int], result.tokens)
        }
        let alone = try Tool.swiftbert(["generate", "--model", Self.model, "--max-new-tokens", "\(expected.max_new_tokens)", expected.results[1].prompt])
        XCTAssertEqual(alone.status, 0, alone.stderr)
        XCTAssertEqual(alone.stdout, expected.results[1].generated_text + "\n")
        // A stop string cuts the text before it.
        let stopped = try Tool.swiftbert(["generate", "--model", Self.model, "--max-new-tokens", "\(expected.max_new_tokens)",
                                          "--stop", " land", expected.results[0].prompt])
        XCTAssertEqual(stopped.status, 0, stopped.stderr)
        XCTAssertEqual(stopped.stdout, expected.results[0].prompt + "\n")
    }

    func testSamplingIsReproducibleFromTheSeed() throws {
        func sample(_ seed: Int) throws -> String {
            let run = try Tool.swiftbert(["generate", "--model", Self.model, "--temperature", "1.2", "--top-k", "50", "--top-p", "0.9",
                                          "--seed", "\(seed)", "--max-new-tokens", "16", "In the beginning", "And God said"])
            XCTAssertEqual(run.status, 0, run.stderr)
            return run.stdout
        }
        XCTAssertEqual(try sample(7), try sample(7))
        XCTAssertNotEqual(try sample(7), try sample(8))
    }

    func testTimingsReportEachStepWithoutChangingTheText() throws {
        let arguments = ["generate", "--model", Self.model, "--max-new-tokens", "6", "--json", "In the beginning", "And God said"]
        let plain = try Tool.swiftbert(arguments)
        let timed = try Tool.swiftbert(arguments + ["--timings"])
        XCTAssertEqual(timed.status, 0, timed.stderr)
        XCTAssertEqual(timed.stdout, plain.stdout)
        let steps = try plain.stdout.split(separator: "\n").map { line in
            try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["tokens"] as? [Int]).count
        }.max()
        let report = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(timed.stderr.split(separator: "\n").last!.utf8)) as? [String: Any])
        let prompt = try XCTUnwrap(report["prompt_seconds"] as? Double), each = try XCTUnwrap(report["step_seconds"] as? [Double])
        XCTAssertGreaterThan(prompt, 0)
        // One entry per token after the first, whose time is the prompts' pass.
        XCTAssertEqual(each.count, try XCTUnwrap(steps) - 1)
        XCTAssertTrue(each.allSatisfy { $0 > 0 })
    }

    func testBadInputIsOneClearError() throws {
        for (arguments, message) in [
            (["generate", "--model", "/nonexistent", "x"], "/nonexistent has no config.json"),
            (["generate", "--model", Self.model, "--top-k", "5", "x"], "set --temperature"),
            (["generate", "--model", Self.model, ""], "a prompt is empty"),
            (["generate", "--model", Self.model, "--max-new-tokens", "0", "x"], "--max-new-tokens must be positive"),
            (["generate", "--model", Self.fixtures + "/tiny", "x"], "tokenizer"),
        ] {
            let run = try Tool.swiftbert(arguments)
            XCTAssertNotEqual(run.status, 0, "\(arguments)")
            XCTAssertTrue(run.stderr.contains(message), "\(arguments): \(run.stderr)")
            XCTAssertEqual(run.stdout, "", "\(arguments)")
        }
    }
}
