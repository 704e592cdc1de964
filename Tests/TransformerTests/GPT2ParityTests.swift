import Foundation
import Kernels
import Transformer
import XCTest

/// GPT-2 against transformers 5.24's GPT2LMHeadModel on CPU (scripts/make_gpt2_fixtures.py): a random
/// 2-layer model, a right-padded batch; logits at the real tokens, the causal LM loss and the gradient
/// of every parameter within 1e-5 relative.
final class GPT2ParityTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/gpt2")
    let tolerance: Float = 1e-5

    func testForwardAndBackwardMatchTransformers() throws {
        try checkParity("lm.safetensors")
    }

    /// Sequences of 150 and 97 tokens: causal attention in row blocks (full, partial, over padding).
    func testLongSequencesMatchTransformers() throws {
        try checkParity("lm-long.safetensors")
    }

    func checkParity(_ fixture: String) throws {
        let file = try SafetensorsFile(contentsOfFile: Self.fixtures.appendingPathComponent(fixture).path)
        let config = try JSONDecoder().decode(GPT2Config.self, from: Data(XCTUnwrap(file.metadata["config"]).utf8))
        XCTAssertEqual(config.inner, 128)
        let model = GPT2Model(config: config)
        for entry in model.table.entries {
            let values = try file.floats("param." + entry.name)
            XCTAssertEqual(values.count, entry.shape.reduce(1, *), entry.name)
            _ = UnsafeMutableBufferPointer(rebasing: model.parameters[entry.offset..<(entry.offset + values.count)]).update(from: values)
        }
        try Self.checkPasses(model, file, tolerance: tolerance, fixture)
    }

    /// With 1 and 2 workers: forward's count, loss and logits at the real tokens against `file`'s
    /// (input.*, expect.*), then backward's gradient of every trainable tensor against its grad.<name>.
    static func checkPasses(_ model: GPT2Model, _ file: SafetensorsFile, tolerance: Float, _ label: String) throws {
        let shape = try XCTUnwrap(file.tensorInfo("input.input_ids")?.shape)
        let (B, T, V) = (shape[0], shape[1], model.config.vocabSize)
        func ints(_ key: String) throws -> [Int32] { try file.int64s(key).map { Int32($0) } }
        let ids = try ints("input.input_ids"), mask = try ints("input.attention_mask"), labels = try ints("input.labels")
        let saved = Parallel.workerCount
        defer { Parallel.workerCount = saved }
        for workers in [1, 2] {
            Parallel.workerCount = workers
            model.zeroGradients()
            let (output, logits) = model.forward(ids: ids, mask: mask, labels: labels, sequences: B, length: T, allLogits: true)
            let count = Int(try file.int64s("expect.count")[0])
            XCTAssertEqual(output.count, count)
            let expectedLoss = try file.floats("expect.loss")[0]
            XCTAssertEqual(Float(output.lossSum / Double(count)), expectedLoss, accuracy: tolerance * expectedLoss)
            // Logits at the real tokens (padded rows depend on how the mask is applied).
            let reference = try file.floats("expect.logits")
            let real = (0..<(B * T)).filter { mask[$0] != 0 }
            assertParity(real.flatMap { Array(logits![($0 * V)..<(($0 + 1) * V)]) }, against: real.flatMap { Array(reference[($0 * V)..<(($0 + 1) * V)]) },
                         tolerance: tolerance, "\(label) logits (\(workers) workers)")
            model.backward(output, dloss: 1 / Float(count))
            for entry in model.table.entries where entry.trainable {
                let range = try XCTUnwrap(model.table.gradientRange(of: entry))
                assertParity(Array(model.gradients[range]), against: try file.floats("grad." + entry.name), tolerance: tolerance,
                             "\(label) grad \(entry.name) (\(workers) workers)")
            }
        }
    }
}
