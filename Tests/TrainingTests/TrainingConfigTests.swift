import Training
import XCTest

final class TrainingConfigTests: XCTestCase {
    private let example = """
    {
      "model": {"vocab_size": 30522, "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
                "intermediate_size": 1024, "max_position_embeddings": 512},
      "data": {"directory": "data/kjv", "masked_lm_prob": 0.2},
      "batch": {"global_batch_size": 256, "micro_batch_size": 32, "sequence_length": 128},
      "optimizer": {"name": "lamb", "learning_rate": 1e-3, "weight_decay": 0.01, "bias_correction": false},
      "schedule": {"warmup_steps": 100, "total_steps": 1000, "decay": "cosine"},
      "seed": 18446744073709551615
    }
    """

    private func expectError(_ text: String, overrides: [String] = [], keyPath: String, mentions: String,
                             line: UInt = #line) {
        XCTAssertThrowsError(try TrainingConfig(text: text, source: "run.json", overrides: overrides), line: line) { error in
            guard let error = error as? ConfigError else { return XCTFail("not a ConfigError: \(error)", line: line) }
            XCTAssertEqual(error.keyPath, keyPath, "\(error)", line: line)
            XCTAssertTrue(error.description.contains(mentions), "\(error) lacks '\(mentions)'", line: line)
            if !keyPath.isEmpty { XCTAssertTrue(error.description.contains(keyPath), line: line) }
        }
    }

    func testParsesSettingsAndFillsDefaults() throws {
        let config = try TrainingConfig(text: example)
        XCTAssertEqual(config.data.directory, "data/kjv")
        XCTAssertEqual(config.data.maskedLMProbability, 0.2)
        XCTAssertEqual(config.data.maxPredictionsPerSequence, 20)
        XCTAssertEqual(config.batch.microBatchSize, 32)
        XCTAssertEqual(config.optimizer.name, .lamb)
        XCTAssertEqual(config.optimizer.learningRate, 1e-3)
        XCTAssertEqual(config.optimizer.beta2, 0.999)
        XCTAssertFalse(config.optimizer.biasCorrection)
        XCTAssertEqual(config.schedule.decay, .cosine)
        XCTAssertEqual(config.seed, UInt64.max)
        XCTAssertEqual(config.checkpoint.keepLast, 3)
        XCTAssertNil(config.initFrom)
        XCTAssertEqual(config.model.hiddenSize, 256)
        XCTAssertEqual(config.model.hiddenLayerCount, 4)
    }

    func testResolvedJSONLoadsBackEqualWithStableKeyOrder() throws {
        let config = try TrainingConfig(text: example)
        let resolved = config.resolvedJSON()
        XCTAssertEqual(try TrainingConfig(text: resolved), config)
        XCTAssertEqual(try TrainingConfig(text: resolved).resolvedJSON(), resolved)
        let sections = ["\"model\"", "\"data\"", "\"batch\"", "\"optimizer\"", "\"schedule\"", "\"checkpoint\"",
                        "\"logging\"", "\"seed\"", "\"watchdog_seconds\""]
        let positions = sections.map { resolved.range(of: $0)!.lowerBound }
        XCTAssertEqual(positions, positions.sorted())
        XCTAssertTrue(resolved.contains("\"micro_batch_size\": 32"))
        XCTAssertTrue(resolved.contains("\"init_from\": null"))
    }

    func testUnknownKeyNamesItsPath() {
        expectError(example.replacingOccurrences(of: "\"learning_rate\"", with: "\"learnig_rate\""),
                    keyPath: "optimizer.learnig_rate", mentions: "unknown key")
        expectError(example.replacingOccurrences(of: "\"seed\"", with: "\"sed\""), keyPath: "sed", mentions: "unknown key")
    }

    func testWrongTypesNameTheKey() {
        expectError(example.replacingOccurrences(of: "\"global_batch_size\": 256", with: "\"global_batch_size\": \"256\""),
                    keyPath: "batch.global_batch_size", mentions: "must be an integer")
        expectError(example.replacingOccurrences(of: "\"bias_correction\": false", with: "\"bias_correction\": 0"),
                    keyPath: "optimizer.bias_correction", mentions: "true or false")
        expectError(example.replacingOccurrences(of: "\"global_batch_size\": 256", with: "\"global_batch_size\": 25.5"),
                    keyPath: "batch.global_batch_size", mentions: "integer")
        expectError(example.replacingOccurrences(of: "\"decay\": \"cosine\"", with: "\"decay\": \"exponential\""),
                    keyPath: "schedule.decay", mentions: "\"linear\", \"cosine\", \"constant\"")
    }

    func testImpossibleValuesAreRejected() {
        expectError(example.replacingOccurrences(of: "\"learning_rate\": 1e-3", with: "\"learning_rate\": -1e-3"),
                    keyPath: "optimizer.learning_rate", mentions: "positive")
        expectError(example.replacingOccurrences(of: "\"warmup_steps\": 100", with: "\"warmup_steps\": 2000"),
                    keyPath: "schedule.warmup_steps", mentions: "more than total_steps 1000")
        expectError(example.replacingOccurrences(of: "\"micro_batch_size\": 32", with: "\"micro_batch_size\": 512"),
                    keyPath: "batch.micro_batch_size", mentions: "larger than global_batch_size")
        expectError(example.replacingOccurrences(of: "\"sequence_length\": 128", with: "\"sequence_length\": 1024"),
                    keyPath: "batch.sequence_length", mentions: "max_position_embeddings is 512")
        expectError(example.replacingOccurrences(of: "\"masked_lm_prob\": 0.2", with: "\"masked_lm_prob\": 1.5"),
                    keyPath: "data.masked_lm_prob", mentions: "between 0 and 1")
        expectError(example.replacingOccurrences(of: "\"directory\": \"data/kjv\", ", with: ""),
                    keyPath: "data.directory", mentions: "required")
    }

    func testSyntaxErrorGivesLineAndColumn() {
        expectError("{\n  \"seed\": 1,\n  \"model\": {}\n  \"data\": {}\n}", keyPath: "", mentions: "line 4, column 3")
        expectError("{\"seed\": 1, \"seed\": 2}", keyPath: "", mentions: "duplicate key \"seed\"")
    }

    func testOverridesSetValuesAndAreBlamedForTheirErrors() throws {
        let config = try TrainingConfig(text: example, overrides: [
            "optimizer.learning_rate=2e-4", "optimizer.name=adamw", "batch.micro_batch_size=null",
            "model.hidden_size=128", "init_from=\"hf/bert-mini\"", "logging.eval_every_steps=0",
        ])
        XCTAssertEqual(config.optimizer.learningRate, 2e-4)
        XCTAssertEqual(config.optimizer.name, .adamw)
        XCTAssertNil(config.batch.microBatchSize)
        XCTAssertEqual(config.model.hiddenSize, 128)
        XCTAssertEqual(config.initFrom, "hf/bert-mini")
        XCTAssertEqual(config.logging.evalEverySteps, 0)

        XCTAssertThrowsError(try TrainingConfig(text: example, source: "run.json", overrides: ["schedule.total_steps=ten"])) {
            let error = $0 as! ConfigError
            XCTAssertEqual(error.keyPath, "schedule.total_steps")
            XCTAssertEqual(error.source, "override 'schedule.total_steps=ten'")
        }
        expectError(example, overrides: ["optimizer.momentum=0.9"], keyPath: "optimizer.momentum", mentions: "unknown key")
        expectError(example, overrides: ["learning_rate"], keyPath: "", mentions: "key.path=value")
    }

    func testFingerprintCoversOnlyResumeInvariants() throws {
        let base = try TrainingConfig(text: example)
        let cadence = try TrainingConfig(text: example, overrides: [
            "batch.micro_batch_size=8", "logging.every_steps=1", "checkpoint.keep_last=9", "data.directory=/elsewhere",
            "watchdog_seconds=30",
        ])
        XCTAssertEqual(base.fingerprint, cadence.fingerprint)
        XCTAssertEqual(base.fingerprint.count, 64)
        let spelledDifferently = try TrainingConfig(text: example, overrides: ["optimizer.learning_rate=0.001"])
        XCTAssertEqual(base.fingerprint, spelledDifferently.fingerprint)

        let changed = try TrainingConfig(text: example, overrides: ["optimizer.learning_rate=2e-3", "model.hidden_size=512"])
        XCTAssertNotEqual(base.fingerprint, changed.fingerprint)
        XCTAssertEqual(base.resumeDifferences(from: changed), ["model.hidden_size", "optimizer.learning_rate"])
        XCTAssertEqual(base.resumeDifferences(from: cadence), [])
    }

    func testBatchLayoutSplitsTheGlobalBatch() throws {
        let config = try TrainingConfig(text: example)  // global 256, micro 32
        XCTAssertTrue(try config.batchLayout(worldSize: 1) == (32, 8))
        XCTAssertTrue(try config.batchLayout(worldSize: 4) == (32, 2))
        XCTAssertTrue(try config.batchLayout(worldSize: 16) == (16, 1))  // micro capped at the share
        let whole = try TrainingConfig(text: example, overrides: ["batch.micro_batch_size=null"])
        XCTAssertTrue(try whole.batchLayout(worldSize: 2) == (128, 1))

        XCTAssertThrowsError(try config.batchLayout(worldSize: 3)) {
            XCTAssertTrue("\($0)".contains("256 sequences cannot be split evenly over 3 ranks"), "\($0)")
        }
        let odd = try TrainingConfig(text: example, overrides: ["batch.micro_batch_size=48"])
        XCTAssertThrowsError(try odd.batchLayout(worldSize: 2)) {
            XCTAssertEqual(($0 as? ConfigError)?.keyPath, "batch.micro_batch_size")
            XCTAssertTrue("\($0)".contains("48 does not divide the per-rank share of 128"), "\($0)")
        }
    }

    func testModelSectionIsCheckedByBertConfigWithKeyPaths() {
        expectError(example.replacingOccurrences(of: "\"hidden_size\"", with: "\"hiden_size\""),
                    keyPath: "model.hiden_size", mentions: "unknown key")
        expectError(example, overrides: ["model.hidden_size=250"], keyPath: "model.num_attention_heads",
                    mentions: "not a multiple")
        expectError(example, overrides: ["model.hidden_size=\"wide\""], keyPath: "model.hidden_size", mentions: "Int")
        // Hugging Face bookkeeping keys are accepted, so a config.json can be pasted in.
        XCTAssertNoThrow(try TrainingConfig(text: example, overrides: [
            "model.transformers_version=\"5.24.0\"", "model.architectures=[\"BertForPreTraining\"]",
        ]))
    }

    func testShippedConfigsLoad() throws {
        let root = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let directory = root.appendingPathComponent("configs").path
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }
        XCTAssertFalse(names.isEmpty, "no configs in \(directory)")
        // Paths inside the configs (the fine-tuning configs' init_from) are relative to the checkout, as users run them.
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(root.path))
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        for name in names {
            XCTAssertNoThrow(try TrainingConfig.load(contentsOfFile: directory + "/" + name), name)
            // finetune-question-answering.json trains task.type question_answering, and so on;
            // finetune-sequence-classification-lora.json with peft.method lora.
            if name.hasPrefix("finetune-"), let config = try? TrainingConfig.load(contentsOfFile: directory + "/" + name) {
                var stem = String(name.dropFirst("finetune-".count).dropLast(".json".count))
                if config.peft.method != .none {
                    let suffix = "-" + config.peft.method.rawValue.replacingOccurrences(of: "_", with: "-")
                    XCTAssertTrue(stem.hasSuffix(suffix), "\(name) names its peft method")
                    stem = String(stem.dropLast(suffix.count))
                }
                XCTAssertEqual(config.task.kind.rawValue, stem.replacingOccurrences(of: "-", with: "_"), name)
            }
        }
    }

    func testLoadNamesTheMissingFile() {
        XCTAssertThrowsError(try TrainingConfig.load(contentsOfFile: "/nonexistent/run.json")) {
            XCTAssertTrue("\($0)".hasPrefix("/nonexistent/run.json: cannot read"), "\($0)")
        }
    }
}
