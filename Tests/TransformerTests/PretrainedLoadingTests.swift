import Data
import Foundation
import Transformer
import XCTest

/// Loading Hugging Face model directories (with and without the `bert.` prefix and the heads), the
/// reference outputs of transformers after a write/read round trip of the weights, and clear errors
/// for directories that do not fit.
final class PretrainedLoadingTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("pretrained-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    func fixture(_ name: String) -> String { Self.fixtures.appendingPathComponent(name).path }

    // MARK: - Hugging Face directories

    /// Hidden states of BertModel recorded by transformers for hf-tiny (scripts/make_transformer_fixtures.py).
    struct EmbeddingCase: Decodable {
        let text: String
        let input_ids: [Int32]
        let cls: [Float]
        let mean: [Float]
    }

    func embeddingCases() throws -> [EmbeddingCase] {
        try JSONDecoder().decode([EmbeddingCase].self, from: Data(contentsOf: URL(fileURLWithPath: fixture("hf-tiny-embeddings.json"))))
    }

    /// [CLS] and mean-pooled last hidden states of `model` for each case, one sequence at a time.
    func pooledStates(_ model: BertForPreTraining, _ cases: [EmbeddingCase]) throws -> [(cls: [Float], mean: [Float])] {
        let T = model.sequenceLength, C = model.config.hiddenSize
        return try cases.map { item in
            let n = item.input_ids.count
            var ids = [Int32](repeating: 0, count: T), mask = [Int32](repeating: 0, count: T)
            ids.replaceSubrange(0..<n, with: item.input_ids)
            mask.replaceSubrange(0..<n, with: repeatElement(1, count: n))
            let hidden = try model.hiddenStates(
                inputIDs: ids, tokenTypeIDs: [Int32](repeating: 0, count: T), attentionMask: mask, sequenceCount: 1)
            let mean = (0..<C).map { c in (0..<n).reduce(Float(0)) { $0 + hidden[$1 * C + c] } / Float(n) }
            return (Array(hidden[0..<C]), mean)
        }
    }

    func testPrefixedDirectoryWithHeadsGivesTransformersHiddenStates() throws {
        let (model, report) = try BertForPreTraining.pretrained(directory: fixture("hf-tiny"), maxSequenceCount: 1, sequenceLength: 32)
        XCTAssertEqual(report.initializedTensors, [])
        XCTAssertNil(report.notice)
        XCTAssertTrue(report.hadPrefix)
        let cases = try embeddingCases()
        for (item, states) in zip(cases, try pooledStates(model, cases)) {
            assertClose(states.cls, item.cls, tolerance: 1e-4, item.text + " [CLS]")
            assertClose(states.mean, item.mean, tolerance: 1e-4, item.text + " mean")
        }
    }

    func testHeadlessDirectoryLoadsWithInitialisedHeadsListed() throws {
        let (model, report) = try BertForPreTraining.pretrained(
            directory: fixture("hf-tiny-headless"), maxSequenceCount: 1, sequenceLength: 32, initializationSeed: 7)
        XCTAssertFalse(report.hadPrefix)
        XCTAssertEqual(Set(report.initializedTensors), [
            "cls.predictions.bias", "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
            "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
            "cls.seq_relationship.weight", "cls.seq_relationship.bias",
        ])
        let notice = try XCTUnwrap(report.notice)
        XCTAssertTrue(notice.contains("cls.seq_relationship.weight") && notice.contains("7 tensor"), notice)
        // The encoder is the one of hf-tiny: same hidden states as transformers computed.
        let cases = try embeddingCases()
        for (item, states) in zip(cases, try pooledStates(model, cases)) {
            assertClose(states.cls, item.cls, tolerance: 1e-4, item.text)
        }
        // Initialised heads follow BERT's init: LayerNorm gain 1, biases 0, weights of std initializer_range.
        let gain = model.table.entry(named: "cls.predictions.transform.LayerNorm.weight")!
        XCTAssertTrue(model.parameters[gain.range].allSatisfy { $0 == 1 })
        let weight = model.table.entry(named: "cls.predictions.transform.dense.weight")!
        let values = model.parameters[weight.range]
        let std = (values.reduce(0) { $0 + $1 * $1 } / Float(values.count)).squareRoot()
        XCTAssertEqual(std, model.config.initializerRange, accuracy: 0.1 * model.config.initializerRange)
    }

    func testBareNamesAndPrefixedNamesLoadTheSameParameters() throws {
        let prefixed = try BertForPreTraining.pretrained(directory: fixture("hf-tiny"), maxSequenceCount: 1, sequenceLength: 8).model
        let bare = try BertForPreTraining.pretrained(directory: fixture("hf-tiny-headless"), maxSequenceCount: 1, sequenceLength: 8).model
        let encoderEnd = prefixed.table.entry(named: "cls.predictions.bias")!.offset
        XCTAssertTrue(prefixed.table.entries.filter { $0.name.hasPrefix("bert.") }.allSatisfy { $0.range.upperBound <= encoderEnd })
        XCTAssertEqual(Array(prefixed.parameters[0..<encoderEnd]), Array(bare.parameters[0..<encoderEnd]))
    }

    // MARK: - Reference outputs after a write/read round trip

    func testParityFixturesHoldAfterWeightRoundTrip() throws {
        for name in ["pad_gelu_h48", "nsp3_gelunew_h64", "relu_eps6_h40"] {
            let reference = try SafetensorsFile(contentsOfFile: fixture(name + ".safetensors"))
            let config = try JSONDecoder().decode(BertConfig.self, from: Data(reference.metadata["config"]!.utf8))
            let shape = reference.info("input.input_ids")!.shape
            let (B, T) = (shape[0], shape[1])

            // Fixture -> HF directory written by hand (the reference's names) -> SwiftBERT -> savePretrained -> SwiftBERT.
            let source = scratch.appendingPathComponent(name + "-source").path
            try writeDirectory(source, config: config, tensors: try reference.tensorNames.filter { $0.hasPrefix("param.") }.map {
                (String($0.dropFirst(6)), reference.info($0)!.shape, try reference.floats($0))
            })
            let loaded = try BertForPreTraining.pretrained(directory: source, maxSequenceCount: B, sequenceLength: T)
            XCTAssertEqual(loaded.report.initializedTensors, [], name)
            let saved = scratch.appendingPathComponent(name + "-saved").path
            try loaded.model.savePretrained(to: saved)
            let (model, report) = try BertForPreTraining.pretrained(directory: saved, maxSequenceCount: B, sequenceLength: T)
            XCTAssertEqual(report.initializedTensors, [], name)
            XCTAssertEqual(model.config, config, name)
            for entry in model.table.entries {
                XCTAssertEqual(Array(model.parameters[entry.range]), try reference.floats("param." + entry.name), "\(name) \(entry.name)")
            }
            try checkParity(model, reference, name)
        }
    }

    func checkParity(_ model: BertForPreTraining, _ reference: SafetensorsFile, _ name: String) throws {
        func ints(_ key: String) throws -> [Int32] { try reference.int64s(key).map { Int32($0) } }
        let shape = reference.info("input.input_ids")!.shape
        let B = shape[0]
        let positions = try ints("input.masked_positions")
        model.zeroGradients()
        let result = model.step(
            inputIDs: try ints("input.input_ids"), tokenTypeIDs: try ints("input.token_type_ids"),
            attentionMask: try ints("input.attention_mask"), maskedPositions: positions,
            maskedLabels: try ints("input.masked_labels"), nspLabels: try ints("input.nsp_labels"), sampleIndices: [],
            sequenceCount: B, maskedTokenNormalizer: Float(positions.count), sequenceNormalizer: Float(B),
            training: false, dropoutSeed: 0, dropoutStep: 0, computeGradients: true)
        XCTAssertEqual(result.mlmLoss, try reference.floats("expect.mlm_loss")[0], accuracy: 1e-4, name)
        XCTAssertEqual(result.nspLoss, try reference.floats("expect.nsp_loss")[0], accuracy: 1e-4, name)
        XCTAssertEqual(result.loss, try reference.floats("expect.loss")[0], accuracy: 1e-4, name)
        for entry in model.table.entries {
            let expected = try reference.floats("grad." + entry.name)
            let scale = max(1e-3, expected.map(abs).max() ?? 0)
            assertClose(Array(model.gradients[entry.range]), expected, tolerance: 1e-3 * scale, "\(name) grad \(entry.name)")
        }
        let hidden = try model.hiddenStates(
            inputIDs: try ints("input.input_ids"), tokenTypeIDs: try ints("input.token_type_ids"),
            attentionMask: try ints("input.attention_mask"), sequenceCount: B)
        assertClose(hidden, try reference.floats("expect.hidden_states"), tolerance: 1e-4, "\(name) hidden states")
        assertClose(try model.mlmLogits(at: positions), try reference.floats("expect.mlm_logits"), tolerance: 1e-4, "\(name) MLM logits")
        assertClose(model.nspLogits(), try reference.floats("expect.nsp_logits"), tolerance: 1e-4, "\(name) NSP logits")
    }

    // MARK: - Variants of stored names

    func testTiedDecoderGammaBetaAndPositionIDsAreAccepted() throws {
        var tensors = try hfTinyTensors()
        let words = tensors.first { $0.name == "bert.embeddings.word_embeddings.weight" }!
        let bias = tensors.first { $0.name == "cls.predictions.bias" }!
        tensors.append(("cls.predictions.decoder.weight", words.shape, words.values))
        tensors.append(("cls.predictions.decoder.bias", bias.shape, bias.values))
        tensors = tensors.map { item in
            item.name == "bert.embeddings.LayerNorm.weight" ? ("bert.embeddings.LayerNorm.gamma", item.shape, item.values)
                : item.name == "bert.embeddings.LayerNorm.bias" ? ("bert.embeddings.LayerNorm.beta", item.shape, item.values) : item
        }
        let directory = try hfTinyVariant("tied", tensors, extra: [("bert.embeddings.position_ids", [1, 128], [Float](repeating: 0, count: 128))])
        let (model, report) = try BertForPreTraining.pretrained(directory: directory, maxSequenceCount: 1, sequenceLength: 32)
        XCTAssertEqual(report.initializedTensors, [])
        XCTAssertEqual(report.ignoredTensors, ["bert.embeddings.position_ids"])
        let cases = try embeddingCases()
        for (item, states) in zip(cases, try pooledStates(model, cases)) {
            assertClose(states.mean, item.mean, tolerance: 1e-4, item.text)
        }
    }

    func testMaskedLanguageModelCheckpointLoadsWithPoolerAndNSPInitialised() throws {
        // BertForMaskedLM's layout: no pooler, no NSP head, the MLM bias stored as the decoder's bias.
        let original = try hfTinyTensors()
        let tensors = original.filter { !$0.name.hasPrefix("bert.pooler.") && !$0.name.hasPrefix("cls.seq_relationship.") }
            .map { $0.name == "cls.predictions.bias" ? ("cls.predictions.decoder.bias", $0.shape, $0.values) : $0 }
        let directory = try hfTinyVariant("masked-lm", tensors)
        let (model, report) = try BertForPreTraining.pretrained(directory: directory, maxSequenceCount: 1, sequenceLength: 8)
        XCTAssertEqual(Set(report.initializedTensors), [
            "bert.pooler.dense.weight", "bert.pooler.dense.bias", "cls.seq_relationship.weight", "cls.seq_relationship.bias",
        ])
        let bias = model.table.entry(named: "cls.predictions.bias")!
        XCTAssertEqual(Array(model.parameters[bias.range]), original.first { $0.name == "cls.predictions.bias" }!.values)
    }

    func testShardedDirectoryLoads() throws {
        let tensors = try hfTinyTensors()
        let directory = scratch.appendingPathComponent("sharded").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixture("hf-tiny/config.json"), toPath: directory + "/config.json")
        let halves = [Array(tensors.prefix(10)), Array(tensors.dropFirst(10))]
        var weightMap: [String: String] = [:]
        for (index, half) in halves.enumerated() {
            let file = "model-0000\(index + 1)-of-00002.safetensors"
            try writeTensors(half, to: directory + "/" + file)
            for tensor in half { weightMap[tensor.name] = file }
        }
        try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": weightMap])
            .write(to: URL(fileURLWithPath: directory + "/model.safetensors.index.json"))
        let reference = try BertForPreTraining.pretrained(directory: fixture("hf-tiny"), maxSequenceCount: 1, sequenceLength: 8).model
        let sharded = try BertForPreTraining.pretrained(directory: directory, maxSequenceCount: 1, sequenceLength: 8).model
        XCTAssertEqual(Array(sharded.parameters), Array(reference.parameters))
    }

    // MARK: - Errors

    func testWrongShapeIsRejectedNamingTheTensor() throws {
        let tensors = try hfTinyTensors().map { item -> (name: String, shape: [Int], values: [Float]) in
            item.name == "bert.encoder.layer.1.intermediate.dense.bias" ? (item.name, [127], Array(item.values.prefix(127))) : item
        }
        let directory = try hfTinyVariant("shape", tensors)
        assertLoadFails(directory, mentioning: ["bert.encoder.layer.1.intermediate.dense.bias", "[127]", "[128]", "model.safetensors"])
    }

    func testMissingEncoderTensorIsRejectedNamingIt() throws {
        let tensors = try hfTinyTensors().filter { $0.name != "bert.encoder.layer.0.attention.self.key.weight" }
        let directory = try hfTinyVariant("missing", tensors)
        assertLoadFails(directory, mentioning: ["bert.encoder.layer.0.attention.self.key.weight", "lacks 1 tensor"])
    }

    /// A directory whose only weights are a damaged pytorch_model.bin: the error names that file.
    func testDamagedPyTorchWeightsAreRefusedNamingTheFile() throws {
        let directory = scratch.appendingPathComponent("pickle-only").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixture("hf-tiny/config.json"), toPath: directory + "/config.json")
        try Data([0x50, 0x4b, 0x03, 0x04]).write(to: URL(fileURLWithPath: directory + "/pytorch_model.bin"))
        assertLoadFails(directory, mentioning: [directory + "/pytorch_model.bin", "not a zip archive", "model.safetensors"])
    }

    func testUnexpectedTensorIsRejectedNamingIt() throws {
        let directory = try hfTinyVariant("unexpected", try hfTinyTensors(), extra: [("classifier.weight", [2, 64], [Float](repeating: 0, count: 128))])
        assertLoadFails(directory, mentioning: ["classifier.weight", "not part of BertForPreTraining"])
    }

    func testUntiedDecoderIsRejected() throws {
        var tensors = try hfTinyTensors()
        let words = tensors.first { $0.name == "bert.embeddings.word_embeddings.weight" }!
        tensors.append(("cls.predictions.decoder.weight", words.shape, words.values.map { $0 * 0.5 }))
        let directory = try hfTinyVariant("untied", tensors)
        assertLoadFails(directory, mentioning: ["cls.predictions.decoder.weight", "untied"])
    }

    func testConfigThatDoesNotMatchTheWeightsIsRejected() throws {
        let directory = try hfTinyVariant("config", try hfTinyTensors())
        var config = try BertConfig.load(contentsOfFile: directory + "/config.json")
        config.intermediateSize = 96
        try config.write(to: directory + "/config.json")
        assertLoadFails(directory, mentioning: ["intermediate.dense.weight", "[128, 64]", "[96, 64]"])
    }

    func testTruncatedWeightsAreRejectedNamingTheFile() throws {
        let directory = try hfTinyVariant("truncated", try hfTinyTensors())
        let path = directory + "/model.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        assertLoadFails(directory, mentioning: [path, "truncated"])
    }

    func testAbsurdHeaderSizesAreRejected() throws {
        let directory = try hfTinyVariant("absurd", try hfTinyTensors())
        let path = directory + "/model.safetensors"
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data.withUnsafeMutableBytes { $0.storeBytes(of: UInt64.max.littleEndian, as: UInt64.self) }
        try data.write(to: URL(fileURLWithPath: path))
        assertLoadFails(directory, mentioning: [path, "header length"])

        // A tensor whose shape claims terabytes inside a header of normal length.
        let header = #"{"bert.embeddings.word_embeddings.weight":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}}"#
        var absurd = Data(count: 8)
        absurd.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(header.utf8.count).littleEndian, as: UInt64.self) }
        absurd.append(Data(header.utf8))
        absurd.append(Data(count: 4))
        try absurd.write(to: URL(fileURLWithPath: path))
        assertLoadFails(directory, mentioning: [path, "bert.embeddings.word_embeddings.weight", "absurdly large"])
    }

    func testNonJSONHeaderIsRejected() throws {
        let directory = try hfTinyVariant("json", try hfTinyTensors())
        let path = directory + "/model.safetensors"
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data.replaceSubrange(8..<16, with: Data("garbage!".utf8))
        try data.write(to: URL(fileURLWithPath: path))
        assertLoadFails(directory, mentioning: [path, "invalid header"])
    }

    func testDirectoryWithoutWeightsIsRejected() throws {
        let directory = scratch.appendingPathComponent("empty").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        assertLoadFails(directory, mentioning: [directory, "config.json"])
        try FileManager.default.copyItem(atPath: fixture("hf-tiny/config.json"), toPath: directory + "/config.json")
        assertLoadFails(directory, mentioning: [directory, "model.safetensors"])
    }

    // MARK: - Saving

    func testSavePretrainedWritesHuggingFaceLayout() throws {
        let model = try BertForPreTraining.pretrained(directory: fixture("hf-tiny"), maxSequenceCount: 1, sequenceLength: 8).model
        let directory = scratch.appendingPathComponent("saved").path
        try model.savePretrained(to: directory)
        // The weights are byte-identical to what transformers' save_pretrained wrote for the same model.
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: directory + "/model.safetensors")),
            try Data(contentsOf: URL(fileURLWithPath: fixture("hf-tiny/model.safetensors"))))
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json"))) as? [String: Any])
        XCTAssertEqual(config["architectures"] as? [String], ["BertForPreTraining"])
        XCTAssertEqual(config["model_type"] as? String, "bert")
        XCTAssertEqual(try BertConfig.load(contentsOfFile: directory + "/config.json"), model.config)

        // The directory for scripts/check_hf_roundtrip.py, with SwiftBERT's outputs recorded beside it.
        if let keep = ProcessInfo.processInfo.environment["SWIFTBERT_ROUNDTRIP_DIR"] {
            try recordRoundTripDirectory(keep)
        }
    }

    /// Loads the headless hf-tiny (SwiftBERT initialises the heads), saves it and records SwiftBERT's
    /// hidden states, MLM and NSP logits for fixed inputs in `swiftbert-outputs.safetensors`, for the
    /// transformers-side check `scripts/check_hf_roundtrip.py DIRECTORY`.
    func recordRoundTripDirectory(_ directory: String) throws {
        let (B, T) = (2, 12)
        let model = try BertForPreTraining.pretrained(
            directory: fixture("hf-tiny-headless"), maxSequenceCount: B, sequenceLength: T, initializationSeed: 11).model
        let tokens = try String(contentsOfFile: fixture("hf-tiny/vocab.txt"), encoding: .utf8).split(separator: "\n").map(String.init)
        try model.savePretrained(to: directory)
        try PretrainedTokenizer.write(
            tokens: tokens, settings: BertTokenizerSettings(lowercase: true), modelMaxLength: model.config.maxPositionEmbeddings,
            to: directory)
        let ids: [Int32] = [4, 1004, 1166, 6, 1008, 1004, 1100, 5, 2000, 1500, 6, 5] + [4, 1200, 6, 1300, 5, 1400, 1500, 5] + [0, 0, 0, 0]
        let types: [Int32] = [Int32](repeating: 0, count: 8) + [1, 1, 1, 1] + [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
        let mask: [Int32] = [Int32](repeating: 1, count: 12) + [Int32](repeating: 1, count: 8) + [0, 0, 0, 0]
        let positions: [Int32] = [3, 10, 14]
        let hidden = try model.hiddenStates(inputIDs: ids, tokenTypeIDs: types, attentionMask: mask, sequenceCount: B)
        let logits = try model.mlmLogits(at: positions)
        let nsp = model.nspLogits()
        let floats = [ids, types, mask, positions].map { $0.map(Float.init) }
        try writeTensors([
            ("input.input_ids", [B, T], floats[0]), ("input.token_type_ids", [B, T], floats[1]),
            ("input.attention_mask", [B, T], floats[2]), ("input.masked_positions", [positions.count], floats[3]),
            ("swiftbert.hidden_states", [B, T, model.config.hiddenSize], hidden),
            ("swiftbert.mlm_logits", [positions.count, model.config.vocabSize], logits),
            ("swiftbert.nsp_logits", [B, model.config.nspClassCount], nsp),
        ], to: directory + "/swiftbert-outputs.safetensors")
    }

    // MARK: - Helpers

    typealias NamedTensor = (name: String, shape: [Int], values: [Float])

    func hfTinyTensors() throws -> [NamedTensor] {
        let file = try SafetensorsFile(contentsOfFile: fixture("hf-tiny/model.safetensors"))
        return try file.tensorNames.map { ($0, file.info($0)!.shape, try file.floats($0)) }
    }

    /// A copy of hf-tiny's config with the given tensors as its weights.
    func hfTinyVariant(_ name: String, _ tensors: [NamedTensor], extra: [NamedTensor] = []) throws -> String {
        let directory = scratch.appendingPathComponent(name).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixture("hf-tiny/config.json"), toPath: directory + "/config.json")
        try writeTensors(tensors + extra, to: directory + "/model.safetensors")
        return directory
    }

    func writeDirectory(_ directory: String, config: BertConfig, tensors: [NamedTensor]) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try config.write(to: directory + "/config.json")
        try writeTensors(tensors, to: directory + "/model.safetensors")
    }

    func writeTensors(_ tensors: [NamedTensor], to path: String) throws {
        let buffers = tensors.map { tensor -> UnsafeMutableBufferPointer<Float> in
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: tensor.values.count)
            _ = buffer.initialize(from: tensor.values)
            return buffer
        }
        defer { buffers.forEach { $0.deallocate() } }
        try SafetensorsWriter.write(
            zip(tensors, buffers).map { (name: $0.name, shape: $0.shape, data: UnsafeBufferPointer($1)) },
            metadata: ["format": "pt"], to: path)
    }

    func assertLoadFails(_ directory: String, mentioning parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try BertForPreTraining.pretrained(directory: directory, maxSequenceCount: 1, sequenceLength: 8), file: file, line: line) { error in
            let message = (error as? LocalizedError)?.errorDescription ?? "\(error)"
            for part in parts {
                XCTAssertTrue(message.contains(part), "'\(message)' should mention '\(part)'", file: file, line: line)
            }
        }
    }

    func assertClose(_ actual: [Float], _ expected: [Float], tolerance: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, what, file: file, line: line)
        var worst: Float = 0, at = 0
        for i in 0..<min(actual.count, expected.count) {
            let difference = abs(actual[i] - expected[i])
            if !(difference <= worst) { worst = difference; at = i }
        }
        XCTAssertTrue(worst <= tolerance, "\(what): |difference| \(worst) at \(at) exceeds \(tolerance)", file: file, line: line)
    }
}
