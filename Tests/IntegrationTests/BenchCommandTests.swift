import Foundation
import XCTest

/// `swiftbert bench` through the binary, standalone and under real mpirun: the report is complete and
/// consistent with itself, and bad input gets one clear error.
final class BenchCommandTests: XCTestCase {
    let config = Tool.root.appendingPathComponent("configs/debug.json").path

    func bench(ranks: Int?, _ arguments: [String]) throws -> [String: Any] {
        let command = ["bench", "--config", config, "--json"] + arguments
        let result = try ranks.map { try Tool.mpirun(ranks: $0, command) } ?? Tool.swiftbert(command)
        XCTAssertEqual(result.status, 0, result.stderr)
        let line = try XCTUnwrap(result.stdout.split(separator: "\n").last, result.stdout)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], result.stdout)
    }

    func checkReport(_ report: [String: Any], ranks: Int, globalBatch: Int, steps: Int) throws {
        XCTAssertEqual(report["ranks"] as? Int, ranks)
        XCTAssertEqual(report["global_batch"] as? Int, globalBatch)
        XCTAssertEqual(report["micro_batch"] as? Int, globalBatch / ranks)
        XCTAssertEqual(report["masked_per_sequence"] as? Int, 19)
        let seconds = try XCTUnwrap(report["step_seconds"] as? [Double])
        XCTAssertEqual(seconds.count, steps)
        let tokens = try XCTUnwrap(report["tokens_per_second"] as? [String: Double])
        let median = try XCTUnwrap(tokens["median"])
        XCTAssertEqual(median, Double(globalBatch * 128) / seconds.sorted()[steps / 2], accuracy: median * 1e-9)
        XCTAssertLessThanOrEqual(try XCTUnwrap(tokens["min"]), median)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(tokens["max"]), median)

        // The op classes account for the whole of every step (rank 0's mean step).
        let breakdown = try XCTUnwrap(report["breakdown"] as? [String: Double])
        XCTAssertEqual(Set(breakdown.keys), [
            "gemm", "attention", "softmax", "layer_norm", "activation", "embedding", "loss", "optimizer",
            "communication_wait", "other",
        ])
        XCTAssertTrue(breakdown.values.allSatisfy { $0 >= 0 }, "\(breakdown)")
        XCTAssertGreaterThan(breakdown["gemm"]!, 0)
        XCTAssertGreaterThan(breakdown["softmax"]!, 0)
        let mean = seconds.reduce(0, +) / Double(steps)
        XCTAssertEqual(breakdown.values.reduce(0, +), mean, accuracy: mean * 1e-6)

        let flops = try XCTUnwrap(report["flops_per_token"] as? Double)
        let peak = try XCTUnwrap(report["sgemm_peak_gflops"] as? Double)
        XCTAssertGreaterThan(peak, 0)
        XCTAssertEqual(try XCTUnwrap(report["achieved_gflops"] as? Double), flops * median / 1e9, accuracy: 1e-6)
        XCTAssertEqual(try XCTUnwrap(report["mfu"] as? Double), flops * median / 1e9 / peak, accuracy: 1e-9)

        // Weights, gradients and both moments are written every step: the floor is resident.
        let parameters = try XCTUnwrap(report["parameters"] as? Int)
        // Hugging Face's BertForPreTraining(configs/debug.json) has 2,092,476 parameters (tied decoder counted once).
        XCTAssertEqual(parameters, 2_092_476)
        XCTAssertGreaterThan(try XCTUnwrap(report["peak_rss_bytes"] as? Int), 16 * parameters)
        // configs/debug.json (C 64, I 128, 2 heads, 2 layers), micro-batch B x 128 tokens, N = 128 B:
        // per layer 8NC + NI + 2 B 128^2 floats, plus 2NC for the embeddings.
        let B = globalBatch / ranks, N = 128 * B
        let activationFloor = 4 * (2 * (8 * N * 64 + N * 128 + 2 * B * 128 * 128) + 2 * N * 64)
        XCTAssertEqual(report["activation_floor_bytes"] as? Int, activationFloor)
        XCTAssertEqual(report["memory_floor_bytes"] as? Int, 16 * parameters + activationFloor)
    }

    func testStandaloneReportIsCompleteAndConsistent() throws {
        let report = try bench(ranks: nil, ["--steps", "3", "--warmup", "1", "--batch", "4"])
        try checkReport(report, ranks: 1, globalBatch: 4, steps: 3)
        XCTAssertEqual(report["breakdown"].flatMap { ($0 as? [String: Double])?["communication_wait"] }, 0)
    }

    func testTwoRanksSplitTheGlobalBatch() throws {
        let report = try bench(ranks: 2, ["--steps", "3", "--warmup", "1", "--batch", "4"])
        try checkReport(report, ranks: 2, globalBatch: 4, steps: 3)
    }

    func testTextReportNamesEveryFigure() throws {
        let result = try Tool.swiftbert(["bench", "--config", config, "--steps", "2", "--warmup", "0", "--batch", "2"])
        XCTAssertEqual(result.status, 0, result.stderr)
        for expected in ["tokens/s: median", "model FLOPs per token", "MFU", "softmax", "memory: peak resident"] {
            XCTAssertTrue(result.stdout.contains(expected), "missing \(expected):\n\(result.stdout)")
        }
    }

    func testBatchThatDoesNotSplitOverTheRanksIsRefused() throws {
        let result = try Tool.mpirun(ranks: 2, ["bench", "--config", config, "--batch", "3", "--steps", "1"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("batch.global_batch_size"), result.stderr)
        XCTAssertEqual(result.stderr.components(separatedBy: "error:").count - 1, 1, result.stderr)
    }

    func testMissingConfigurationIsNamed() throws {
        let result = try Tool.swiftbert(["bench", "--config", "/nonexistent/bert.json"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("/nonexistent/bert.json"), result.stderr)
    }
}
