import Foundation
import Kernels
import XCTest

@testable import Transformer

/// What GPT-2 training adds to the parity-tested passes: dropout (whose masks no reference shares,
/// so its gradients are checked against finite differences of the loss), masks that follow the
/// sample, initialisation, and the gradient ranges backward reports.
final class GPT2TrainingTests: XCTestCase {
    func tinyModel(dropout: Float) -> GPT2Model {
        var config = GPT2Config(vocabSize: 40, positionCount: 16, hiddenSize: 16, layerCount: 2, headCount: 2)
        (config.residualDropout, config.embeddingDropout, config.attentionDropout) = (dropout, dropout, dropout)
        let model = GPT2Model(config: config)
        model.initializeParameters(seed: 7)
        // Larger than GPT-2's 0.02 so every term of the loss moves measurably under finite differences,
        // and queries and keys larger still so the attention is far from uniform.
        for i in model.parameters.indices { model.parameters[i] *= 2 }
        for entry in model.table.entries where entry.name.hasSuffix("c_attn.weight") {
            for i in entry.range { model.parameters[i] *= 4 }
        }
        return model
    }

    let (B, T) = (2, 8)
    var ids: [Int32] { (0..<(B * T)).map { Int32(($0 * 7 + 3) % 40) } }
    /// The second sequence is padded after 6 tokens.
    var mask: [Int32] { (0..<(B * T)).map { $0 >= T && $0 % T >= 6 ? 0 : 1 } }
    var labels: [Int32] { zip(ids, mask).map { $1 == 0 ? GPT2Model.ignoredLabel : $0 } }

    func loss(_ model: GPT2Model, _ dropout: GPT2Model.Dropout?) -> Double {
        model.forward(ids: ids, mask: mask, labels: labels, sequences: B, length: T, dropout: dropout).output.lossSum
    }

    /// d(loss)/d(parameter `index`) by central differences.
    func numericGradient(_ model: GPT2Model, _ index: Int, _ dropout: GPT2Model.Dropout?) -> Double {
        let saved = model.parameters[index], h: Float = 1e-3
        model.parameters[index] = saved + h
        let plus = loss(model, dropout)
        model.parameters[index] = saved - h
        let minus = loss(model, dropout)
        model.parameters[index] = saved
        return (plus - minus) / Double(2 * h)
    }

    func testDropoutGradientsMatchFiniteDifferences() throws {
        let model = tinyModel(dropout: 0.2)
        let dropout = GPT2Model.Dropout(seed: 11, step: 3, sampleIndices: [5, 9])
        XCTAssertNotEqual(loss(model, dropout), loss(model, nil), "dropout changes the loss")
        XCTAssertEqual(loss(model, dropout), loss(model, dropout), "the same keys give the same masks")
        model.zeroGradients()
        let output = model.forward(ids: ids, mask: mask, labels: labels, sequences: B, length: T, dropout: dropout).output
        model.backward(output, dloss: 1)
        var checked = 0
        for entry in model.table.entries {
            // The largest gradients of every tensor; of c_attn's, those of the queries, keys and values
            // each (the first two reach the loss through the attention probabilities and their dropout).
            let columns = entry.shape.last!
            let groups = entry.name.contains("c_attn") ? 3 : 1
            func group(_ index: Int) -> Int { (index - entry.offset) % columns * groups / columns }
            func largest(_ candidates: [Int]) -> [Int] {
                Array(candidates.sorted { abs(model.gradients[$0]) > abs(model.gradients[$1]) }.prefix(3))
            }
            let indices = (0..<groups).flatMap { g in largest(entry.range.filter { group($0) == g }) }
            for index in indices {
                let numeric = numericGradient(model, index, dropout)
                let analytic = Double(model.gradients[index])
                XCTAssertEqual(analytic, numeric, accuracy: 2e-2 * max(1, abs(numeric)), "\(entry.name)[\(index - entry.offset)]")
                checked += 1
            }
        }
        XCTAssertEqual(checked, 3 * (model.table.entries.count + 2 * 4), "3 a tensor, 9 of each c_attn weight and bias")
    }

    /// LoRA on every projection with its own dropout (and the model's), biases trainable: each trainable
    /// tensor's largest gradients against finite differences; the frozen base has no gradient at all.
    func testLoraGradientsWithDropoutMatchFiniteDifferences() throws {
        var config = GPT2Config(vocabSize: 40, positionCount: 16, hiddenSize: 16, layerCount: 2, headCount: 2)
        (config.residualDropout, config.embeddingDropout, config.attentionDropout) = (0.2, 0.2, 0.2)
        config.lora = LoraSettings(rank: 2, alpha: 4, dropout: 0.3, targetModules: ["c_attn", "c_proj", "c_fc"], bias: .all)
        let model = GPT2Model(config: config)
        model.initializeParameters(seed: 7)
        for i in model.parameters.indices { model.parameters[i] *= 2 }
        // peft's B = 0 would leave A's gradient 0.
        for (index, entry) in model.table.entries.enumerated() where entry.name.hasSuffix(".lora_B.weight") {
            BertModel.fillUniform(model.p(entry.offset), count: entry.count, bound: 0.5, Philox(seed: 3, UInt64(index)))
        }
        XCTAssertEqual(model.gradients.count, model.table.entries.filter(\.trainable).reduce(0) { $0 + $1.count })
        let dropout = GPT2Model.Dropout(seed: 11, step: 3, sampleIndices: [5, 9])
        model.zeroGradients()
        let output = model.forward(ids: ids, mask: mask, labels: labels, sequences: B, length: T, dropout: dropout).output
        model.backward(output, dloss: 1)
        var checked = 0
        for entry in model.table.entries where entry.trainable {
            let range = try XCTUnwrap(model.table.gradientRange(of: entry))
            let largest = Array((0..<entry.count).sorted { abs(model.gradients[range.lowerBound + $0]) > abs(model.gradients[range.lowerBound + $1]) }.prefix(3))
            for k in largest {
                let numeric = numericGradient(model, entry.offset + k, dropout)
                XCTAssertEqual(Double(model.gradients[range.lowerBound + k]), numeric, accuracy: 2e-2 * max(1, abs(numeric)), "\(entry.name)[\(k)]")
                checked += 1
            }
        }
        // Per block 4 modules (c_proj is both projections) x 2 factors and 6 biases (LayerNorms' included), and ln_f's bias.
        XCTAssertEqual(checked, 3 * (2 * (4 * 2 + 6) + 1))
    }

    func testDropoutMasksFollowTheSampleNotTheBatch() {
        let model = tinyModel(dropout: 0.3)
        let both = model.forward(ids: ids, mask: mask, labels: labels, sequences: B, length: T,
                                 dropout: .init(seed: 1, step: 2, sampleIndices: [40, 41])).output.lossSum
        var alone = 0.0
        for b in 0..<B {
            let range = (b * T)..<((b + 1) * T)
            alone += model.forward(ids: Array(ids[range]), mask: Array(mask[range]), labels: Array(labels[range]), sequences: 1,
                                   length: T, dropout: .init(seed: 1, step: 2, sampleIndices: [40 + b])).output.lossSum
        }
        XCTAssertEqual(both, alone, accuracy: 1e-5 * abs(both))
        let otherStep = model.forward(ids: ids, mask: mask, labels: labels, sequences: B, length: T,
                                      dropout: .init(seed: 1, step: 3, sampleIndices: [40, 41])).output.lossSum
        XCTAssertNotEqual(both, otherStep, "each step draws new masks")
    }

    /// transformers' `_init_weights`: LayerNorms at (1, 0), biases 0, weights N(0, 0.02) and the
    /// residual projections N(0, 0.02 / sqrt(2 n_layer)).
    func testInitializationFollowsTransformers() throws {
        let model = GPT2Model(config: GPT2Config(vocabSize: 500, positionCount: 64, hiddenSize: 64, layerCount: 8, headCount: 4))
        model.initializeParameters(seed: 3)
        func values(_ name: String) throws -> [Float] { Array(model.parameters[try XCTUnwrap(model.table.entry(named: name)).range]) }
        func deviation(_ x: [Float]) -> Double {
            let mean = x.reduce(0.0) { $0 + Double($1) } / Double(x.count)
            return (x.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(x.count)).squareRoot()
        }
        XCTAssertTrue(try values("transformer.h.3.ln_1.weight").allSatisfy { $0 == 1 })
        XCTAssertTrue(try values("transformer.h.3.ln_2.bias").allSatisfy { $0 == 0 })
        XCTAssertTrue(try values("transformer.h.3.attn.c_attn.bias").allSatisfy { $0 == 0 })
        XCTAssertEqual(deviation(try values("transformer.wte.weight")), 0.02, accuracy: 0.001)
        XCTAssertEqual(deviation(try values("transformer.h.0.mlp.c_fc.weight")), 0.02, accuracy: 0.001)
        XCTAssertEqual(deviation(try values("transformer.h.0.mlp.c_proj.weight")), 0.02 / 4, accuracy: 0.0003)
        XCTAssertEqual(deviation(try values("transformer.h.7.attn.c_proj.weight")), 0.02 / 4, accuracy: 0.0003)
        XCTAssertNotEqual(try values("transformer.h.0.attn.c_attn.weight").prefix(8), try values("transformer.h.1.attn.c_attn.weight").prefix(8))
    }

    /// Backward reports ln_f, blocks L-1 ... 0 and then the embeddings, and each range is final when reported.
    func testGradientRangesAreReportedWhenFinal() {
        let model = tinyModel(dropout: 0)
        model.zeroGradients()
        let output = model.forward(ids: ids, mask: mask, labels: labels, sequences: B, length: T).output
        var reported: [(Range<Int>, [Float])] = []
        model.backward(output, dloss: 1) { range in reported.append((range, Array(model.gradients[range]))) }
        XCTAssertEqual(reported.map(\.0), [model.table.headRange] + model.table.layerRanges.reversed() + [model.table.embeddingRange])
        XCTAssertEqual(reported.map(\.0.count).reduce(0, +), model.table.totalCount)
        for (range, values) in reported { XCTAssertEqual(values, Array(model.gradients[range]), "\(range) changed after it was reported") }
    }
}
