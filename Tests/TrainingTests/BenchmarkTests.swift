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
}
