import Foundation
import XCTest

/// GPT-2 causal LM training as a user runs it: `prepare --objective causal_lm`, `train` with
/// configs/gpt2-debug.json standalone, under mpirun and in the debug mode, resume, and `generate`
/// from what it wrote; files read back independently.
final class CausalLMTests: XCTestCase {
    static let tokenizer = Tool.root.appendingPathComponent("Tests/DataTests/Fixtures/bpe/tokenizer.json").path
    static let config = Tool.root.appendingPathComponent("configs/gpt2-debug.json").path

    /// The bundled corpus packed into sequences of 64 tokens, once per test process.
    static let dataDirectory: Result<String, Error> = Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftbert-causal-data-\(getpid())").path
        let result = try Tool.swiftbert(
            ["prepare", "--objective", "causal_lm", "--tokenizer", tokenizer,
             "--input", Tool.root.appendingPathComponent("corpus/kjv.txt").path,
             "--out", directory, "--max-seq-length", "64", "--overwrite"], timeout: 600)
        guard result.status == 0 else { throw TrainingFailure("prepare failed: \(result.stderr)") }
        return directory
    }

    /// The fixture tokenizer has 1200 ids; sequences of 64 tokens.
    let shape = ["--set", "model.vocab_size=1200", "--set", "batch.sequence_length=64"]

    func train(ranks: Int = 1, debugRanks: Int? = nil, _ extra: [String], data: String? = nil, out: String) throws -> Tool.Result {
        let arguments = ["train", "--config", Self.config, "--data", try data ?? Self.dataDirectory.get(), "--out", out] + shape + extra
        if let debugRanks {
            return try Tool.swiftbert(arguments + ["--debug", "--ranks", "\(debugRanks)"], timeout: 600)
        }
        return ranks == 1 ? try Tool.swiftbert(arguments, timeout: 600) : try Tool.mpirun(ranks: ranks, arguments, timeout: 600)
    }

    /// Dropout on (the config's 0.1 everywhere): its masks follow the samples, not the ranks.
    func testLossAndWeightsDoNotDependOnTheNumberOfRanks() throws {
        let steps = ["--set", "schedule.total_steps=12", "--set", "checkpoint.every_steps=12", "--set", "logging.every_steps=1"]
        let single = TrainingFixture.runDirectory("causal-ranks1")
        let reference = try train(steps, out: single)
        XCTAssertEqual(reference.status, 0, reference.stderr)
        XCTAssertEqual(try TrainingFixture.losses(single).keys.sorted(), Array(1...12))
        let referenceWeights = try TrainingFixture.tensors(try TrainingFixture.latestCheckpoint(single) + "/model.safetensors")
        XCTAssertEqual(referenceWeights.count, 4 + 12 * 2, "wte, wpe, ln_f and 12 tensors a block")

        for (label, ranks, debugRanks) in [("mpirun 2", 2, nil), ("mpirun 4", 4, nil), ("in-process 2", 1, 2 as Int?)] {
            let out = TrainingFixture.runDirectory("causal-ranks-\(ranks)-\(debugRanks ?? 0)")
            let result = try train(ranks: ranks, debugRanks: debugRanks, steps, out: out)
            XCTAssertEqual(result.status, 0, "\(label): \(result.stderr)")
            try TrainingFixture.assertSameRun(out, as: single, steps: Array(1...12), label)
        }
    }

    func testResumeContinuesTheLossCurveExactly() throws {
        let total = ["--set", "schedule.total_steps=20", "--set", "checkpoint.every_steps=10", "--set", "logging.every_steps=1"]
        let straight = TrainingFixture.runDirectory("causal-straight")
        XCTAssertEqual(try train(total, out: straight).status, 0)
        let interrupted = TrainingFixture.runDirectory("causal-interrupted")
        let first = try train(total + ["--steps", "10"], out: interrupted)
        XCTAssertEqual(first.status, 0, first.stderr)
        let second = try train(total + ["--resume", "auto"], out: interrupted)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("resumed from"), second.stdout)
        XCTAssertEqual(try TrainingFixture.losses(interrupted), try TrainingFixture.losses(straight))
        let a = try Data(contentsOf: URL(fileURLWithPath: try TrainingFixture.latestCheckpoint(straight) + "/model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: try TrainingFixture.latestCheckpoint(interrupted) + "/model.safetensors"))
        XCTAssertEqual(a, b, "final weights differ after resume")
    }

    /// Real text: validation loss and perplexity fall far below their start, and the checkpoint is a
    /// GPT-2 directory `generate` runs with the tokenizer it carries.
    func testLearnsRealTextAndItsCheckpointGenerates() throws {
        let out = TrainingFixture.runDirectory("causal-learn")
        let result = try train(
            ["--set", "schedule.total_steps=600", "--set", "schedule.warmup_steps=20", "--set", "logging.eval_every_steps=200",
             "--set", "checkpoint.every_steps=600", "--set", "optimizer.learning_rate=0.003"], out: out)
        XCTAssertEqual(result.status, 0, result.stderr)
        let validation = try TrainingFixture.records(out).filter { $0["split"] as? String == "validation" }
        let losses = validation.compactMap { $0["loss"] as? Double }
        let perplexities = validation.compactMap { $0["perplexity"] as? Double }
        XCTAssertEqual(losses.count, 3, "evaluations at steps 200, 400 and 600")
        XCTAssertEqual(perplexities.count, losses.count)
        for (loss, perplexity) in zip(losses, perplexities) { XCTAssertEqual(perplexity, exp(loss), accuracy: 1e-6 * perplexity) }
        // A uniform guess over 1200 ids has loss ln 1200 = 7.09; text the model has learned, far less.
        let first = try XCTUnwrap(TrainingFixture.losses(out)[10])
        XCTAssertGreaterThan(first, 5.5, "the start is near uniform")
        XCTAssertLessThan(try XCTUnwrap(losses.last), 4.4, "validation losses \(losses)")
        XCTAssertLessThan(try XCTUnwrap(perplexities.last), exp(first) / 10, "perplexity at step 10: \(exp(first))")
        XCTAssertLessThan(losses[2], losses[0], "still learning")

        let checkpoint = try TrainingFixture.latestCheckpoint(out)
        for file in ["config.json", "model.safetensors", "tokenizer.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint + "/" + file), file)
        }
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: checkpoint + "/config.json"))) as? [String: Any])
        XCTAssertEqual(config["model_type"] as? String, "gpt2")
        XCTAssertEqual(config["n_embd"] as? Int, 64)
        let generated = try Tool.swiftbert(["generate", "--model", checkpoint, "--max-new-tokens", "24", "--json", "And God said"])
        XCTAssertEqual(generated.status, 0, generated.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(generated.stdout.utf8)) as? [String: Any])
        let text = try XCTUnwrap(object["generated_text"] as? String)
        XCTAssertTrue(text.hasPrefix("And God said"), text)
        XCTAssertGreaterThan(text.count, "And God said".count + 20, text)
    }

    func testBadInputIsOneClearErrorBeforeTraining() throws {
        let bert = try TrainingFixture.data()
        let mismatch = try train(["--set", "schedule.total_steps=2", "--set", "schedule.warmup_steps=0"], data: bert, out: TrainingFixture.runDirectory("causal-bert-data"))
        XCTAssertNotEqual(mismatch.status, 0)
        XCTAssertTrue(mismatch.stderr.contains("needs data prepared with `swiftbert prepare --objective causal_lm`"), mismatch.stderr)
        let cases: [([String], String)] = [
            (["--set", "model.vocab_size=1000"], "model.vocab_size"),
            (["--set", "model.n_embd=65"], "model"),
            (["--set", "peft.method=prompt_tuning", "--set", "init_from=/nonexistent"], "peft.method: prompt_tuning is not available for causal_lm"),
            (["--set", "model.n_ctx_typo=3"], "model.n_ctx_typo"),
        ]
        for (extra, expected) in cases {
            let out = TrainingFixture.runDirectory("causal-bad")
            let result = try train(extra + ["--set", "schedule.total_steps=2", "--set", "schedule.warmup_steps=0"], out: out)
            XCTAssertNotEqual(result.status, 0, "\(extra)")
            XCTAssertTrue(result.stderr.contains(expected), "\(extra): \(result.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/checkpoints/latest"), "\(extra)")
        }
    }
}

/// Instruction tuning: GPT-2 fine-tuned on prompt/response lines (and chat messages), learning the
/// responses only, through the same engine.
final class InstructionTuningTests: XCTestCase {
    static let base = Tool.root.appendingPathComponent("Tests/TransformerTests/Fixtures/gpt2/tiny-bpe").path
    static let words = ["light", "water", "earth", "heaven", "night", "day", "seed", "fruit", "grass", "whale", "fowl", "cattle"]

    /// Which word follows which, taught as pairs and as chats; validation asks the same questions.
    static func writeData(_ directory: String) throws -> (train: String, validation: String) {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var train: [String] = [], validation: [String] = []
        func json(_ object: Any) throws -> String { String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self) }
        for (index, word) in words.enumerated() {
            let next = words[(index + 1) % words.count]
            let pair = try json(["prompt": "After \(word) comes", "response": " \(next)."])
            let chat = try json(["messages": [["role": "user", "content": "After \(word)?"], ["role": "assistant", "content": "\(next)."]]])
            train += Array(repeating: pair, count: 3) + [chat]
            validation.append(pair)
        }
        let paths = (directory + "/train.jsonl", directory + "/validation.jsonl")
        try (train.joined(separator: "\n") + "\n").write(toFile: paths.0, atomically: true, encoding: .utf8)
        try (validation.joined(separator: "\n") + "\n").write(toFile: paths.1, atomically: true, encoding: .utf8)
        return paths
    }

    static func config(_ directory: String, steps: Int) throws -> String {
        let data = try writeData(directory)
        let config: [String: Any] = [
            "task": ["type": "causal_lm", "train_file": data.train, "validation_file": data.validation],
            "init_from": Self.base,
            "batch": ["global_batch_size": 8, "sequence_length": 24],
            "optimizer": ["learning_rate": 0.01, "weight_decay": 0.0],
            "schedule": ["warmup_steps": 5, "total_steps": steps],
            "checkpoint": ["every_steps": steps],
            "logging": ["every_steps": 1, "eval_every_steps": steps, "eval_batches": 2],
            "seed": 5,
        ]
        let path = directory + "/config.json"
        try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testLearnsTheResponsesAndGeneratesThem() throws {
        let scratch = TrainingFixture.runDirectory("instruct-data")
        let out = TrainingFixture.runDirectory("instruct")
        let result = try Tool.swiftbert(["train", "--config", try Self.config(scratch, steps: 300), "--out", out], timeout: 600)
        XCTAssertEqual(result.status, 0, result.stderr)
        let records = try TrainingFixture.records(out)
        let first = try XCTUnwrap(TrainingFixture.losses(out)[1])
        let validation = try XCTUnwrap(records.last { $0["split"] as? String == "validation" }?["loss"] as? Double)
        XCTAssertGreaterThan(first, 3, "the random base model knows nothing of the answers")
        XCTAssertLessThan(validation, 0.1, "validation loss on the responses: \(validation)")
        let checkpoint = try TrainingFixture.latestCheckpoint(out)
        for file in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint + "/" + file), file)
        }
        let generated = try Tool.swiftbert(["generate", "--model", checkpoint, "--max-new-tokens", "4", "--json",
                                            "After water comes", "After whale comes"])
        XCTAssertEqual(generated.status, 0, generated.stderr)
        let texts = generated.stdout.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["generated_text"] as? String
        }
        XCTAssertEqual(texts, ["After water comes earth.", "After whale comes fowl."])
    }

    func testLossAndWeightsDoNotDependOnTheNumberOfRanks() throws {
        let scratch = TrainingFixture.runDirectory("instruct-ranks-data")
        let config = try Self.config(scratch, steps: 6)
        var weights: [[String: [Float]]] = []
        var losses: [[Int: Double]] = []
        for ranks in [1, 2] {
            let out = TrainingFixture.runDirectory("instruct-ranks-\(ranks)")
            // BERT's rank test's learning rate: Adam turns float-summation noise in near-zero gradients into
            // whole updates, which at 0.01 reach 3e-5 of the weights in 6 steps.
            let arguments = ["train", "--config", config, "--out", out, "--set", "optimizer.learning_rate=0.001"]
            let result = ranks == 1 ? try Tool.swiftbert(arguments, timeout: 600) : try Tool.mpirun(ranks: ranks, arguments, timeout: 600)
            XCTAssertEqual(result.status, 0, result.stderr)
            losses.append(try TrainingFixture.losses(out))
            weights.append(try TrainingFixture.tensors(try TrainingFixture.latestCheckpoint(out) + "/model.safetensors"))
        }
        XCTAssertEqual(losses[0].keys.sorted(), Array(1...6))
        for (step, loss) in losses[0] { XCTAssertEqual(losses[1][step] ?? .nan, loss, accuracy: 1e-5 * loss, "step \(step)") }
        XCTAssertLessThanOrEqual(try TrainingFixture.maxRelativeDifference(weights[0], weights[1]), 1e-5)
    }

    func testBadDataIsOneClearError() throws {
        let scratch = TrainingFixture.runDirectory("instruct-bad")
        let config = try Self.config(scratch, steps: 6)
        let cases: [(String, String)] = [
            (#"{"prompt": "a", "answer": "b"}"#, "field 'response': missing"),
            (#"{"text": "a"}"#, "has neither 'prompt'/'response' nor 'messages'"),
            (#"{"messages": [{"role": "user", "content": "hi"}]}"#, "has no 'assistant' message"),
            (#"{"prompt": "\#(String(repeating: "word ", count: 40))", "response": " b"}"#, "the prompt fills all batch.sequence_length"),
            ("not json", "invalid JSON"),
        ]
        for (line, expected) in cases {
            try (line + "\n").write(toFile: scratch + "/train.jsonl", atomically: true, encoding: .utf8)
            let out = TrainingFixture.runDirectory("instruct-bad-run")
            let result = try Tool.swiftbert(["train", "--config", config, "--out", out])
            XCTAssertNotEqual(result.status, 0, line)
            XCTAssertTrue(result.stderr.contains("train.jsonl") && result.stderr.contains(expected), "\(line): \(result.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), line)
        }
        let noBase = try Tool.swiftbert(["train", "--config", config, "--out", TrainingFixture.runDirectory("x"), "--set", "init_from=null"])
        XCTAssertNotEqual(noBase.status, 0)
        XCTAssertTrue(noBase.stderr.contains("init_from"), noBase.stderr)
    }
}

/// Instruction tuning with LoRA on GPT-2 (`peft.method: lora`, causal_lm): the base stays frozen,
/// the checkpoint is a peft CAUSAL_LM adapter, 1 and 2 ranks agree, a resume is exact, and
/// `generate` of the adapter gives what peft gives on the same base.
final class CausalLMLoraTests: XCTestCase {
    func config(_ directory: String, steps: Int, peft: [String: Any] = [:]) throws -> String {
        let path = try InstructionTuningTests.config(directory, steps: steps)
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        config["peft"] = ["method": "lora", "r": 4, "lora_alpha": 8, "lora_dropout": 0.1].merging(peft) { $1 }
        try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
        return path
    }

    func adapter(_ run: String) throws -> [String: [Float]] {
        try TrainingFixture.tensors(try TrainingFixture.latestCheckpoint(run) + "/adapter_model.safetensors")
    }

    func testAdapterIsRankInvariantAndHoldsTheFactorsOnly() throws {
        let config = try config(TrainingFixture.runDirectory("causal-lora-ranks-data"), steps: 6)
        var runs: [(losses: [Int: Double], adapter: [String: [Float]])] = []
        for ranks in [1, 2] {
            let out = TrainingFixture.runDirectory("causal-lora-ranks-\(ranks)")
            let arguments = ["train", "--config", config, "--out", out]
            let result = ranks == 1 ? try Tool.swiftbert(arguments, timeout: 600) : try Tool.mpirun(ranks: ranks, arguments, timeout: 600)
            XCTAssertEqual(result.status, 0, result.stderr)
            // r (4) x (32 in + 96 out) per block's c_attn.
            XCTAssertTrue((result.stdout + result.stderr).contains("training 1,024 of "), result.stdout + result.stderr)
            runs.append((try TrainingFixture.losses(out), try adapter(out)))
            let checkpoint = try TrainingFixture.latestCheckpoint(out)
            let files = Set(try FileManager.default.contentsOfDirectory(atPath: checkpoint))
            XCTAssertTrue(files.isSuperset(of: ["adapter_config.json", "adapter_model.safetensors", "config.json", "tokenizer.json"]))
            XCTAssertFalse(files.contains("model.safetensors"), "the base is not copied")
            let settings = try FineTuning.object(checkpoint + "/adapter_config.json")
            XCTAssertEqual(settings["task_type"] as? String, "CAUSAL_LM")
            XCTAssertEqual(settings["fan_in_fan_out"] as? Bool, true)
            XCTAssertEqual(settings["target_modules"] as? [String], ["c_attn"])
            XCTAssertEqual(settings["base_model_name_or_path"] as? String, InstructionTuningTests.base)
        }
        XCTAssertEqual(Set(runs[0].adapter.keys), Set((0..<2).flatMap { l in
            ["lora_A", "lora_B"].map { "base_model.model.transformer.h.\(l).attn.c_attn.\($0).weight" }
        }))
        XCTAssertEqual(runs[0].losses.keys.sorted(), Array(1...6))
        XCTAssertGreaterThan(Set(runs[0].losses.values).count, 1, "the adapter trains")
        for (step, loss) in runs[0].losses { XCTAssertEqual(runs[1].losses[step] ?? .nan, loss, accuracy: 1e-5 * loss, "step \(step)") }
        XCTAssertLessThanOrEqual(try TrainingFixture.maxRelativeDifference(runs[0].adapter, runs[1].adapter), 1e-5)
    }

    func testResumeIsExact() throws {
        let config = try config(TrainingFixture.runDirectory("causal-lora-resume-data"), steps: 12, peft: ["bias": "all"])
        let straight = TrainingFixture.runDirectory("causal-lora-straight")
        XCTAssertEqual(try Tool.swiftbert(["train", "--config", config, "--out", straight, "--set", "checkpoint.every_steps=6"]).status, 0)
        let split = TrainingFixture.runDirectory("causal-lora-split")
        let first = try Tool.swiftbert(["train", "--config", config, "--out", split, "--set", "checkpoint.every_steps=6", "--steps", "6"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let second = try Tool.swiftbert(["train", "--config", config, "--out", split, "--set", "checkpoint.every_steps=6", "--resume", "auto"])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("resumed from"), second.stdout)
        XCTAssertEqual(try TrainingFixture.losses(split), try TrainingFixture.losses(straight))
        XCTAssertEqual(try adapter(split), try adapter(straight))
        XCTAssertTrue(try adapter(split).keys.contains("base_model.model.transformer.h.0.attn.c_attn.base_layer.bias"))
    }

    /// The adapter learns (every projection adapted), `generate` merges it into the base, and peft
    /// (scripts/check_gpt2_checkpoint.py) gives the same greedy tokens where the reference Python stack is
    /// installed: SWIFTBERT_REFERENCE_PYTHON, else venv/bin/python in the repository.
    func testLearnsAndGeneratesAsPeftDoes() throws {
        let config = try config(TrainingFixture.runDirectory("causal-lora-learn-data"), steps: 300,
                                peft: ["r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["c_attn", "c_proj", "c_fc"]])
        let out = TrainingFixture.runDirectory("causal-lora-learn")
        let result = try Tool.swiftbert(["train", "--config", config, "--out", out], timeout: 600)
        XCTAssertEqual(result.status, 0, result.stderr)
        let losses = try TrainingFixture.losses(out)
        XCTAssertLessThan(try XCTUnwrap(losses[300]), try XCTUnwrap(losses[1]) - 1, "\(losses[1] ?? .nan) -> \(losses[300] ?? .nan)")
        let checkpoint = try TrainingFixture.latestCheckpoint(out)
        let prompts = ["After water comes", "After whale comes"]
        let generated = try Tool.swiftbert(["generate", "--model", checkpoint, "--max-new-tokens", "4", "--json"] + prompts)
        XCTAssertEqual(generated.status, 0, generated.stderr)
        XCTAssertEqual(generated.stdout.split(separator: "\n").count, 2, generated.stdout)
        // The base alone continues otherwise: the update is merged.
        let plain = try Tool.swiftbert(["generate", "--model", InstructionTuningTests.base, "--max-new-tokens", "4", "--json"] + prompts)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertNotEqual(plain.stdout, generated.stdout)
        // Merged: the adapted Conv1D weights hold the update, every other tensor is the base's bit for bit,
        // and the plain directory generates what the adapter does.
        let merged = out + "/merged"
        let merge = try Tool.swiftbert(["merge", "--adapter", checkpoint, "--out", merged])
        XCTAssertEqual(merge.status, 0, merge.stderr)
        let base = try TrainingFixture.tensors(InstructionTuningTests.base + "/model.safetensors")
        var adapted = 0
        for (name, values) in try TrainingFixture.tensors(merged + "/model.safetensors") {
            if ["c_attn", "c_proj", "c_fc"].contains(where: { name.hasSuffix($0 + ".weight") }) {
                XCTAssertNotEqual(values, base[name], name)
                adapted += 1
            } else {
                XCTAssertEqual(values, base[name], name)
            }
        }
        XCTAssertEqual(adapted, 2 * 4)
        let fromMerged = try Tool.swiftbert(["generate", "--model", merged, "--max-new-tokens", "4", "--json"] + prompts)
        XCTAssertEqual(fromMerged.stdout, generated.stdout)

        let environment = ProcessInfo.processInfo.environment["SWIFTBERT_REFERENCE_PYTHON"]
        guard let python = environment ?? [Tool.root.appendingPathComponent("venv/bin/python").path].first(where: FileManager.default.isExecutableFile)
        else {
            throw XCTSkip("peft's side needs the reference Python stack (torch, transformers, peft): set SWIFTBERT_REFERENCE_PYTHON or create venv/")
        }
        let check = try Tool.run(
            python, [Tool.root.appendingPathComponent("scripts/check_gpt2_checkpoint.py").path, checkpoint, "--binary", try Tool.binary,
                     "--max-new-tokens", "8"] + prompts.flatMap { ["--prompt", $0] }, timeout: 600)
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        XCTAssertTrue(check.stdout.contains("loading info problems: none"), check.stdout)
    }

    func testBadSettingsAreOneClearError() throws {
        let directory = TrainingFixture.runDirectory("causal-lora-bad-data")
        let cases: [([String: Any], String)] = [
            (["target_modules": ["query"]], "peft.target_modules: \"query\" matches no module of the model; GPT-2's projections are attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj"),
            (["target_modules": ["lm_head"]], "peft.target_modules: \"lm_head\" names lm_head"),
            (["r": 0], "peft.r: is 0; must be at least 1"),
            (["layers_to_transform": [2]], "peft.layers_to_transform: holds 2; the model's layers are 0...1"),
            (["modules_to_save": ["lm_head"]], "peft.modules_to_save"),
            (["method": "prefix_tuning"], "peft.method: prefix_tuning is not available for causal_lm"),
        ]
        for (index, (peft, message)) in cases.enumerated() {
            let config = try config(directory + "-\(index)", steps: 10, peft: peft)
            let out = TrainingFixture.runDirectory("causal-lora-bad")
            let result = try Tool.swiftbert(["train", "--config", config, "--out", out])
            XCTAssertNotEqual(result.status, 0, message)
            XCTAssertTrue(result.stderr.contains(message), "expected \(message): \(result.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), message)
        }
    }
}
