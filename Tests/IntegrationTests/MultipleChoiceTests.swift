import Foundation
import XCTest

/// `swiftbert train` of multiple choice (`task.type` multiple_choice) on a SWAG-format CSV fixture
/// from hf-tiny: the same losses and parameters on 1 and 2 ranks, the checkpoint's head, and
/// `evaluate` matching the run's validation.
final class MultipleChoiceTests: XCTestCase {
    func testTrainsTheSameOnOneAndTwoRanksAndEvaluates() throws {
        let directory = try FineTuning.scratch("choice", copying: ["swag/train.csv", "swag/dev.csv"])
        let config = try FineTuning.writeConfig([
            "task": ["type": "multiple_choice", "train_file": directory + "/train.csv", "validation_file": directory + "/dev.csv"],
            "init_from": FineTuning.hfTiny,
            "batch": ["global_batch_size": 4, "sequence_length": 32],
            "optimizer": ["learning_rate": 1e-3],
            "schedule": ["total_steps": 12, "warmup_steps": 2],
            "checkpoint": ["every_steps": 12],
            "logging": ["every_steps": 1, "eval_every_steps": 6, "eval_batches": 100],
        ], to: directory + "/config.json")

        let single = directory + "/run-1"
        let reference = try FineTuning.train(config, out: single)
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let losses = try TrainingFixture.losses(single)
        XCTAssertEqual(losses.keys.sorted(), Array(1...12))
        // The head starts near zero (initializer_range 0.02), so the first loss is that of a
        // uniform guess among 4 choices.
        XCTAssertEqual(losses[1] ?? .nan, log(4.0), accuracy: 0.05)
        let weights = try TrainingFixture.tensors(try TrainingFixture.latestCheckpoint(single) + "/model.safetensors")

        let double = directory + "/run-2"
        let result = try FineTuning.train(config, out: double, ranks: 2)
        XCTAssertEqual(result.status, 0, result.stderr)
        FineTuning.assertSameLosses(losses, try TrainingFixture.losses(double), tolerance: 1e-5, "2 ranks")
        let other = try TrainingFixture.tensors(try TrainingFixture.latestCheckpoint(double) + "/model.safetensors")
        try FineTuning.assertSameParameters(weights, other, "2 ranks", alsoShiftInvariant: ["classifier.bias"])

        let checkpoint = try TrainingFixture.latestCheckpoint(single)
        let model = try FineTuning.object(checkpoint + "/config.json")
        XCTAssertEqual(model["architectures"] as? [String], ["BertForMultipleChoice"])
        XCTAssertEqual((weights["classifier.weight"]?.count), model["hidden_size"] as? Int, "one score per choice")

        let last = try XCTUnwrap(try FineTuning.validationRecords(single).last)
        XCTAssertEqual(last["step"] as? Int, 12)
        let evaluated = try Tool.swiftbert(["evaluate", "--model", checkpoint, "--data", directory + "/dev.csv"])
        XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
        let printed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(evaluated.stdout.utf8)) as? [String: Any])
        for metric in ["loss", "accuracy"] {
            let a = try XCTUnwrap(printed[metric] as? Double, metric), b = try XCTUnwrap(last[metric] as? Double, metric)
            XCTAssertEqual(a, b, accuracy: 1e-4 * max(1, abs(b)), metric)
        }
    }

    /// Files whose questions have different numbers of choices fail naming the file.
    func testDifferentChoiceCountsAreRejected() throws {
        let directory = try FineTuning.scratch("choice-bad", copying: ["swag/train.csv"])
        try "sent1,sent2,ending0,ending1,label\nthe man walks,he,runs.,sits.,0\n"
            .write(toFile: directory + "/dev.csv", atomically: true, encoding: .utf8)
        let config = try FineTuning.writeConfig([
            "task": ["type": "multiple_choice", "train_file": directory + "/train.csv", "validation_file": directory + "/dev.csv"],
            "init_from": FineTuning.hfTiny, "batch": ["global_batch_size": 4, "sequence_length": 32],
            "schedule": ["total_steps": 2],
        ], to: directory + "/config.json")
        let result = try FineTuning.train(config, out: directory + "/run")
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("dev.csv") && result.stderr.contains("choices"), result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/run/checkpoints"))
    }
}
