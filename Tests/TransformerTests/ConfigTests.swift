import Foundation
import Kernels
import Transformer
import XCTest

/// Hugging Face config.json files in and out, errors that name the key, and the parameter table
/// against the names and shapes Hugging Face writes.
final class ConfigTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("config-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    func decode(_ json: String) throws -> BertConfig {
        try JSONDecoder().decode(BertConfig.self, from: Data(json.utf8))
    }

    /// bert-base-uncased's config.json as published on the Hugging Face hub.
    let bertBaseUncased = """
        {
          "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": false,
          "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
          "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
          "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0, "position_embedding_type": "absolute",
          "transformers_version": "4.6.0.dev0", "type_vocab_size": 2, "use_cache": true, "vocab_size": 30522
        }
        """

    func testReadsBertBaseUncasedConfig() throws {
        let config = try decode(bertBaseUncased)
        XCTAssertEqual(config.vocabSize, 30522)
        XCTAssertEqual(config.hiddenSize, 768)
        XCTAssertEqual(config.hiddenLayerCount, 12)
        XCTAssertEqual(config.attentionHeadCount, 12)
        XCTAssertEqual(config.headSize, 64)
        XCTAssertEqual(config.intermediateSize, 3072)
        XCTAssertEqual(config.hiddenActivation, .gelu)
        XCTAssertEqual(config.hiddenDropoutProbability, 0.1)
        XCTAssertEqual(config.attentionDropoutProbability, 0.1)
        XCTAssertEqual(config.maxPositionEmbeddings, 512)
        XCTAssertEqual(config.typeVocabSize, 2)
        XCTAssertEqual(config.initializerRange, 0.02)
        XCTAssertEqual(config.layerNormEpsilon, 1e-12)
        XCTAssertEqual(config.padTokenID, 0)
        XCTAssertEqual(config.nspClassCount, 2)
        // BertForPreTraining of bert-base has 110,106,428 parameters (decoder weight tied).
        XCTAssertEqual(ParameterTable(config: config).totalCount, 110_106_428)
    }

    func testReadsConfigWrittenByTransformersSavePretrained() throws {
        let path = Self.fixtures.appendingPathComponent("hf-tiny/config.json").path
        let config = try BertConfig.load(contentsOfFile: path)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        XCTAssertEqual(config.vocabSize, json["vocab_size"] as? Int)
        XCTAssertEqual(config.hiddenSize, json["hidden_size"] as? Int)
        XCTAssertEqual(config.hiddenLayerCount, json["num_hidden_layers"] as? Int)
        XCTAssertEqual(config.attentionHeadCount, json["num_attention_heads"] as? Int)
        XCTAssertEqual(config.intermediateSize, json["intermediate_size"] as? Int)
        XCTAssertEqual(config.hiddenActivation.rawValue, json["hidden_act"] as? String)
        XCTAssertEqual(config.maxPositionEmbeddings, json["max_position_embeddings"] as? Int)
        XCTAssertEqual(Double(config.layerNormEpsilon), try XCTUnwrap(json["layer_norm_eps"] as? Double), accuracy: 1e-20)
    }

    func testWritesHuggingFaceKeysAndReadsThemBack() throws {
        let config = BertConfig(
            vocabSize: 1000, hiddenSize: 96, hiddenLayerCount: 3, attentionHeadCount: 3, intermediateSize: 200,
            hiddenActivation: .geluTanh, hiddenDropoutProbability: 0.05, attentionDropoutProbability: 0,
            maxPositionEmbeddings: 64, typeVocabSize: 3, initializerRange: 0.01, layerNormEpsilon: 1e-6, nspClassCount: 3)
        let path = scratch.appendingPathComponent("config.json").path
        try config.write(to: path)
        XCTAssertEqual(try BertConfig.load(contentsOfFile: path), config)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        // Three NSP classes: transformers' BertForPreTraining cannot load the NSP head; BertForMaskedLM loads the rest.
        XCTAssertEqual(json["architectures"] as? [String], ["BertForMaskedLM"])
        XCTAssertEqual(json["model_type"] as? String, "bert")
        XCTAssertEqual(json["hidden_act"] as? String, "gelu_new")
        XCTAssertEqual(json["num_attention_heads"] as? Int, 3)
        XCTAssertEqual(json["num_nsp_labels"] as? Int, 3)
        XCTAssertEqual(json["type_vocab_size"] as? Int, 3)
    }

    func testInvalidValuesAreErrorsNamingTheKey() {
        func assertRejected(_ json: String, key: String, line: UInt = #line) {
            XCTAssertThrowsError(try decode(json), line: line) { error in
                XCTAssertTrue("\(error)".contains("\"\(key)\""), "\(error) does not name \(key)", line: line)
            }
        }
        assertRejected(#"{"hidden_size": 100, "num_attention_heads": 12}"#, key: "num_attention_heads")
        assertRejected(#"{"hidden_act": "swish"}"#, key: "hidden_act")
        assertRejected(#"{"num_nsp_labels": 4}"#, key: "num_nsp_labels")
        assertRejected(#"{"hidden_size": "large"}"#, key: "hidden_size")
        assertRejected(#"{"hidden_dropout_prob": 1.0}"#, key: "hidden_dropout_prob")
        assertRejected(#"{"layer_norm_eps": 0}"#, key: "layer_norm_eps")
        assertRejected(#"{"position_embedding_type": "relative_key"}"#, key: "position_embedding_type")
        assertRejected(#"{"is_decoder": true}"#, key: "is_decoder")
    }

    func testMissingFileErrorNamesThePath() {
        let path = scratch.appendingPathComponent("absent.json").path
        XCTAssertThrowsError(try BertConfig.load(contentsOfFile: path)) { error in
            XCTAssertTrue("\(error)".contains(path), "\(error)")
        }
        let invalid = scratch.appendingPathComponent("bad.json").path
        XCTAssertTrue(FileManager.default.createFile(atPath: invalid, contents: Data(#"{"vocab_size": -3}"#.utf8)))
        XCTAssertThrowsError(try BertConfig.load(contentsOfFile: invalid)) { error in
            XCTAssertTrue("\(error)".contains(invalid) && "\(error)".contains("vocab_size"), "\(error)")
        }
    }

    // MARK: - Parameter table

    func testTableHasTheNamesAndShapesTransformersSaves() throws {
        let directory = Self.fixtures.appendingPathComponent("hf-tiny")
        let config = try BertConfig.load(contentsOfFile: directory.appendingPathComponent("config.json").path)
        let file = try SafetensorsFile(contentsOfFile: directory.appendingPathComponent("model.safetensors").path)
        let table = ParameterTable(config: config)
        // save_pretrained drops the tied decoder weight; its decoder bias is cls.predictions.bias.
        let saved = Set(file.tensorNames).subtracting(["cls.predictions.decoder.weight", "cls.predictions.decoder.bias"])
        XCTAssertEqual(Set(table.entries.map(\.name)), saved)
        for entry in table.entries {
            XCTAssertEqual(file.info(entry.name)?.shape, entry.shape, entry.name)
        }
    }

    func testTableIsContiguousOrderedAndFusesTheProjections() throws {
        let config = BertConfig(vocabSize: 50, hiddenSize: 12, hiddenLayerCount: 2, attentionHeadCount: 3, intermediateSize: 20)
        let table = ParameterTable(config: config)
        var next = 0
        for entry in table.entries {
            XCTAssertEqual(entry.offset, next, entry.name)
            XCTAssertEqual(entry.count, entry.shape.reduce(1, *), entry.name)
            next += entry.count
        }
        XCTAssertEqual(next, table.totalCount)
        XCTAssertEqual(table.entries.first?.name, "bert.embeddings.word_embeddings.weight")
        XCTAssertEqual(table.entries.last?.name, "cls.seq_relationship.bias")
        XCTAssertEqual(table.embeddingRange.upperBound, table.layerRanges[0].lowerBound)
        XCTAssertEqual(table.layerRanges[0].upperBound, table.layerRanges[1].lowerBound)
        XCTAssertEqual(table.layerRanges[1].upperBound, table.headRange.lowerBound)
        XCTAssertEqual(table.headRange.upperBound, table.totalCount)

        let query = try XCTUnwrap(table.entry(named: "bert.encoder.layer.1.attention.self.query.weight"))
        let key = try XCTUnwrap(table.entry(named: "bert.encoder.layer.1.attention.self.key.weight"))
        let value = try XCTUnwrap(table.entry(named: "bert.encoder.layer.1.attention.self.value.weight"))
        XCTAssertEqual(key.offset, query.offset + 144)
        XCTAssertEqual(value.offset, key.offset + 144)
        let queryBias = try XCTUnwrap(table.entry(named: "bert.encoder.layer.1.attention.self.query.bias"))
        XCTAssertEqual(table.entry(named: "bert.encoder.layer.1.attention.self.value.bias")?.offset, queryBias.offset + 24)

        XCTAssertEqual(table.entry(named: "bert.encoder.layer.0.intermediate.dense.weight")?.shape, [20, 12])
        XCTAssertEqual(table.entry(named: "bert.encoder.layer.0.output.dense.weight")?.shape, [12, 20])
        XCTAssertEqual(table.entry(named: "bert.encoder.layer.0.output.dense.weight")?.decays, true)
        XCTAssertEqual(table.entry(named: "bert.embeddings.word_embeddings.weight")?.decays, true)
        XCTAssertEqual(table.entry(named: "bert.encoder.layer.0.output.LayerNorm.weight")?.decays, false)
        XCTAssertEqual(table.entry(named: "cls.predictions.bias")?.decays, false)
        XCTAssertNil(table.entry(named: "cls.predictions.decoder.weight"))

        var noNSP = config
        noNSP.nspClassCount = 0
        let headless = ParameterTable(config: noNSP)
        XCTAssertNil(headless.entry(named: "cls.seq_relationship.weight"))
        XCTAssertEqual(headless.totalCount, table.totalCount - 2 * 12 - 2)
        var threeWay = config
        threeWay.nspClassCount = 3
        XCTAssertEqual(ParameterTable(config: threeWay).entry(named: "cls.seq_relationship.weight")?.shape, [3, 12])
    }
}
