import Foundation
import Kernels
import Transformer
import XCTest

/// The whole model's backward against finite differences of its own forward on a tiny configuration,
/// with dropout on (the Hugging Face fixtures can only check dropout off); and the accumulation
/// contract the trainer relies on: micro-batches add up to the whole batch.
final class ModelGradientTests: XCTestCase {
    let config = BertConfig(
        vocabSize: 23, hiddenSize: 20, hiddenLayerCount: 2, attentionHeadCount: 2, intermediateSize: 28,
        hiddenActivation: .gelu, hiddenDropoutProbability: 0.2, attentionDropoutProbability: 0.25,
        maxPositionEmbeddings: 12, typeVocabSize: 2, initializerRange: 0.3, layerNormEpsilon: 1e-5, nspClassCount: 3)
    let B = 3, T = 7

    struct Batch {
        var ids: [Int32], types: [Int32], mask: [Int32], positions: [Int32], labels: [Int32], nsp: [Int32], samples: [Int]
    }

    func makeBatch() -> Batch {
        let random = Philox(seed: 3)
        var ids = (0..<(B * T)).map { Int32(1 + random.integer(below: config.vocabSize - 1, at: UInt64($0))) }
        var mask = [Int32](repeating: 1, count: B * T)
        for t in 5..<T { mask[2 * T + t] = 0; ids[2 * T + t] = 0 }  // sequence 2 is padded
        let types = (0..<(B * T)).map { Int32(($0 % T) >= 3 ? 1 : 0) }
        let positions: [Int32] = [1, 4, Int32(T + 2), Int32(2 * T + 1), Int32(2 * T + 3)]
        return Batch(
            ids: ids, types: types, mask: mask, positions: positions,
            labels: positions.map { Int32((Int($0) * 7) % config.vocabSize) }, nsp: [0, 2, 1], samples: [40, 41, 42])
    }

    func makeModel(sequences: Int) -> BertForPreTraining {
        let model = BertForPreTraining(config: config, maxSequenceCount: sequences, sequenceLength: T)
        model.initializeParameters(seed: 5)
        // Non-trivial LayerNorm parameters and biases, so that their gradients are checked too.
        let random = Philox(seed: 6)
        for entry in model.table.entries where entry.name.contains("LayerNorm") || entry.name.hasSuffix("bias") {
            for i in entry.range { model.parameters[i] += 0.2 * (random.uniform(at: UInt64(i)) - 0.5) }
        }
        return model
    }

    @discardableResult
    func run(
        _ model: BertForPreTraining, _ batch: Batch, gradients: Bool, maskedNormalizer: Float = 5, sequenceNormalizer: Float = 3,
        onReady: ((Range<Int>) -> Void)? = nil
    ) -> StepResult {
        model.step(
            inputIDs: batch.ids, tokenTypeIDs: batch.types, attentionMask: batch.mask,
            maskedPositions: batch.positions, maskedLabels: batch.labels, nspLabels: batch.nsp,
            sampleIndices: batch.samples, sequenceCount: batch.samples.count,
            maskedTokenNormalizer: maskedNormalizer, sequenceNormalizer: sequenceNormalizer, training: true,
            dropoutSeed: 77, dropoutStep: 9, computeGradients: gradients, onGradientsReady: onReady)
    }

    func testGradientsMatchFiniteDifferencesWithDropout() {
        let model = makeModel(sequences: B)
        let batch = makeBatch()
        model.zeroGradients()
        let result = run(model, batch, gradients: true)
        XCTAssertEqual(result.loss, result.mlmLoss + result.nspLoss)
        let analytic = Array(model.gradients)
        let random = Philox(seed: 8)
        let h: Float = 1e-2
        for (index, entry) in model.table.entries.enumerated() {
            let scale = analytic[entry.range].map { abs($0) }.max() ?? 0
            // A few elements per tensor (several rows of the embedding tables are unused by this batch).
            var checked = 0
            var attempt: UInt64 = 0
            while checked < 4 && attempt < 200 {
                let i = entry.offset + random.integer(below: entry.count, at: UInt64(index) << 20 | attempt)
                attempt += 1
                if analytic[i] == 0 && attempt < 100 { continue }
                let saved = model.parameters[i]
                model.parameters[i] = saved + h
                let plus = run(model, batch, gradients: false).loss
                model.parameters[i] = saved - h
                let minus = run(model, batch, gradients: false).loss
                model.parameters[i] = saved
                let numeric = (plus - minus) / (2 * h)
                XCTAssertEqual(
                    numeric, analytic[i], accuracy: 2e-2 * scale + 2e-4,
                    "\(entry.name)[\(i - entry.offset)]: finite difference \(numeric), backward \(analytic[i])")
                checked += 1
            }
        }
    }

    /// The last layer at the loss rows only gives what every row gives: the same loss, accuracy and
    /// gradients with dropout on (the same masks), in one and two workers; also with masked positions
    /// out of order and one of them at a [CLS] token.
    func testLastLayerAtTheLossRowsOnlyEqualsEveryRow() {
        let saved = Parallel.workerCount
        defer { Parallel.workerCount = saved }
        var batch = makeBatch()
        batch.positions = [Int32(T + 2), 4, 0, Int32(2 * T + 3), 1]
        for workers in [1, 2] {
            Parallel.workerCount = workers
            var results: [StepResult] = []
            var gradients: [[Float]] = []
            for lossRowsOnly in [false, true] {
                let model = makeModel(sequences: B)
                model.computesLastLayerAtLossRowsOnly = lossRowsOnly
                model.zeroGradients()
                results.append(run(model, batch, gradients: true))
                gradients.append(Array(model.gradients))
            }
            XCTAssertEqual(results[1].loss, results[0].loss, accuracy: 1e-6 * abs(results[0].loss))
            XCTAssertEqual(results[1].mlmCorrect, results[0].mlmCorrect)
            XCTAssertEqual(results[1].nspCorrect, results[0].nspCorrect)
            let scale = gradients[0].map { abs($0) }.max()!
            let error = zip(gradients[0], gradients[1]).map { abs($0 - $1) }.max()!
            XCTAssertGreaterThan(scale, 0)
            XCTAssertLessThan(error, 1e-5 * scale, "\(workers) worker(s): gradients differ by \(error)")
        }
    }

    func testMicroBatchesAddUpToTheWholeBatchWithGlobalNormalizers() {
        let batch = makeBatch()
        let whole = makeModel(sequences: B)
        whole.zeroGradients()
        let wholeResult = run(whole, batch, gradients: true)

        // Sequence 0 alone, then sequences 1 and 2, with the whole batch's counts as normalizers.
        let split = makeModel(sequences: B)
        split.zeroGradients()
        func part(_ sequences: Range<Int>) -> Batch {
            let first = Int32(sequences.lowerBound * T)
            let keep = batch.positions.indices.filter { sequences.contains(Int(batch.positions[$0]) / T) }
            return Batch(
                ids: Array(batch.ids[(sequences.lowerBound * T)..<(sequences.upperBound * T)]),
                types: Array(batch.types[(sequences.lowerBound * T)..<(sequences.upperBound * T)]),
                mask: Array(batch.mask[(sequences.lowerBound * T)..<(sequences.upperBound * T)]),
                positions: keep.map { batch.positions[$0] - first }, labels: keep.map { batch.labels[$0] },
                nsp: Array(batch.nsp[sequences]), samples: Array(batch.samples[sequences]))
        }
        let first = run(split, part(0..<1), gradients: true)
        let second = run(split, part(1..<3), gradients: true)
        XCTAssertEqual(first.loss + second.loss, wholeResult.loss, accuracy: 1e-5 * abs(wholeResult.loss))
        XCTAssertEqual(first.mlmCount + second.mlmCount, wholeResult.mlmCount)
        XCTAssertEqual(first.mlmCorrect + second.mlmCorrect, wholeResult.mlmCorrect)
        XCTAssertEqual(first.nspCorrect + second.nspCorrect, wholeResult.nspCorrect)
        let scale = whole.gradients.map { abs($0) }.max()!
        let error = zip(whole.gradients, split.gradients).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(error, 1e-5 * scale, "accumulated micro-batch gradients differ from the whole batch's")
    }

    func testGradientRangesAreReportedInReverseLayerOrderWhenFinal() {
        let model = makeModel(sequences: B)
        model.zeroGradients()
        var ranges: [Range<Int>] = []
        var valuesAtReport: [[Float]] = []
        run(model, makeBatch(), gradients: true) { range in
            ranges.append(range)
            valuesAtReport.append(Array(model.gradients[range]))
        }
        let table = model.table
        XCTAssertEqual(ranges, [table.headRange] + table.layerRanges.reversed() + [table.embeddingRange])
        XCTAssertEqual(ranges.map(\.count).reduce(0, +), table.totalCount)
        for (range, values) in zip(ranges, valuesAtReport) {
            XCTAssertEqual(values, Array(model.gradients[range]), "range \(range) changed after it was reported final")
        }
    }

    func testDropoutOffInEvaluationAndGradientsAreNotTouchedWithoutBackward() {
        let model = makeModel(sequences: B)
        let batch = makeBatch()
        model.zeroGradients()
        let evaluation = { (step: UInt64) in
            model.step(
                inputIDs: batch.ids, tokenTypeIDs: batch.types, attentionMask: batch.mask,
                maskedPositions: batch.positions, maskedLabels: batch.labels, nspLabels: batch.nsp,
                sampleIndices: batch.samples, sequenceCount: self.B, maskedTokenNormalizer: 5, sequenceNormalizer: 3,
                training: false, dropoutSeed: 1, dropoutStep: step, computeGradients: false, onGradientsReady: nil)
        }
        XCTAssertEqual(evaluation(1), evaluation(2), "evaluation must not depend on the dropout keys")
        XCTAssertTrue(model.gradients.allSatisfy { $0 == 0 })
        let trainingA = run(model, batch, gradients: false)
        var other = batch
        other.samples = [50, 51, 52]
        let trainingB = run(model, other, gradients: false)
        XCTAssertNotEqual(trainingA.loss, trainingB.loss, "dropout masks must depend on the sample indices")
        XCTAssertEqual(run(model, batch, gradients: false), trainingA, "dropout must be reproducible")
    }

    func testInitializationFollowsBert() {
        let model = BertForPreTraining(config: BertConfig(
            vocabSize: 500, hiddenSize: 64, hiddenLayerCount: 1, attentionHeadCount: 4, intermediateSize: 128,
            initializerRange: 0.02), maxSequenceCount: 1, sequenceLength: 8)
        model.initializeParameters(seed: 1)
        for entry in model.table.entries {
            let values = Array(model.parameters[entry.range])
            if entry.name.hasSuffix("bias") {
                XCTAssertTrue(values.allSatisfy { $0 == 0 }, entry.name)
            } else if entry.name.contains("LayerNorm") {
                XCTAssertTrue(values.allSatisfy { $0 == 1 }, entry.name)
            } else {
                let mean = values.reduce(0, +) / Float(values.count)
                let std = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(values.count)).squareRoot()
                XCTAssertEqual(mean, 0, accuracy: 0.004, entry.name)
                XCTAssertEqual(std, 0.02, accuracy: 0.002, entry.name)
            }
        }
        let word = model.table.entry(named: "bert.embeddings.word_embeddings.weight")!
        XCTAssertTrue(model.parameters[word.offset..<(word.offset + 64)].allSatisfy { $0 == 0 }, "[PAD] row is zero")
        let again = BertForPreTraining(config: model.config, maxSequenceCount: 1, sequenceLength: 8)
        again.initializeParameters(seed: 1)
        XCTAssertEqual(Array(again.parameters), Array(model.parameters))
    }
}
