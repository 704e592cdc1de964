import Foundation
import XCTest

/// `swiftbert train` with a `peft` section of method `lora`, as a user runs it: world-size invariance,
/// exact resume and the base model's hash, frozen parameters left bit-identical, the adapter-only
/// checkpoint and the commands that take it, bad settings, and learning on real data against full
/// fine-tuning from the same start.
final class LoraTests: XCTestCase {
    /// The 4-topic 20 Newsgroups excerpt from hf-tiny (hidden 64, 2 layers), LoRA r 4 on query and value.
    func loraConfig(_ directory: String, base: String = FineTuning.hfTiny, peft: [String: Any] = [:], _ sections: [String: Any] = [:]) throws -> String {
        var peftSection: [String: Any] = ["method": "lora", "r": 4, "lora_alpha": 8, "lora_dropout": 0.1]
        peftSection.merge(peft) { $1 }
        var config: [String: Any] = [
            "task": ["type": "sequence_classification", "train_file": directory + "/train.tsv",
                     "validation_file": directory + "/dev.tsv", "format": "label_tab_text"],
            "init_from": base,
            "batch": ["global_batch_size": 8, "sequence_length": 48],
            "optimizer": ["learning_rate": 5e-3],
            "schedule": ["total_steps": 20, "warmup_steps": 2],
            "checkpoint": ["every_steps": 20],
            "logging": ["every_steps": 1, "eval_every_steps": 10, "eval_batches": 100],
            "peft": peftSection,
        ]
        config.merge(sections) { $1 }
        return try FineTuning.writeConfig(config, to: directory + "/config.json")
    }

    func newsDirectory(_ name: String) throws -> String {
        try FineTuning.scratch(name, copying: ["news/train.tsv", "news/dev.tsv"])
    }

    func adapter(_ run: String) throws -> [String: [Float]] {
        try TrainingFixture.tensors(try TrainingFixture.latestCheckpoint(run) + "/adapter_model.safetensors")
    }

    // MARK: - World size, frozen parameters, the checkpoint

    func testLossesAndAdapterDoNotDependOnTheNumberOfRanksAndTheBaseStaysFrozen() throws {
        let directory = try newsDirectory("lora-ranks")
        let config = try loraConfig(directory, peft: ["target_modules": ["query", "value", "intermediate.dense"]])
        let single = directory + "/run-1"
        let reference = try FineTuning.train(config, out: single)
        XCTAssertEqual(reference.status, 0, reference.stderr)
        XCTAssertTrue((reference.stdout + reference.stderr).contains(" parameters (lora; "), reference.stdout)
        let losses = try TrainingFixture.losses(single)
        XCTAssertEqual(losses.keys.sorted(), Array(1...20))
        XCTAssertGreaterThan(Set(losses.values).count, 1, "the adapter trains")

        // The checkpoint is an adapter: peft's files, the trainable tensors only, no copy of the base.
        let checkpoint = try TrainingFixture.latestCheckpoint(single)
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: checkpoint))
        XCTAssertTrue(files.isSuperset(of: ["adapter_config.json", "adapter_model.safetensors", "config.json", "vocab.txt"]))
        XCTAssertFalse(files.contains("model.safetensors"))
        let weights = try adapter(single)
        let layers = ["query", "value"].map { "attention.self." + $0 } + ["intermediate.dense"]
        var expected: Set<String> = ["base_model.model.classifier.weight", "base_model.model.classifier.bias"]
        for layer in 0..<2 {
            for module in layers {
                for factor in ["lora_A", "lora_B"] { expected.insert("base_model.model.bert.encoder.layer.\(layer).\(module).\(factor).weight") }
            }
        }
        XCTAssertEqual(Set(weights.keys), expected)
        let adapterConfig = try FineTuning.object(checkpoint + "/adapter_config.json")
        XCTAssertEqual(adapterConfig["peft_type"] as? String, "LORA")
        XCTAssertEqual(adapterConfig["task_type"] as? String, "SEQ_CLS")
        XCTAssertEqual(adapterConfig["base_model_name_or_path"] as? String, FineTuning.hfTiny)
        XCTAssertEqual(adapterConfig["r"] as? Int, 4)

        let inspected = try Tool.swiftbert(["inspect", checkpoint])
        XCTAssertEqual(inspected.status, 0, inspected.stderr)
        XCTAssertTrue(inspected.stdout.contains("LoRA r 4, lora_alpha 8, on query, value, intermediate.dense"), inspected.stdout)
        let trainable = weights.values.map(\.count).reduce(0, +)
        XCTAssertTrue(inspected.stdout.contains("trainable      \(trainable.formatted()) of "), inspected.stdout)

        // Merged, every tensor the adapter does not touch is the base's, bit for bit.
        let merged = directory + "/merged"
        let merge = try Tool.swiftbert(["merge", "--adapter", checkpoint, "--out", merged])
        XCTAssertEqual(merge.status, 0, merge.stderr)
        let base = try TrainingFixture.tensors(FineTuning.hfTiny + "/model.safetensors")
        let plain = try TrainingFixture.tensors(merged + "/model.safetensors")
        var frozen = 0, adapted = 0
        for (name, values) in plain where !name.hasPrefix("classifier.") {
            let isAdapted = layers.contains { name.hasSuffix($0 + ".weight") }
            if isAdapted {
                XCTAssertNotEqual(values, base[name], "\(name) holds the update")
                adapted += 1
            } else {
                XCTAssertEqual(values, base[name], "\(name) is frozen")
                frozen += 1
            }
        }
        XCTAssertEqual(adapted, 6)
        XCTAssertGreaterThan(frozen, 30)

        for (label, ranks, debugRanks) in [("mpirun 2", 2, nil), ("mpirun 4", 4, nil), ("in-process 2", 1, 2 as Int?)] {
            let out = directory + "/run-\(ranks)-\(debugRanks ?? 0)"
            let result = try FineTuning.train(config, out: out, ranks: ranks, debugRanks: debugRanks)
            XCTAssertEqual(result.status, 0, "\(label): \(result.stderr)")
            FineTuning.assertSameLosses(losses, try TrainingFixture.losses(out), tolerance: 1e-5, label)
            XCTAssertLessThanOrEqual(try TrainingFixture.maxRelativeDifference(weights, try adapter(out)), 1e-5, label)
        }
    }

    // MARK: - Resume

    func testResumeIsExactAndChecksTheBaseModel() throws {
        let directory = try newsDirectory("lora-resume")
        let base = directory + "/base"
        try FileManager.default.copyItem(atPath: FineTuning.hfTiny, toPath: base)
        let config = try loraConfig(directory, base: base, peft: ["bias": "all"], ["checkpoint": ["every_steps": 1000]])
        let straight = directory + "/straight"
        XCTAssertEqual(try FineTuning.train(config, out: straight).status, 0)
        let losses = try TrainingFixture.losses(straight)
        let weights = try adapter(straight)

        let split = directory + "/split"
        let first = try FineTuning.train(config, out: split, ["--steps", "10"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let second = try FineTuning.train(config, out: split)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("resumed from"), second.stdout)
        XCTAssertEqual(try TrainingFixture.losses(split), losses)
        XCTAssertEqual(try adapter(split), weights)

        // A base model that changed since the run started is refused: the adapter only fits the old one.
        let changed = directory + "/changed"
        let partial = try FineTuning.train(config, out: changed, ["--steps", "10"])
        XCTAssertEqual(partial.status, 0, partial.stderr)
        let weightsFile = base + "/model.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: weightsFile))
        bytes[bytes.count - 3] ^= 1
        try bytes.write(to: URL(fileURLWithPath: weightsFile))
        let refused = try FineTuning.train(config, out: changed)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("is not the base model the adapter was trained on"), refused.stderr)
        XCTAssertEqual(try TrainingFixture.losses(changed).keys.max(), 10, "nothing trained on the wrong base")
    }

    // MARK: - Bad settings

    func testBadSettingsFailWithOneClearErrorAndNoRun() throws {
        let directory = try newsDirectory("lora-bad")
        let cases: [(peft: [String: Any], sections: [String: Any], message: String)] = [
            (["r": 0], [:], "peft.r: is 0; must be at least 1"),
            (["target_modules": ["qury"]], [:], "\"qury\" matches no module of the model"),
            (["target_modules": ["classifier"]], [:], "\"classifier\" names classifier; LoRA adapts the encoder's projections"),
            (["bias": "lora_only"], [:], "\"lora_only\" is not supported"),
            (["layers_to_transform": [5]], [:], "holds 5; the model's layers are 0...1"),
            (["modules_to_save": ["classifier", "value"]], [:], "trains value without the rest of the fused query/key/value projection"),
            ([:], ["init_from": NSNull(), "model": ["vocab_size": 2506, "hidden_size": 64, "num_hidden_layers": 2,
                                                    "num_attention_heads": 4, "intermediate_size": 128]],
             "trains an adapter on a frozen base model; set init_from"),
        ]
        for (index, bad) in cases.enumerated() {
            let config = try loraConfig(directory, peft: bad.peft, bad.sections)
            let out = directory + "/run-\(index)"
            let result = try FineTuning.train(config, out: out)
            XCTAssertNotEqual(result.status, 0, bad.message)
            XCTAssertTrue(result.stderr.contains(bad.message), "expected \(bad.message): \(result.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(bad.message): nothing is left behind")
        }

        // An adapter on a base of another shape: the tensor and what to do.
        let config = try loraConfig(directory, ["schedule": ["total_steps": 2], "checkpoint": ["every_steps": 2]])
        let run = directory + "/good"
        XCTAssertEqual(try FineTuning.train(config, out: run).status, 0)
        let checkpoint = try TrainingFixture.latestCheckpoint(run)
        let other = Tool.root.appendingPathComponent("Tests/TransformerTests/Fixtures/peft/lora-base").path
        let mismatched = try Tool.swiftbert(["predict", "--model", checkpoint, "--base", other, "--input", directory + "/dev.tsv"])
        XCTAssertNotEqual(mismatched.status, 0)
        XCTAssertTrue(mismatched.stderr.contains("trained on another base model"), mismatched.stderr)
        let missingBase = try Tool.swiftbert(["predict", "--model", checkpoint, "--base", directory + "/nowhere", "--input", directory + "/dev.tsv"])
        XCTAssertNotEqual(missingBase.status, 0)
        XCTAssertTrue(missingBase.stderr.contains("is not a model directory here"), missingBase.stderr)
    }

    // MARK: - Prompt tuning

    /// Prompt tuning on the same data: the prompt table and the classifier train, 1 and 2 ranks agree,
    /// a resume is exact, the checkpoint is peft's PROMPT_TUNING adapter, and `evaluate` of it
    /// prints the run's last validation record.
    func testPromptTuningTrainsResumesAndEvaluates() throws {
        let directory = try newsDirectory("prompt")
        let config = try loraConfig(directory, peft: ["method": "prompt_tuning", "num_virtual_tokens": 4],
                                    ["checkpoint": ["every_steps": 1000]])
        let single = directory + "/run-1"
        let reference = try FineTuning.train(config, out: single)
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let losses = try TrainingFixture.losses(single)
        XCTAssertGreaterThan(Set(losses.values).count, 1, "the prompt trains")
        let weights = try adapter(single)
        XCTAssertEqual(Set(weights.keys), ["prompt_embeddings", "base_model.classifier.weight", "base_model.classifier.bias"])
        XCTAssertEqual(weights["prompt_embeddings"]?.count, 4 * 64)
        let checkpoint = try TrainingFixture.latestCheckpoint(single)
        let adapterConfig = try FineTuning.object(checkpoint + "/adapter_config.json")
        XCTAssertEqual(adapterConfig["peft_type"] as? String, "PROMPT_TUNING")
        XCTAssertEqual(adapterConfig["num_virtual_tokens"] as? Int, 4)
        XCTAssertEqual(adapterConfig["token_dim"] as? Int, 64)

        let two = directory + "/run-2"
        let result = try FineTuning.train(config, out: two, ranks: 2)
        XCTAssertEqual(result.status, 0, result.stderr)
        FineTuning.assertSameLosses(losses, try TrainingFixture.losses(two), tolerance: 1e-5, "mpirun 2")
        XCTAssertLessThanOrEqual(try TrainingFixture.maxRelativeDifference(weights, try adapter(two)), 1e-5)

        let split = directory + "/split"
        XCTAssertEqual(try FineTuning.train(config, out: split, ["--steps", "10"]).status, 0)
        let resumed = try FineTuning.train(config, out: split)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try TrainingFixture.losses(split), losses)
        XCTAssertEqual(try adapter(split), weights)

        let evaluated = try Tool.swiftbert(["evaluate", "--model", checkpoint, "--data", directory + "/dev.tsv"])
        XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
        XCTAssertTrue(evaluated.stderr.contains("with the adapter \(checkpoint)"), evaluated.stderr)
        XCTAssertFalse(evaluated.stderr.contains("newly initialised"), "the adapter holds the classifier: \(evaluated.stderr)")
        let printed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(evaluated.stdout.utf8)) as? [String: Any])
        let last = try XCTUnwrap(try FineTuning.validationRecords(single).last)
        XCTAssertEqual(try XCTUnwrap(printed["loss"] as? Double), try XCTUnwrap(last["loss"] as? Double), accuracy: 1e-5)

        // Other heads would have their per-token outputs shifted: refused, naming the key.
        let tagging = try loraConfig(directory, peft: ["method": "prompt_tuning"],
                                     ["task": ["type": "token_classification", "train_file": directory + "/train.tsv"]])
        let refused = try FineTuning.train(tagging, out: directory + "/tagging")
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("peft.method: prompt_tuning supports task.type sequence_classification only"), refused.stderr)
    }

    // MARK: - Prefix tuning

    /// Prefix tuning on the same data: the prefix table and the classifier train, 1, 2 and 4 ranks
    /// (MPI) and 2 in-process ranks agree, a resume is exact, the checkpoint is peft's PREFIX_TUNING
    /// adapter that `evaluate` and `inspect` read; token classification trains with a prefix too.
    func testPrefixTuningTrainsOnAnyRankCountResumesAndEvaluates() throws {
        let directory = try newsDirectory("prefix")
        let config = try loraConfig(directory, peft: ["method": "prefix_tuning", "num_virtual_tokens": 5],
                                    ["checkpoint": ["every_steps": 1000]])
        let single = directory + "/run-1"
        let reference = try FineTuning.train(config, out: single)
        XCTAssertEqual(reference.status, 0, reference.stderr)
        XCTAssertTrue((reference.stdout + reference.stderr).contains(" parameters (prefix_tuning; "), reference.stdout)
        let losses = try TrainingFixture.losses(single)
        XCTAssertGreaterThan(Set(losses.values).count, 1, "the prefix trains")
        let weights = try adapter(single)
        XCTAssertEqual(Set(weights.keys), ["prompt_embeddings", "base_model.classifier.weight", "base_model.classifier.bias"])
        XCTAssertEqual(weights["prompt_embeddings"]?.count, 5 * 2 * 2 * 64, "5 rows of a key and a value per layer")
        let checkpoint = try TrainingFixture.latestCheckpoint(single)
        let adapterConfig = try FineTuning.object(checkpoint + "/adapter_config.json")
        XCTAssertEqual(adapterConfig["peft_type"] as? String, "PREFIX_TUNING")
        XCTAssertEqual(adapterConfig["num_virtual_tokens"] as? Int, 5)
        XCTAssertEqual(adapterConfig["num_layers"] as? Int, 2)
        XCTAssertEqual(adapterConfig["prefix_projection"] as? Bool, false)

        for (label, ranks, debugRanks) in [("mpirun 2", 2, nil), ("mpirun 4", 4, nil), ("in-process 2", 1, 2 as Int?)] {
            let out = directory + "/run-\(ranks)-\(debugRanks ?? 0)"
            let result = try FineTuning.train(config, out: out, ranks: ranks, debugRanks: debugRanks)
            XCTAssertEqual(result.status, 0, "\(label): \(result.stderr)")
            FineTuning.assertSameLosses(losses, try TrainingFixture.losses(out), tolerance: 1e-5, label)
            XCTAssertLessThanOrEqual(try TrainingFixture.maxRelativeDifference(weights, try adapter(out)), 1e-5, label)
        }

        let split = directory + "/split"
        XCTAssertEqual(try FineTuning.train(config, out: split, ["--steps", "10"]).status, 0)
        let resumed = try FineTuning.train(config, out: split)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resumed from"), resumed.stdout)
        XCTAssertEqual(try TrainingFixture.losses(split), losses)
        XCTAssertEqual(try adapter(split), weights)

        let inspected = try Tool.swiftbert(["inspect", checkpoint])
        XCTAssertEqual(inspected.status, 0, inspected.stderr)
        XCTAssertTrue(inspected.stdout.contains("prefix tuning, 5 virtual tokens"), inspected.stdout)
        let evaluated = try Tool.swiftbert(["evaluate", "--model", checkpoint, "--data", directory + "/dev.tsv"])
        XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
        let printed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(evaluated.stdout.utf8)) as? [String: Any])
        let last = try XCTUnwrap(try FineTuning.validationRecords(single).last)
        XCTAssertEqual(try XCTUnwrap(printed["loss"] as? Double), try XCTUnwrap(last["loss"] as? Double), accuracy: 1e-5)

        // The prefix shifts no output row: per-token heads take it as they are.
        let tagging = try loraConfig(directory, peft: ["method": "prefix_tuning", "num_virtual_tokens": 3], [
            "task": ["type": "token_classification", "train_file": directory + "/people-daily.txt", "format": "peoples_daily"],
            "schedule": ["total_steps": 6, "warmup_steps": 1], "logging": ["every_steps": 1],
        ])
        try FileManager.default.copyItem(
            atPath: FineTuning.fixtures + "/people-daily/dev.txt", toPath: directory + "/people-daily.txt")
        let taggingLosses = try (1...2).map { ranks in
            let out = directory + "/tagging-\(ranks)"
            let result = try FineTuning.train(tagging, out: out, ranks: ranks)
            XCTAssertEqual(result.status, 0, result.stderr)
            return try TrainingFixture.losses(out)
        }
        XCTAssertEqual(taggingLosses[0].keys.sorted(), Array(1...6))
        FineTuning.assertSameLosses(taggingLosses[0], taggingLosses[1], tolerance: 1e-5, "token classification, 2 ranks")
    }

    // MARK: - Prompt encoders

    /// P-tuning (MLP and LSTM encoders) and prefix tuning with prefix_projection: the encoder trains,
    /// 1 and 2 ranks agree, a resume is exact (the checkpoint keeps the encoder's tensors beside peft's
    /// files), and `evaluate` of the checkpoint, which reads the encoder's saved output as peft does,
    /// gives the run's last validation loss.
    func testPromptEncodersTrainResumeAndEvaluateFromTheirOutput() throws {
        let directory = try newsDirectory("prompt-encoders")
        for (label, method, peft) in [
            ("mlp", "P_TUNING", ["method": "p_tuning", "num_virtual_tokens": 4, "encoder_hidden_size": 16] as [String: Any]),
            ("lstm", "P_TUNING", ["method": "p_tuning", "num_virtual_tokens": 4, "encoder_hidden_size": 8,
                                  "encoder_reparameterization_type": "LSTM", "encoder_num_layers": 2]),
            ("prefix", "PREFIX_TUNING", ["method": "prefix_tuning", "num_virtual_tokens": 4, "prefix_projection": true]),
        ] {
            let config = try loraConfig(directory, peft: peft, ["checkpoint": ["every_steps": 1000]])
            let single = directory + "/\(label)-1"
            let reference = try FineTuning.train(config, out: single)
            XCTAssertEqual(reference.status, 0, reference.stderr)
            let losses = try TrainingFixture.losses(single)
            XCTAssertGreaterThan(Set(losses.values).count, 1, "\(method) trains")
            let checkpoint = try TrainingFixture.latestCheckpoint(single)
            let written = try FineTuning.object(checkpoint + "/adapter_config.json")
            XCTAssertEqual(written["peft_type"] as? String, method)
            let encoder = try TrainingFixture.tensors(checkpoint + "/prompt_encoder.safetensors")
            XCTAssertTrue(encoder.keys.contains("prompt_encoder.default.embedding.weight"), "\(encoder.keys)")
            if label == "lstm" {
                XCTAssertEqual(written["encoder_reparameterization_type"] as? String, "LSTM")
                XCTAssertTrue(encoder.keys.contains("prompt_encoder.default.lstm_head.weight_hh_l1_reverse"), "\(encoder.keys)")
            }
            let weights = try adapter(single)
            XCTAssertEqual(Set(weights.keys), ["prompt_embeddings", "base_model.classifier.weight", "base_model.classifier.bias"])

            let two = directory + "/\(label)-2"
            XCTAssertEqual(try FineTuning.train(config, out: two, ranks: 2).status, 0)
            FineTuning.assertSameLosses(losses, try TrainingFixture.losses(two), tolerance: 1e-5, "\(label) mpirun 2")

            let split = directory + "/\(label)-split"
            XCTAssertEqual(try FineTuning.train(config, out: split, ["--steps", "10"]).status, 0)
            let resumed = try FineTuning.train(config, out: split)
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssertEqual(try TrainingFixture.losses(split), losses, method)
            XCTAssertEqual(try adapter(split), weights, method)

            let evaluated = try Tool.swiftbert(["evaluate", "--model", checkpoint, "--data", directory + "/dev.tsv"])
            XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
            let printed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(evaluated.stdout.utf8)) as? [String: Any])
            let last = try XCTUnwrap(try FineTuning.validationRecords(single).last)
            XCTAssertEqual(try XCTUnwrap(printed["loss"] as? Double), try XCTUnwrap(last["loss"] as? Double), accuracy: 1e-5, method)
        }
    }
}
