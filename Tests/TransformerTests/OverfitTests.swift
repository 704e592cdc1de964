import Foundation
import Kernels
import Transformer
import XCTest

/// A tiny model memorises a handful of sequences with plain (norm-clipped) gradient steps: forward,
/// backward and the gradient layout work together as a training loop needs them.
final class OverfitTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The batch of the `pad_gelu_h48` reference case (3 sequences, two of them padded, 9 masked
    /// tokens, binary NSP) from a fresh BERT initialisation.
    func testTinyModelOverfitsAHandfulOfSequences() throws {
        let file = try SafetensorsFile(contentsOfFile: Self.fixtures.appendingPathComponent("pad_gelu_h48.safetensors").path)
        var config = try JSONDecoder().decode(BertConfig.self, from: Data(try XCTUnwrap(file.metadata["config"]).utf8))
        config.initializerRange = 0.1
        func ints(_ key: String) throws -> [Int32] { try file.int64s(key).map { Int32($0) } }
        let ids = try ints("input.input_ids"), types = try ints("input.token_type_ids"), mask = try ints("input.attention_mask")
        let positions = try ints("input.masked_positions"), labels = try ints("input.masked_labels")
        let nspLabels = try ints("input.nsp_labels")
        let shape = try XCTUnwrap(file.info("input.input_ids")?.shape)
        let B = shape[0], T = shape[1]

        let model = BertForPreTraining(config: config, maxSequenceCount: B, sequenceLength: T)
        model.initializeParameters(seed: 2024)
        func step() -> StepResult {
            model.zeroGradients()
            return model.step(
                inputIDs: ids, tokenTypeIDs: types, attentionMask: mask, maskedPositions: positions,
                maskedLabels: labels, nspLabels: nspLabels, sampleIndices: Array(0..<B), sequenceCount: B,
                maskedTokenNormalizer: Float(positions.count), sequenceNormalizer: Float(B), training: false,
                dropoutSeed: 0, dropoutStep: 0, computeGradients: true, onGradientsReady: nil)
        }
        let initial = step()
        XCTAssertEqual(initial.mlmLoss, log(Float(config.vocabSize)), accuracy: 1.0, "an untrained model guesses uniformly")
        var result = initial
        // Gradient steps clipped to global norm 1 (as BERT trains): unclipped steps large enough to
        // make progress blow up in the first steps, where the tied embeddings get large gradients.
        let learningRate: Float = 0.5
        for _ in 0..<100 {
            let norm = model.gradients.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let factor = learningRate / max(1, norm)
            for i in 0..<model.table.totalCount { model.parameters[i] -= factor * model.gradients[i] }
            result = step()
        }
        XCTAssertLessThan(result.loss, 0.01, "loss went from \(initial.loss) to \(result.loss)")
        XCTAssertEqual(result.mlmCorrect, positions.count)
        XCTAssertEqual(result.nspCorrect, B)
    }
}
