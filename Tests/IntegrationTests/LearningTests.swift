import Foundation
import XCTest

/// bert-tiny learns from real text: a short mpirun run on the bundled King James Bible excerpt.
final class LearningTests: XCTestCase {
    func testBertTinyLearnsMaskedTokensFromRealText() throws {
        let corpus = Tool.root.appendingPathComponent("corpus/kjv.txt").path
        let data = TrainingFixture.runDirectory("kjv-data")
        let prepared = try Tool.swiftbert(
            ["prepare", "--input", corpus, "--vocab", Tool.root.appendingPathComponent("corpus/vocab.txt").path,
             "--out", data, "--dupe-factor", "1", "--validation-fraction", "0.02"], timeout: 600)
        XCTAssertEqual(prepared.status, 0, prepared.stderr)

        let out = TrainingFixture.runDirectory("learning")
        let result = try Tool.mpirun(
            ranks: 2,
            ["train", "--config", Tool.root.appendingPathComponent("configs/bert-tiny.json").path, "--data", data,
             "--out", out, "--set", "batch.global_batch_size=16", "--set", "batch.micro_batch_size=8",
             "--set", "schedule.total_steps=150", "--set", "schedule.warmup_steps=15",
             "--set", "optimizer.learning_rate=0.002", "--set", "logging.eval_every_steps=150",
             "--set", "logging.eval_batches=8", "--set", "checkpoint.every_steps=150"],
            timeout: 1200)
        XCTAssertEqual(result.status, 0, result.stderr)
        let records = try TrainingFixture.records(out)
        let first = try XCTUnwrap(records.first { $0["split"] as? String == "train" })
        let validation = try XCTUnwrap(records.last { $0["split"] as? String == "validation" })
        let startLoss = try XCTUnwrap(first["mlm_loss"] as? Double)
        let endLoss = try XCTUnwrap(validation["mlm_loss"] as? Double)
        let accuracy = try XCTUnwrap(validation["mlm_accuracy"] as? Double)
        // A fresh model starts near ln(30522) = 10.3 nats. A unigram model of this text is about 7 nats:
        // ending below 0.7 x the start means the model learned at least the token distribution, on
        // held-out text. Chance accuracy is 1/30522 (0.003%); 5% is over a thousand times that and needs
        // the frequent tokens predicted where they occur.
        XCTAssertGreaterThan(startLoss, 9.5)
        XCTAssertLessThan(endLoss, 0.7 * startLoss, "validation MLM loss \(endLoss) from \(startLoss)")
        XCTAssertGreaterThan(accuracy, 0.05, "validation MLM accuracy \(accuracy)")
    }
}
