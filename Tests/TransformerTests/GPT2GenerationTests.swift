import Foundation
import Kernels
import Transformer
import XCTest

/// Generation from a GPT-2 directory transformers wrote (scripts/make_gpt2_fixtures.py): greedy
/// tokens identical to transformers' `generate` with left-padded prompts of different lengths, the
/// cache identical to recomputing every position, sampling reproducible from its seed.
final class GPT2GenerationTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/gpt2")

    struct Expected: Decodable {
        let prompts: [[Int32]]
        let max_new_tokens: Int
        let eos_token_id: Int32
        let greedy: [[Int32]]
    }

    func expected() throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("generate.json")))
    }

    func model() throws -> GPT2Model { try GPT2Model.load(directory: Self.fixtures.appendingPathComponent("tiny").path) }

    func testGreedyMatchesTransformersGenerate() throws {
        let e = try expected(), model = try model()
        var settings = GenerationSettings(maxNewTokens: e.max_new_tokens)
        settings.endOfText = e.eos_token_id
        XCTAssertEqual(model.generate(prompts: e.prompts, settings: settings), e.greedy, "batched, left-padded")
        for (prompt, tokens) in zip(e.prompts, e.greedy) {
            XCTAssertEqual(model.generate(prompts: [prompt], settings: settings), [tokens], "prompt \(prompt) alone")
        }
    }

    /// Each cached step's logits equal a full forward pass over the whole sequence so far.
    func testCacheEqualsRecomputation() throws {
        let e = try expected(), model = try model()
        let V = model.config.vocabSize
        let sequence = e.prompts[2] + e.greedy[2]
        let cache = GPT2Cache(model: model, sequences: 1, capacity: sequence.count)
        var logits = model.extend(cache, ids: Array(sequence.prefix(e.prompts[2].count)), mask: Array(repeating: 1, count: e.prompts[2].count))
        for length in e.prompts[2].count..<sequence.count {
            let prefix = Array(sequence.prefix(length))
            let full = model.forward(
                ids: prefix, mask: Array(repeating: 1, count: length), labels: Array(repeating: GPT2Model.ignoredLabel, count: length),
                sequences: 1, length: length, allLogits: true).logits!
            let reference = Array(full[((length - 1) * V)..<(length * V)])
            assertParity(logits, against: reference, tolerance: 1e-5, "step at length \(length)")
            logits = model.extend(cache, ids: [sequence[length]], mask: [1])
        }
    }

    func testSamplingIsReproducibleFromTheSeed() throws {
        let e = try expected(), model = try model()
        var settings = GenerationSettings(maxNewTokens: 7)
        settings.temperature = 1.5
        settings.topK = 20
        settings.topP = 0.95
        settings.seed = 11
        let first = model.generate(prompts: e.prompts, settings: settings)
        XCTAssertEqual(model.generate(prompts: e.prompts, settings: settings), first)
        settings.seed = 12
        XCTAssertNotEqual(model.generate(prompts: e.prompts, settings: settings), first, "another seed, other tokens")
        XCTAssertNotEqual(first, e.greedy.map { Array($0.prefix(7)) }, "sampling at temperature 1.5 is not greedy")
        // top_k 1 is greedy whatever the temperature.
        settings.topK = 1
        XCTAssertEqual(model.generate(prompts: e.prompts, settings: settings), e.greedy.map { Array($0.prefix(7)) })
    }

    /// A directory written by `save(to:)` loads back to the same parameters (and in transformers:
    /// scripts/make_gpt2_fixtures.py --check-directory).
    func testSavedDirectoryLoadsBack() throws {
        let model = try model()
        // GPT2_SAVE_DIRECTORY keeps the directory for the fixture script's --check-directory.
        let kept = ProcessInfo.processInfo.environment["GPT2_SAVE_DIRECTORY"]
        let directory = kept ?? FileManager.default.temporaryDirectory.appendingPathComponent("gpt2-\(UUID().uuidString)").path
        defer { if kept == nil { try? FileManager.default.removeItem(atPath: directory) } }
        try model.savePretrained(to: directory)
        let again = try GPT2Model.load(directory: directory)
        XCTAssertEqual(again.config, model.config)
        XCTAssertTrue(zip(again.parameters, model.parameters).allSatisfy { $0 == $1 })
    }
}
