import Foundation
import XCTest

/// Settings at their extremes, and settings changed between a run and its continuation.
final class ConfigChangeTests: XCTestCase {
    private func train(_ extra: [String], out: String, config: String? = TrainingFixture.debugConfig) throws -> Tool.Result {
        var arguments = ["train", "--out", out] + extra
        if let config { arguments += ["--config", config, "--data", try TrainingFixture.data()] }
        return try Tool.swiftbert(arguments, timeout: 600)
    }

    /// The values the key audit (TrainingTests' ConfigKeyAuditTests) accepts at the edge of their range
    /// train through an evaluation and a checkpoint (debug.json evaluates and checkpoints every 10 steps).
    func testAcceptedExtremeValuesTrainWithoutFailing() throws {
        let huge = "9223372036854775807"
        let settings = [
            "logging.eval_every_steps=0", "logging.eval_every_steps=\(huge)", "logging.every_steps=\(huge)",
            "logging.eval_batches=\(huge)", "checkpoint.every_steps=\(huge)", "checkpoint.keep_last=\(huge)",
            "checkpoint.keep_every=0", "checkpoint.keep_every=\(huge)", "max_consecutive_nonfinite_steps=\(huge)",
            "optimizer.max_grad_norm=0", "optimizer.max_grad_norm=1e300", "optimizer.beta1=0", "optimizer.beta2=0",
            "optimizer.weight_decay=0", "optimizer.epsilon=1e300", "model.num_hidden_layers=0",
            "model.hidden_dropout_prob=0", "model.attention_probs_dropout_prob=0", "model.initializer_range=0",
            "model.pad_token_id=-1", "model.pad_token_id=\(huge)", "schedule.warmup_steps=0",
            "schedule.warmup_steps=30", "schedule.min_lr_ratio=0", "seed=0", "seed=18446744073709551615",
            "watchdog_seconds=0", "allreduce_bucket_mb=0.01",
        ]
        for setting in settings {
            let out = TrainingFixture.runDirectory("extreme")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let result = try train(["--set", setting, "--debug", "--steps", "11"], out: out)
            XCTAssertEqual(result.status, 0, "\(setting): \(result.stderr)")
            XCTAssertTrue(result.stdout.contains("finished at step 11"), "\(setting): \(result.stdout)")
        }
    }

    func testEvaluationEveryZeroStepsMeansNoEvaluationUnderMPI() throws {
        let out = TrainingFixture.runDirectory("no-eval")
        let result = try Tool.mpirun(
            ranks: 2, ["train", "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(), "--out", out,
                       "--set", "logging.eval_every_steps=0", "--set", "schedule.total_steps=12"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let records = try TrainingFixture.records(out)
        XCTAssertEqual(records.filter { $0["split"] as? String == "train" }.count, 12)
        XCTAssertTrue(records.allSatisfy { $0["split"] as? String != "validation" }, "an evaluation ran")
    }

    /// A finished run continued with a longer schedule from its own run directory, as the README shows:
    /// accepted with one notice, the learning rate follows the new schedule from the step it resumes at.
    func testARunIsExtendedWithALongerScheduleAndNewCadence() throws {
        let out = TrainingFixture.runDirectory("extend")
        let first = try train(["--set", "schedule.total_steps=10"], out: out)
        XCTAssertEqual(first.status, 0, first.stderr)

        let extended = try train(["--set", "schedule.total_steps=20", "--set", "logging.every_steps=5",
                                  "--set", "checkpoint.every_steps=5"], out: out, config: nil)
        XCTAssertEqual(extended.status, 0, extended.stderr)
        let notices = extended.stdout.split(separator: "\n").filter { $0.contains("resuming with changed settings") }
        XCTAssertEqual(notices.count, 1, extended.stdout)
        let notice = String(notices.first ?? "")
        for change in ["schedule.total_steps 10 -> 20", "logging.every_steps 1 -> 5", "checkpoint.every_steps 10 -> 5"] {
            XCTAssertTrue(notice.contains(change), "\(notice) lacks \(change)")
        }
        // debug.json: peak 1e-3, 5 warm-up steps; linear decay to 0 at step 20 gives 1e-3 x 10/15 at step 10.
        XCTAssertTrue(notice.contains("learning rate at step 10 is 0.000667"), notice)
        XCTAssertTrue(extended.stdout.contains("finished at step 20 (started at 10)"), extended.stdout)
        let records = try TrainingFixture.records(out).filter { $0["split"] as? String == "train" }
        XCTAssertEqual(records.compactMap { $0["step"] as? Int }.filter { $0 > 10 }, [15, 20])
        let lr15 = try XCTUnwrap(records.first { $0["step"] as? Int == 15 }?["lr"] as? Double)
        XCTAssertEqual(lr15, 1e-3 * 6 / 15, accuracy: 1e-9)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/checkpoints/step-00000015"))

        let config = try String(contentsOfFile: out + "/config.json", encoding: .utf8)
        XCTAssertTrue(config.contains("\"total_steps\": 20"), "the run's config.json is not the extended one")
    }

    func testChangesThatRewriteThePastAreRefusedNamingTheKey() throws {
        let out = TrainingFixture.runDirectory("refuse")
        let first = try train(["--set", "schedule.total_steps=10"], out: out)
        XCTAssertEqual(first.status, 0, first.stderr)
        let before = try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints").sorted()
        for (setting, key) in [("batch.global_batch_size=4", "batch.global_batch_size"), ("seed=7", "seed"),
                               ("schedule.warmup_steps=2", "schedule.warmup_steps"), ("optimizer.name=lamb", "optimizer.name"),
                               ("model.hidden_dropout_prob=0", "model.hidden_dropout_prob"),
                               ("data.masked_lm_prob=0.2", "data.masked_lm_prob"),
                               ("schedule.total_steps=5", "schedule.total_steps")] {
            let result = try train(["--set", setting], out: out, config: nil)
            XCTAssertNotEqual(result.status, 0, setting)
            XCTAssertTrue(result.stderr.contains(key), "\(setting): \(result.stderr)")
            XCTAssertEqual(result.stderr.split(separator: "\n").filter { $0.contains("error") }.count, 1, result.stderr)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints").sorted(), before)
    }

    func testTrainWithoutAConfigNeedsAnExistingRun() throws {
        let missing = TrainingFixture.runDirectory("no-run")
        let result = try Tool.swiftbert(["train", "--out", missing])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("\(missing)/config.json does not exist"), result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing))
    }
}
