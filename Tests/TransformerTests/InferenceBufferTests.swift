import Foundation
import Transformer
import XCTest

/// The inference-only model (shared layer buffers, no training buffers) run at a batch's own length,
/// its buffers grown by `reserve`, against the training model run at its full built length.
final class InferenceBufferTests: XCTestCase {
    static let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/hf-tiny").path

    /// Three sequences of 3-9 tokens (ids from hf-tiny's vocabulary, [CLS] = 4, [SEP] = 5, [MASK] = 6).
    static let sequences: [[Int32]] = [[4, 1004, 1166, 6, 1008, 1004, 1100, 1200, 5], [4, 1300, 5], [4, 1200, 6, 1300, 1400, 5]]

    /// (B, T) ids and mask, each sequence padded with 0 to T.
    func padded(_ T: Int) -> (ids: [Int32], mask: [Int32]) {
        var ids = [Int32](repeating: 0, count: Self.sequences.count * T), mask = ids
        for (b, sequence) in Self.sequences.enumerated() {
            for (t, id) in sequence.enumerated() {
                ids[b * T + t] = id
                mask[b * T + t] = 1
            }
        }
        return (ids, mask)
    }

    /// Every layer's hidden states at the real tokens, and the MLM logits at the [MASK]s.
    func outputs(_ model: BertForPreTraining, length T: Int?) throws -> (layers: [[Float]], logits: [Float]) {
        let length = T ?? model.sequenceLength, C = model.config.hiddenSize, B = Self.sequences.count
        let (ids, mask) = padded(length)
        _ = try model.hiddenStates(
            inputIDs: ids, tokenTypeIDs: [Int32](repeating: 0, count: ids.count), attentionMask: mask, sequenceCount: B,
            sequenceLength: T)
        let layers = (0...model.config.hiddenLayerCount).map { layer in
            let hidden = model.hiddenStates(layer: layer)
            return Self.sequences.enumerated().flatMap { b, sequence in hidden[(b * length * C)..<((b * length + sequence.count) * C)] }
        }
        var positions: [Int32] = []
        for (b, sequence) in Self.sequences.enumerated() {
            positions += sequence.indices.filter { sequence[$0] == 6 }.map { Int32(b * length + $0) }
        }
        return (layers, try model.mlmLogits(at: positions))
    }

    func testInferenceModelAtBatchLengthMatchesTrainingModelAtFullLength() throws {
        let full = try BertForPreTraining.pretrained(directory: Self.model, maxSequenceCount: 3, sequenceLength: 24).model
        // Built too small for the batch: reserve grows it, as embed does for a longer window.
        let lean = try BertForPreTraining.pretrained(
            directory: Self.model, maxSequenceCount: 1, sequenceLength: 4, inferenceOnly: true).model
        XCTAssertThrowsError(try outputs(lean, length: 9))
        lean.reserve(sequenceCount: 3, sequenceLength: 9)
        XCTAssertEqual(lean.maxSequenceCount, 3)
        XCTAssertEqual(lean.sequenceLength, 9)
        XCTAssertEqual(lean.gradients.count, 0)
        let expected = try outputs(full, length: nil)
        let actual = try outputs(lean, length: 9)
        XCTAssertEqual(actual.layers.count, expected.layers.count)
        for (layer, (a, e)) in zip(actual.layers, expected.layers).enumerated() {
            XCTAssertEqual(a.count, e.count)
            let worst = zip(a, e).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, 1e-5, "hidden states after layer \(layer)")
        }
        let worst = zip(actual.logits, expected.logits).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertEqual(actual.logits.count, 2 * full.config.vocabSize)
        XCTAssertLessThanOrEqual(worst, 1e-4, "MLM logits")
        // Grown again and run with more padding: the real tokens' states do not change.
        lean.reserve(sequenceCount: 3, sequenceLength: 16)
        let padded = try outputs(lean, length: 16)
        for (a, e) in zip(padded.layers, actual.layers) {
            XCTAssertLessThanOrEqual(zip(a, e).map { abs($0 - $1) }.max() ?? .infinity, 1e-5)
        }
    }

    func testInferenceModelRejectsLengthBeyondItsBuffers() throws {
        let lean = try BertForPreTraining.pretrained(
            directory: Self.model, maxSequenceCount: 3, sequenceLength: 8, inferenceOnly: true).model
        XCTAssertThrowsError(try outputs(lean, length: 9)) { error in
            XCTAssertTrue("\(error)".contains("sequence length 9"), "\(error)")
        }
    }
}
