import Foundation
import Kernels
import Transformer
import XCTest

/// Time of one training step (forward + backward) at the BERT-mini shape, batch 32 x 128 with 20 masked
/// positions per sequence. Runs only with `SWIFTBERT_TIMING=1` (it takes a few seconds and allocates
/// about 1 GB); it prints the timing and checks the step's result, not the time.
///
///     OPENBLAS_CORETYPE=SKYLAKEX SWIFTBERT_TIMING=1 swift test -c release --filter StepTimingTests
final class StepTimingTests: XCTestCase {
    func testBertMiniStepTimingBatch32x128() throws {
        let environment = ProcessInfo.processInfo.environment
        try XCTSkipUnless(environment["SWIFTBERT_TIMING"] == "1", "set SWIFTBERT_TIMING=1 to time a BERT-mini step")
        let threads = Int(environment["SWIFTBERT_TIMING_THREADS"] ?? "") ?? 2
        BLASRuntime.setThreadCount(threads)
        Parallel.workerCount = threads

        let config = BertConfig(
            vocabSize: 30522, hiddenSize: 256, hiddenLayerCount: 4, attentionHeadCount: 4, intermediateSize: 1024)
        let B = 32, T = 128, maskedPerSequence = 20
        let model = BertForPreTraining(config: config, maxSequenceCount: B, sequenceLength: T)
        model.initializeParameters(seed: 7)

        let random = Philox(seed: 11)
        var ids = [Int32](repeating: 0, count: B * T)
        for i in ids.indices { ids[i] = Int32(999 + random.integer(below: 29_000, at: UInt64(i))) }
        let types = (0..<(B * T)).map { Int32(($0 % T) >= T / 2 ? 1 : 0) }
        let mask = [Int32](repeating: 1, count: B * T)
        var positions: [Int32] = [], labels: [Int32] = []
        for b in 0..<B {
            for k in 0..<maskedPerSequence {
                let t = 1 + k * (T - 2) / maskedPerSequence
                positions.append(Int32(b * T + t))
                labels.append(ids[b * T + t])
                ids[b * T + t] = 103
            }
        }
        let nspLabels = (0..<B).map { Int32($0 % 2) }

        func runStep(_ step: Int) -> StepResult {
            model.step(
                inputIDs: ids, tokenTypeIDs: types, attentionMask: mask, maskedPositions: positions,
                maskedLabels: labels, nspLabels: nspLabels, sampleIndices: Array(0..<B), sequenceCount: B,
                maskedTokenNormalizer: Float(positions.count), sequenceNormalizer: Float(B), training: true,
                dropoutSeed: 5, dropoutStep: UInt64(step), computeGradients: true, onGradientsReady: nil)
        }
        model.zeroGradients()
        var result = runStep(0)
        let steps = Int(environment["SWIFTBERT_TIMING_STEPS"] ?? "") ?? 5
        let start = Date()
        for step in 1...steps { result = runStep(step) }
        let seconds = Date().timeIntervalSince(start) / Double(steps)
        print(String(
            format: "BERT-mini step, batch %dx%d, %d masked: %.1f ms/step, %.0f tokens/s (BLAS %@, %d threads)",
            B, T, positions.count, seconds * 1000, Double(B * T) / seconds, BLASRuntime.coreName, threads))
        print(String(
            format: "parameters %d (%.0f MB at 16 bytes each), activations %.0f MB",
            model.table.totalCount, Double(model.table.totalCount) * 16 / 1e6, Double(model.activationByteCount) / 1e6))

        // Freshly initialised, the MLM loss is about ln(V) and NSP about ln(2).
        XCTAssertEqual(result.mlmLoss, log(Float(config.vocabSize)), accuracy: 0.5)
        XCTAssertEqual(result.nspLoss, log(2), accuracy: 0.2)
        XCTAssertTrue(model.gradients.allSatisfy { $0.isFinite })
    }
}
