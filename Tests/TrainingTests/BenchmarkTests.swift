import Foundation
import Training
import XCTest

final class BenchmarkTests: XCTestCase {
    /// The FLOPs per token `swiftbert bench` divides by equal what PyTorch's FlopCounterMode counts for
    /// one forward and backward pass of the same model with the MLM head on the masked positions.
    func testAnalyticFLOPsPerTokenMatchPyTorchsCount() throws {
        let fixture = try loadFixture("flops.json")
        let cases = try XCTUnwrap(fixture["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 5)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        for testCase in cases {
            let path = try XCTUnwrap(testCase["config"] as? String)
            let length = try XCTUnwrap(testCase["sequence_length"] as? Int)
            let masked = try XCTUnwrap(testCase["masked_per_sequence"] as? Int)
            let expected = try XCTUnwrap((testCase["flops_per_token"] as? NSNumber)?.doubleValue)
            let config = try TrainingConfig.load(contentsOfFile: root.appendingPathComponent(path).path)
            let flops = Benchmark.flopsPerToken(config.model, sequenceLength: length, maskedPerSequence: masked)
            XCTAssertEqual(flops, expected, accuracy: expected * 1e-9, "\(path) at length \(length)")
        }
    }

    /// The executed count leaves out only the last layer's rows that no loss reads: all of the model
    /// count when every row is kept, less with fewer kept rows, and the saving grows with the share
    /// of the last layer in the model.
    func testExecutedFLOPsLeaveOutOnlyTheLastLayersUnreadRows() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let mini = try TrainingConfig.load(contentsOfFile: root.appendingPathComponent("configs/bert-mini.json").path).model
        let T = 128
        let model = Benchmark.flopsPerToken(mini, sequenceLength: T, maskedPerSequence: 20)
        XCTAssertEqual(
            Benchmark.executedFlopsPerToken(mini, sequenceLength: T, maskedPerSequence: T - 1),
            Benchmark.flopsPerToken(mini, sequenceLength: T, maskedPerSequence: T - 1), accuracy: 1e-6 * model)
        let executed = Benchmark.executedFlopsPerToken(mini, sequenceLength: T, maskedPerSequence: 20)
        // bert-mini (C 256, I 1024, 4 layers): the last layer's unread rows are 107 of 128, each
        // 3 x 2 x (2C^2 + 2CI + 2TC) FLOPs.
        let C = 256.0, I = 1024.0
        XCTAssertEqual(model - executed, 107.0 / 128 * 3 * 2 * (2 * C * C + 2 * C * I + 2 * 128 * C), accuracy: 1e-6 * model)
        var deeper = mini
        deeper.hiddenLayerCount = 8
        XCTAssertLessThan(
            1 - Benchmark.executedFlopsPerToken(deeper, sequenceLength: T, maskedPerSequence: 20)
                / Benchmark.flopsPerToken(deeper, sequenceLength: T, maskedPerSequence: 20),
            1 - executed / model)
    }
}
