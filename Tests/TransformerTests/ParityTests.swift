import Foundation
import Kernels
import Transformer
import XCTest

/// The model against Hugging Face transformers on CPU: the fixtures hold weights, inputs, outputs and
/// the gradient of every parameter, written by scripts/make_transformer_fixtures.py with dropout off.
final class ParityTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// Relative tolerance on whole tensors: max |ours - reference| / max |reference|. A careful fp32
    /// implementation with a different summation order lands around 1e-6.
    let tolerance: Float = 1e-5

    func testHiddenSize48ThreeHeadsOf16WithPadding() throws {
        try checkParityWithOneAndTwoWorkers("pad_gelu_h48")
    }

    func testGeluNewThreeWayNextSentencePrediction() throws {
        try checkParityWithOneAndTwoWorkers("nsp3_gelunew_h64")
    }

    func testReluFiveHeadsOf8TypeVocabulary3WithPadding() throws {
        try checkParityWithOneAndTwoWorkers("relu_eps6_h40")
    }

    /// A model directory written by transformers' `save_pretrained` (the layout of real pretrained
    /// checkpoints): last hidden states of BertModel for whole texts, from hf-tiny-embeddings.json.
    func testHiddenStatesOfASavedHuggingFaceModel() throws {
        let directory = Self.fixtures.appendingPathComponent("hf-tiny")
        let config = try BertConfig.load(contentsOfFile: directory.appendingPathComponent("config.json").path)
        let weights = try SafetensorsFile(contentsOfFile: directory.appendingPathComponent("model.safetensors").path)
        struct Expected: Decodable { let text: String; let input_ids: [Int32]; let cls: [Float]; let mean: [Float] }
        let cases = try JSONDecoder().decode(
            [Expected].self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("hf-tiny-embeddings.json")))
        XCTAssertFalse(cases.isEmpty)
        for expected in cases {
            let T = expected.input_ids.count, C = config.hiddenSize
            let model = BertForPreTraining(config: config, maxSequenceCount: 1, sequenceLength: T)
            for entry in model.table.entries {
                try weights.copyFloats(entry.name, into: UnsafeMutableBufferPointer(rebasing: model.parameters[entry.range]))
            }
            let hidden = try model.hiddenStates(
                inputIDs: expected.input_ids, tokenTypeIDs: [Int32](repeating: 0, count: T),
                attentionMask: [Int32](repeating: 1, count: T), sequenceCount: 1)
            let cls = Array(hidden[0..<C])
            let mean = (0..<C).map { c in (0..<T).reduce(Float(0)) { $0 + hidden[$1 * C + c] } / Float(T) }
            for (name, ours, reference) in [("cls", cls, expected.cls), ("mean", mean, expected.mean)] {
                let scale = reference.map { abs($0) }.max() ?? 0
                let error = zip(ours, reference).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThanOrEqual(error, tolerance * scale, "\(expected.text): \(name) max error \(error)")
            }
        }
    }

    /// Reference case loaded into a model.
    struct Case {
        let file: SafetensorsFile
        let model: BertForPreTraining
        let B: Int, T: Int
        let ids, types, mask, positions, labels, nspLabels: [Int32]
    }

    func loadCase(_ name: String, maxSequenceCount: Int? = nil) throws -> Case {
        let file = try SafetensorsFile(contentsOfFile: Self.fixtures.appendingPathComponent(name + ".safetensors").path)
        let configJSON = try XCTUnwrap(file.metadata["config"], "fixture \(name) has no config metadata")
        let config = try JSONDecoder().decode(BertConfig.self, from: Data(configJSON.utf8))
        let shape = try XCTUnwrap(file.info("input.input_ids")?.shape)
        let B = shape[0], T = shape[1]
        let model = BertForPreTraining(config: config, maxSequenceCount: maxSequenceCount ?? B, sequenceLength: T)
        // Every table entry must be in the file with the same shape, and every parameter of the file in the table.
        let fileParameters = Set(file.tensorNames.filter { $0.hasPrefix("param.") }.map { String($0.dropFirst(6)) })
        XCTAssertEqual(Set(model.table.entries.map(\.name)), fileParameters, "parameter names differ from Hugging Face's")
        for entry in model.table.entries {
            XCTAssertEqual(file.info("param." + entry.name)?.shape, entry.shape, entry.name)
            try file.copyFloats(
                "param." + entry.name,
                into: UnsafeMutableBufferPointer(rebasing: model.parameters[entry.range]))
        }
        func ints(_ key: String) throws -> [Int32] { try file.int64s(key).map { Int32($0) } }
        return Case(
            file: file, model: model, B: B, T: T,
            ids: try ints("input.input_ids"), types: try ints("input.token_type_ids"),
            mask: try ints("input.attention_mask"), positions: try ints("input.masked_positions"),
            labels: try ints("input.masked_labels"), nspLabels: try ints("input.nsp_labels"))
    }

    /// Single-threaded, and with the element-wise kernels and attention heads spread over two workers;
    /// the training step with its last layer at the loss rows only (the default) and at every row.
    func checkParityWithOneAndTwoWorkers(_ name: String) throws {
        let saved = Parallel.workerCount
        defer { Parallel.workerCount = saved }
        for workers in [1, 2] {
            Parallel.workerCount = workers
            for lossRowsOnly in [true, false] {
                try checkParity(name, lastLayerAtLossRowsOnly: lossRowsOnly)
            }
        }
    }

    func checkParity(_ name: String, lastLayerAtLossRowsOnly: Bool) throws {
        let c = try loadCase(name)
        let model = c.model
        model.computesLastLayerAtLossRowsOnly = lastLayerAtLossRowsOnly
        let name = "\(name) (last layer at \(lastLayerAtLossRowsOnly ? "the loss rows" : "every row"))"
        model.zeroGradients()
        var readyRanges: [Range<Int>] = []
        let result = model.step(
            inputIDs: c.ids, tokenTypeIDs: c.types, attentionMask: c.mask,
            maskedPositions: c.positions, maskedLabels: c.labels, nspLabels: c.nspLabels,
            sampleIndices: Array(0..<c.B), sequenceCount: c.B,
            maskedTokenNormalizer: Float(c.positions.count), sequenceNormalizer: Float(c.B),
            training: true, dropoutSeed: 1, dropoutStep: 0, computeGradients: true,
            onGradientsReady: { readyRanges.append($0) })

        let expectedMLM = try c.file.floats("expect.mlm_loss")[0]
        let expectedNSP = try c.file.floats("expect.nsp_loss")[0]
        let expectedLoss = try c.file.floats("expect.loss")[0]
        XCTAssertEqual(result.mlmLoss, expectedMLM, accuracy: tolerance * abs(expectedMLM), "\(name) MLM loss")
        XCTAssertEqual(result.nspLoss, expectedNSP, accuracy: tolerance * abs(expectedNSP), "\(name) NSP loss")
        XCTAssertEqual(result.loss, expectedLoss, accuracy: tolerance * abs(expectedLoss), "\(name) loss")
        XCTAssertEqual(result.mlmCount, c.positions.count)
        XCTAssertEqual(result.nspCount, c.B)

        // The step's own outputs at the rows the losses read, then inference on every row.
        try compare(model.pooledOutput(), c.file, "expect.pooled_output", name)
        try compare(model.nspLogits(), c.file, "expect.nsp_logits", name)
        _ = try model.hiddenStates(inputIDs: c.ids, tokenTypeIDs: c.types, attentionMask: c.mask, sequenceCount: c.B)
        try compare(model.hiddenStates(layer: model.config.hiddenLayerCount), c.file, "expect.hidden_states", name)
        try compare(model.pooledOutput(), c.file, "expect.pooled_output", name)
        let mlmLogits = try model.mlmLogits(at: c.positions)
        try compare(mlmLogits, c.file, "expect.mlm_logits", name)
        try compare(model.nspLogits(), c.file, "expect.nsp_logits", name)

        // Accuracies from the reference logits.
        let referenceLogits = try c.file.floats("expect.mlm_logits")
        let V = model.config.vocabSize
        let expectedCorrect = c.labels.indices.filter { p in
            let row = referenceLogits[(p * V)..<((p + 1) * V)]
            return row.firstIndex(of: row.max()!)! - p * V == Int(c.labels[p])
        }.count
        XCTAssertEqual(result.mlmCorrect, expectedCorrect, "\(name) MLM accuracy")

        for entry in model.table.entries {
            let ours = Array(model.gradients[entry.range])
            if entry.name.hasSuffix("attention.self.key.bias") {
                // Softmax ignores a shift of all scores of a row, and a key bias shifts each row by a
                // constant: the exact gradient is 0 and both implementations hold rounding noise.
                // It must be negligible next to the value bias gradient.
                let valueBias = entry.name.replacingOccurrences(of: "key.bias", with: "value.bias")
                let scale = try c.file.floats("grad." + valueBias).map { abs($0) }.max() ?? 0
                XCTAssertLessThanOrEqual(ours.map { abs($0) }.max() ?? 0, tolerance * scale, "\(name) \(entry.name)")
                continue
            }
            try compare(ours, c.file, "grad." + entry.name, name)
        }

        // Ready ranges: heads first, then layers in reverse, then embeddings; together the whole buffer.
        let table = model.table
        XCTAssertEqual(readyRanges, [table.headRange] + table.layerRanges.reversed() + [table.embeddingRange])
        XCTAssertEqual(readyRanges.map(\.count).reduce(0, +), table.totalCount)
    }

    func compare(_ actual: [Float], _ file: SafetensorsFile, _ key: String, _ name: String) throws {
        let expected = try file.floats(key)
        XCTAssertEqual(actual.count, expected.count, "\(name) \(key) size")
        guard actual.count == expected.count else { return }
        let scale = expected.map { abs($0) }.max() ?? 0
        let error = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(error, tolerance * max(scale, 1e-30), "\(name) \(key): max error \(error), max |reference| \(scale)")
        if ProcessInfo.processInfo.environment["PARITY_VERBOSE"] != nil {
            print("\(name) \(key): relative error \(error / max(scale, 1e-30))")
        }
    }
}
