import Data
import Foundation
@testable import Training
import Transformer
import XCTest

/// `init_from` is compared with the run's model and data before its weights are used.
final class InitFromTests: XCTestCase {
    let tokens = Vocabulary.specialTokens + ["the", "lord", "said", "##s", "god"]
    let model = BertConfig(
        vocabSize: 10, hiddenSize: 8, hiddenLayerCount: 1, attentionHeadCount: 2, intermediateSize: 16,
        maxPositionEmbeddings: 32)

    /// A Hugging Face directory with `config` and `tokens` (tokenizer.json only when `transformers5`).
    func directory(config: BertConfig, tokens: [String], lowercase: Bool = true, transformers5: Bool = false) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("init-from-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        try config.write(to: url.appendingPathComponent("config.json").path)
        try PretrainedTokenizer.write(
            tokens: tokens, settings: BertTokenizerSettings(lowercase: lowercase), modelMaxLength: 32, to: url.path)
        if transformers5 { try FileManager.default.removeItem(at: url.appendingPathComponent("vocab.txt")) }
        return url.path
    }

    func assertRefused(_ directory: String, data: [String]? = nil, lowercase: Bool = true, mentioning parts: [String],
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(
            try InitFromCheck.check(directory: directory, model: model, dataVocabulary: data ?? tokens, dataLowercase: lowercase),
            file: file, line: line
        ) { error in
            let message = "\(error)"
            for part in parts { XCTAssertTrue(message.contains(part), "'\(part)' not in: \(message)", file: file, line: line) }
        }
    }

    func testMatchingDirectoryIsAccepted() throws {
        for transformers5 in [false, true] {
            let matching = try directory(config: model, tokens: tokens, transformers5: transformers5)
            XCTAssertNoThrow(try InitFromCheck.check(directory: matching, model: model, dataVocabulary: tokens, dataLowercase: true))
        }
        // Dropout and the initialiser's range are settings of the run, not of the weights.
        var tuned = model
        tuned.hiddenDropoutProbability = 0.3
        tuned.attentionDropoutProbability = 0
        tuned.initializerRange = 0.05
        let other = try directory(config: tuned, tokens: tokens)
        XCTAssertNoThrow(try InitFromCheck.check(directory: other, model: model, dataVocabulary: tokens, dataLowercase: true))
    }

    func testEveryKeyThatChangesTheComputationIsCompared() throws {
        let changes: [(String, String, String, (inout BertConfig) -> Void)] = [
            ("vocab_size", "10", "12", { $0.vocabSize = 12 }),
            ("hidden_size", "8", "16", { $0.hiddenSize = 16 }),
            ("num_hidden_layers", "1", "2", { $0.hiddenLayerCount = 2 }),
            ("num_attention_heads", "2", "4", { $0.attentionHeadCount = 4 }),
            ("intermediate_size", "16", "32", { $0.intermediateSize = 32 }),
            ("hidden_act", "\"gelu\"", "\"relu\"", { $0.hiddenActivation = .relu }),
            ("max_position_embeddings", "32", "64", { $0.maxPositionEmbeddings = 64 }),
            ("type_vocab_size", "2", "3", { $0.typeVocabSize = 3 }),
            ("layer_norm_eps", "1e-12", "1e-06", { $0.layerNormEpsilon = 1e-6 }),
            ("pad_token_id", "0", "1", { $0.padTokenID = 1 }),
            ("num_nsp_labels", "2", "3", { $0.nspClassCount = 3 }),
        ]
        for (key, run, theirs, change) in changes {
            var config = model
            change(&config)
            let path = try directory(config: config, tokens: tokens)
            assertRefused(path, mentioning: [path + "/config.json", key, "has \(key) \(theirs)", "model has \(run)"])
        }
    }

    func testVocabularyDifferencesNameTheFirstDifferingToken() throws {
        var swapped = tokens
        swapped.swapAt(6, 7)
        let path = try directory(config: model, tokens: swapped, transformers5: true)
        assertRefused(path, mentioning: [path, "id 6", "\"said\"", "\"lord\""])
        // Canonically equivalent spellings are different tokens.
        let composed = try directory(config: model, tokens: tokens + ["caf\u{E9}"])
        assertRefused(composed, data: tokens + ["cafe\u{301}"], mentioning: ["id 10"])
        let longer = try directory(config: model, tokens: tokens + ["extra"])
        assertRefused(longer, mentioning: ["11 tokens", "data's 10"])
        let cased = try directory(config: model, tokens: tokens, lowercase: false)
        assertRefused(cased, mentioning: ["cased", "prepare the data"])
        let matching = try directory(config: model, tokens: tokens)
        XCTAssertThrowsError(try InitFromCheck.check(directory: matching, model: model, dataVocabulary: nil, dataLowercase: true)) {
            XCTAssertTrue("\($0)".contains("vocabulary file"), "\($0)")
        }
    }

    func testDirectoryWithoutVocabularyIsRefused() throws {
        let path = try directory(config: model, tokens: tokens)
        for file in ["vocab.txt", "tokenizer.json"] { try FileManager.default.removeItem(atPath: path + "/" + file) }
        assertRefused(path, mentioning: [path, "vocab.txt", "tokenizer.json"])
    }
}
