import Foundation
import XCTest

/// Extractive question answering through the binary: fine-tuning hf-tiny on a small SQuAD v2.0 file
/// (ranks, resume, evaluation), `predict` against the transformers pipeline, malformed SQuAD.
final class QuestionAnsweringTests: XCTestCase {
    var scratch: URL!
    let squad = Tool.root.appendingPathComponent("Tests/DataTests/Fixtures/squad/squad.json").path
    let tiny = Tool.root.appendingPathComponent("Tests/TransformerTests/Fixtures/hf-tiny").path
    let steps = 6

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("swiftbert-qa-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    /// A run config on `trainFile` (validated on the same file): windows of 32 tokens with a stride of
    /// 8, so that contexts take several windows; SQuAD v2.0 decoding; the best checkpoint by f1.
    func config(trainFile: String) throws -> String {
        let text = """
            { "task": {"type": "question_answering", "train_file": "\(trainFile)", "validation_file": "\(trainFile)",
                       "doc_stride": 8, "version_2_with_negative": true, "metric_for_best_model": "f1"},
              "init_from": "\(tiny)",
              "batch": {"global_batch_size": 8, "sequence_length": 32},
              "optimizer": {"learning_rate": 1e-3},
              "schedule": {"total_steps": \(steps), "warmup_steps": 1},
              "checkpoint": {"every_steps": 3},
              "logging": {"every_steps": 1, "eval_every_steps": 3, "eval_batches": 100} }
            """
        let path = scratch.appendingPathComponent("qa-\(UUID().uuidString).json").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func train(_ name: String, ranks: Int = 1, debugRanks: Int? = nil, _ extra: [String] = []) throws -> (Tool.Result, String) {
        let out = scratch.appendingPathComponent(name).path
        var arguments = ["train", "--config", try config(trainFile: squad), "--out", out] + extra
        if let debugRanks { arguments += ["--debug", "--ranks", "\(debugRanks)"] }
        let result = ranks == 1 ? try Tool.swiftbert(arguments, timeout: 600) : try Tool.mpirun(ranks: ranks, arguments, timeout: 600)
        return (result, out)
    }

    func testLossesDoNotDependOnRanksAndValidationScoresSquad() throws {
        let (reference, single) = try train("ranks1")
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let referenceLosses = try TrainingFixture.losses(single)
        XCTAssertEqual(referenceLosses.keys.sorted(), Array(1...steps))
        let validation = try TrainingFixture.records(single).filter { $0["split"] as? String == "validation" }
        XCTAssertEqual(validation.count, 2)
        for record in validation {
            for name in ["exact_match", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"] {
                let value = try XCTUnwrap(record[name] as? Double, "\(name) missing: \(record)")
                XCTAssertTrue((0...100).contains(value), "\(name) = \(value)")
            }
            // The fixture has 10 answerable and 3 unanswerable questions: the overall scores are their mean.
            let overall = (10 * (record["HasAns_f1"] as! Double) + 3 * (record["NoAns_f1"] as! Double)) / 13
            XCTAssertEqual(record["f1"] as! Double, overall, accuracy: 1e-9)
        }

        for (label, ranks, debugRanks) in [("mpirun 2", 2, nil), ("mpirun 4", 4, nil), ("in-process 2", 1, 2 as Int?)] {
            let (result, out) = try train("ranks-\(ranks)-\(debugRanks ?? 0)", ranks: ranks, debugRanks: debugRanks)
            XCTAssertEqual(result.status, 0, "\(label): \(result.stderr)")
            let losses = try TrainingFixture.losses(out)
            XCTAssertEqual(losses.keys.sorted(), Array(1...steps), label)
            for (step, loss) in referenceLosses {
                let other = losses[step] ?? .nan
                XCTAssertLessThanOrEqual(abs(other - loss) / abs(loss), 1e-5, "\(label), step \(step): \(other) vs \(loss)")
            }
            let scores = try TrainingFixture.records(out).filter { $0["split"] as? String == "validation" }
            XCTAssertEqual(scores.map { $0["exact_match"] as? Double }, validation.map { $0["exact_match"] as? Double }, label)
        }
    }

    func testResumeContinuesExactlyAndEvaluateReproducesTheBestScore() throws {
        let (full, straight) = try train("straight")
        XCTAssertEqual(full.status, 0, full.stderr)
        let (first, interrupted) = try train("interrupted", ["--steps", "3"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let (second, _) = try train("interrupted", ["--resume", "auto"])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(try TrainingFixture.losses(interrupted), try TrainingFixture.losses(straight))
        let a = try Data(contentsOf: URL(fileURLWithPath: try TrainingFixture.latestCheckpoint(straight) + "/model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: try TrainingFixture.latestCheckpoint(interrupted) + "/model.safetensors"))
        XCTAssertEqual(a, b, "final weights differ after resume")

        // `evaluate` on the validation file gives the scores the run logged for its best checkpoint.
        let validation = try TrainingFixture.records(straight).filter { $0["split"] as? String == "validation" }
        let best = try XCTUnwrap(validation.max { ($0["f1"] as! Double) < ($1["f1"] as! Double) })
        let result = try Tool.swiftbert(["evaluate", "--model", straight + "/best", "--data", squad])
        XCTAssertEqual(result.status, 0, result.stderr)
        let printed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        for name in ["exact_match", "f1", "HasAns_f1", "NoAns_f1"] {
            XCTAssertEqual(try XCTUnwrap(printed[name] as? Double, name), best[name] as! Double, accuracy: 1e-6, name)
        }
    }

    /// `predict` answers as transformers' question-answering pipeline did in the committed fixture
    /// (scripts/make_head_fixtures.py), with each case's pipeline arguments.
    func testPredictMatchesThePipeline() throws {
        let directory = Tool.root.appendingPathComponent("Tests/TransformerTests/Fixtures/heads/hf-qa").path
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/pipeline-question-answering.json"))
        let cases = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        XCTAssertEqual(cases.count, 5)
        for (index, item) in cases.enumerated() {
            let arguments = item["arguments"] as! [String: Any]
            let line = try JSONSerialization.data(withJSONObject: ["question": item["question"]!, "context": item["context"]!])
            var command = ["predict", "--model", directory, "--format", "jsonl",
                           "--max-length", "\(arguments["max_seq_len"]!)", "--doc-stride", "\(arguments["doc_stride"]!)",
                           "--max-answer-length", "\(arguments["max_answer_len"]!)", "--top-k", "\(arguments["top_k"]!)"]
            if arguments["handle_impossible_answer"] as! Bool { command.append("--handle-impossible-answer") }
            let result = try Tool.swiftbert(command, input: String(decoding: line, as: UTF8.self) + "\n")
            XCTAssertEqual(result.status, 0, "case \(index): \(result.stderr)")
            let output = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
            let expected = item["output"] as? [[String: Any]] ?? [item["output"] as! [String: Any]]
            let single = output as? [String: Any]
            let answers = try output as? [[String: Any]] ?? [XCTUnwrap(single, "case \(index)")]
            XCTAssertEqual(item["output"] is [Any], output is [Any], "case \(index): a list exactly when the pipeline gives one")
            XCTAssertEqual(answers.count, expected.count, "case \(index)")
            for (answer, reference) in zip(answers, expected) {
                XCTAssertEqual(answer["answer"] as? String, reference["answer"] as? String, "case \(index)")
                XCTAssertEqual(answer["start"] as? Int, reference["start"] as? Int, "case \(index)")
                XCTAssertEqual(answer["end"] as? Int, reference["end"] as? Int, "case \(index)")
                let score = try XCTUnwrap(answer["score"] as? Double), referenceScore = reference["score"] as! Double
                XCTAssertLessThanOrEqual(abs(score - referenceScore) / referenceScore, 1e-4, "case \(index): \(score)")
            }
        }
    }

    func testMalformedSquadNamesFileAndJSONPath() throws {
        let bad = scratch.appendingPathComponent("bad.json").path
        try """
            {"data": [{"title": "t", "paragraphs": [{"context": "the man went to the store.", "qas": [
              {"id": "q1", "question": "who went?", "answers": [{"text": "the man", "answer_start": 0}]},
              {"id": "q2", "question": "where?", "answers": [{"text": "the store", "answer_start": "16"}]}]}]}]}
            """.write(toFile: bad, atomically: true, encoding: .utf8)
        let out = scratch.appendingPathComponent("bad-run").path
        let result = try Tool.swiftbert(["train", "--config", try config(trainFile: bad), "--out", out])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains(bad), result.stderr)
        XCTAssertTrue(result.stderr.contains("data[0].paragraphs[0].qas[1].answers[0].answer_start"), result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").filter { $0.contains("error") }.count, 1, result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/checkpoints/latest"))
    }
}
