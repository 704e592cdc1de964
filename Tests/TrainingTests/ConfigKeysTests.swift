import Data
import Foundation
@testable import Training
import XCTest

/// The key declarations drive reading, defaults, checks, the resolved file, the fingerprint and the
/// documentation. The first tests declare a section the way a new one (a fine-tuning `task`) is added
/// and check each of those on it; the others check them on `TrainingConfig`.
final class ConfigKeysTests: XCTestCase {
    private struct Run: Equatable {
        var task = Task()
        var seed: UInt64 = 0

        struct Task: Equatable {
            var kind = Kind.classification
            var trainFile = ""
            var validationFile: String?
            var maxLength = 0
            var docStride: Int?
            var dropout = 0.0
        }

        enum Kind: String, CaseIterable, Sendable { case classification, tokens }
    }

    private let schema = ConfigSchema<Run>(keys: [
        .section("task", required: true, "What to fine-tune for.", [
            .choice("type", \.task.kind, default: .classification, onResume: .mustMatch, "the head"),
            .string("train_file", \.task.trainFile, ifEmpty: "must not be empty; give the training data",
                    onResume: .mayChange, "the training data"),
            .optionalString("validation_file", \.task.validationFile, onResume: .mayChange, "the validation data"),
            .integer("max_length", \.task.maxLength, default: 128, .between(8, 512, else: "must be in [8, 512]"),
                     onResume: .mustMatch, "tokens per sequence"),
            .optionalInteger("doc_stride", \.task.docStride, .atLeast(1, else: "must be at least 1"),
                             onResume: .mustMatch, "window stride"),
            .number("dropout", \.task.dropout, default: 0.1, .from(0, below: 1, else: "must be in [0, 1)"),
                    onResume: .mustMatch, "head dropout"),
        ], rules: [
            ConfigRule(keyPath: "task.doc_stride", help: "less than `task.max_length`") { run in
                guard let stride = run.task.docStride, stride >= run.task.maxLength else { return nil }
                return "is \(stride), not less than max_length \(run.task.maxLength)"
            },
        ]),
        .unsigned("seed", \.seed, default: 7, onResume: .mustMatch, "the seed"),
    ])

    private func read(_ text: String) throws -> Run {
        var run = Run()
        try schema.read(try JSONValue.parse(text), source: "run.json", into: &run)
        return run
    }

    private func expectError(_ text: String, _ expected: String, line: UInt = #line) {
        XCTAssertThrowsError(try read(text), line: line) { XCTAssertEqual("\($0)", expected, line: line) }
    }

    func testDeclaredSectionReadsValuesAndDefaults() throws {
        let run = try read(#"{"task": {"train_file": "a.jsonl", "doc_stride": 64, "type": "tokens"}, "seed": null}"#)
        var expected = Run()
        expected.task = Run.Task(kind: .tokens, trainFile: "a.jsonl", validationFile: nil, maxLength: 128, docStride: 64,
                                 dropout: 0.1)
        expected.seed = 7
        XCTAssertEqual(run, expected)

        var defaults = Run()
        schema.applyDefaults(to: &defaults)
        expected.task = Run.Task(kind: .classification, trainFile: "", validationFile: nil, maxLength: 128, docStride: nil,
                                 dropout: 0.1)
        XCTAssertEqual(defaults, expected)
    }

    func testDeclaredBoundsRulesAndKeysGiveErrorsNamingTheKey() {
        expectError(#"{"task": {"train_file": "a", "max_length": 4}}"#, "run.json: task.max_length: is 4; must be in [8, 512]")
        expectError(#"{"task": {"train_file": "a", "dropout": 1}}"#, "run.json: task.dropout: is 1; must be in [0, 1)")
        expectError(#"{"task": {"train_file": "a", "doc_stride": 128}}"#,
                    "run.json: task.doc_stride: is 128, not less than max_length 128")
        expectError(#"{"task": {"train_file": ""}}"#, "run.json: task.train_file: must not be empty; give the training data")
        expectError(#"{"task": {"max_length": 64}}"#, "run.json: task.train_file: missing; this key is required")
        expectError(#"{"seed": 1}"#, "run.json: task: missing; this section is required")
        expectError(#"{"task": {"train_file": "a", "type": "spans"}}"#,
                    #"run.json: task.type: is "spans"; must be one of "classification", "tokens""#)
        expectError(#"{"task": {"train_file": "a", "labels": []}}"#,
                    "run.json: task.labels: unknown key; check the spelling or remove it "
                        + "(task keys: doc_stride, dropout, max_length, train_file, type, validation_file)")
        expectError(#"{"task": {"train_file": "a"}, "sed": 1}"#,
                    "run.json: sed: unknown key; check the spelling or remove it (top-level keys: seed, task)")
    }

    func testResolvedFileAndResumeKeysFollowTheDeclarations() throws {
        let run = try read(#"{"seed": 3, "task": {"doc_stride": 64, "train_file": "a.jsonl"}}"#)
        XCTAssertEqual(
            schema.json(of: run).compactText(),
            #"{"task":{"type":"classification","train_file":"a.jsonl","validation_file":null,"max_length":128,"#
                + #""doc_stride":64,"dropout":0.1},"seed":3}"#)
        XCTAssertEqual(
            schema.json(of: run, including: { $0.onResume == .mustMatch }).compactText(),
            #"{"task":{"type":"classification","max_length":128,"doc_stride":64,"dropout":0.1},"seed":3}"#)
        XCTAssertEqual(try read(schema.json(of: run).compactText()), run)
    }

    func testDocumentationTableComesFromTheDeclarations() {
        XCTAssertEqual(schema.markdown(), """
            ## Top level

            | key | type | default | accepted | on resume | meaning |
            | --- | --- | --- | --- | --- | --- |
            | `seed` | integer | `7` | [0, 2^64) | must match | the seed |

            ## `task` (required)

            What to fine-tune for.

            | key | type | default | accepted | on resume | meaning |
            | --- | --- | --- | --- | --- | --- |
            | `task.type` | string | `"classification"` | `"classification"`, `"tokens"` | must match | the head |
            | `task.train_file` | string | (required) | not empty | may change | the training data |
            | `task.validation_file` | string or null | `null` |  | may change | the validation data |
            | `task.max_length` | integer | `128` | [8, 512] | must match | tokens per sequence |
            | `task.doc_stride` | integer or null | `null` | >= 1 | must match | window stride |
            | `task.dropout` | number | `0.1` | [0, 1) | must match | head dropout |

            Across keys:

            - `task.doc_stride`: less than `task.max_length`


            """)
    }

    // MARK: - TrainingConfig

    private static let root = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testCommittedDocumentationIsTheGeneratedOne() throws {
        let path = Self.root.appendingPathComponent("docs/configuration.md").path
        let committed = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertEqual(committed, TrainingConfig.keyDocumentation,
                       "docs/configuration.md is out of date: run swiftbert config --keys > docs/configuration.md")
    }

    func testEveryRuleBlamesADeclaredKey() {
        let declared = Set(TrainingConfig.schema.values.map(\.keyPath))
        for section in TrainingConfig.schema.sections {
            for rule in section.content.rules { XCTAssertTrue(declared.contains(rule.keyPath), rule.keyPath) }
        }
    }

    func testDefaultsOfTheInitializerAreThoseOfAFileWithOnlyTheRequiredKeys() throws {
        let file = try TrainingConfig(text: """
            {"model": {"hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128},
             "data": {"directory": "d"}, "batch": {"global_batch_size": 8}, "schedule": {"total_steps": 30}}
            """)
        XCTAssertEqual(TrainingConfig(model: file.model, dataDirectory: "d", globalBatchSize: 8, totalSteps: 30), file)
    }

    /// Each SwiftBERT key in turn gets another valid value: the fingerprint changes and the resume check
    /// names the key exactly when the key is declared `.mustMatch`, and the keys a resumed run may
    /// change are the documented ones.
    /// The task keys are checked on a fine-tuning run, since a pre-training run leaves them out, and the
    /// peft keys on a LoRA run.
    func testOnlyKeysThatMustMatchChangeTheFingerprint() throws {
        let text = try String(contentsOfFile: Self.root.appendingPathComponent("configs/debug.json").path, encoding: .utf8)
        let fineTuning = ["task.type=sequence_classification", "task.train_file=train.tsv", "task.metric_for_best_model=accuracy"]
        let lora = ["peft.method=lora", "init_from=base"]
        var mayChange: [String] = []
        for (keyPath, _, value) in TrainingConfig.schema.values where keyPath != "model" {
            let overrides = keyPath.hasPrefix("task.") ? fineTuning : keyPath.hasPrefix("peft.") ? lora : []
            let base = try TrainingConfig(text: text, overrides: overrides)
            let current = value.write(base)
            guard let changed = Self.candidates(for: current).lazy
                .compactMap({ try? TrainingConfig(text: text, overrides: overrides + ["\(keyPath)=\($0)"]) })
                .first(where: { value.write($0) != current })
            else { XCTFail("no other valid value found for \(keyPath)"); continue }
            if keyPath == "peft.method" {
                // Back to "none" leaves the whole section out, so each of its keys is a difference.
                XCTAssertNotEqual(changed.fingerprint, base.fingerprint, keyPath)
                let differences = changed.resumeDifferences(from: base)
                XCTAssertTrue(differences.contains(keyPath), "\(differences)")
                XCTAssertTrue(differences.allSatisfy { $0.hasPrefix("peft.") }, "\(differences)")
            } else if value.onResume == .mustMatch {
                XCTAssertNotEqual(changed.fingerprint, base.fingerprint, keyPath)
                XCTAssertEqual(changed.resumeDifferences(from: base), [keyPath])
            } else {
                XCTAssertEqual(changed.fingerprint, base.fingerprint, keyPath)
                XCTAssertEqual(changed.resumeDifferences(from: base), [], keyPath)
                XCTAssertEqual(changed.resumableChanges(from: base).count, 1, keyPath)
                mayChange.append(keyPath)
            }
        }
        XCTAssertEqual(mayChange, [
            "data.directory", "batch.micro_batch_size", "schedule.total_steps", "checkpoint.every_steps",
            "checkpoint.keep_last", "checkpoint.keep_every", "logging.every_steps", "logging.eval_every_steps",
            "logging.eval_batches", "max_consecutive_nonfinite_steps", "allreduce_bucket_mb", "init_from",
            "watchdog_seconds", "task.train_file", "task.validation_file", "task.early_stopping_patience",
        ])
    }

    /// Override texts that may give a key of this current value another valid value.
    private static func candidates(for current: JSONValue) -> [String] {
        switch current {
        case let .number(text):
            let number = Double(text)!
            return [number + 1, number - 1, number / 2, 0.5].map { JSONValue.double($0).compactText() }
        case let .bool(flag): return ["\(!flag)"]
        case .null: return ["4", "\"elsewhere\"", "csv", "regression", #"["a","b"]"#, "[0]", #"["query"]"#]
        default: return ["\"elsewhere\"", "lamb", "adamw", "cosine", "linear", "token_classification", "IOB1", "none", "all", "SAMPLE_VOCAB", "LSTM"]
        }
    }

    // MARK: - The task section

    /// A fine-tuning configuration as `swiftbert train --config` takes it: no `model` and no `data` section,
    /// the model from `init_from`'s config.json.
    private static let fineTuningText = """
        { "task": {"type": "sequence_classification", "train_file": "train.tsv", "validation_file": "dev.tsv",
                   "format": "label_tab_text", "metric_for_best_model": "accuracy", "labels": ["neg", "pos"],
                   "problem_type": "single_label_classification", "early_stopping_patience": 2},
          "init_from": "\(root.appendingPathComponent("Tests/TransformerTests/Fixtures/hf-tiny").path)",
          "batch": {"global_batch_size": 16, "sequence_length": 64},
          "optimizer": {"learning_rate": 1e-3},
          "schedule": {"total_steps": 60, "warmup_steps": 5} }
        """

    func testFineTuningConfigReadsTheTaskAndTakesTheModelFromInitFrom() throws {
        let config = try TrainingConfig(text: Self.fineTuningText, source: "ft.json")
        var task = TaskSettings()
        task.kind = .sequenceClassification
        task.trainFile = "train.tsv"
        task.validationFile = "dev.tsv"
        task.format = .labelTabText
        task.metricForBestModel = "accuracy"
        task.labels = ["neg", "pos"]
        task.problemType = .singleLabel
        task.earlyStoppingPatience = 2
        XCTAssertEqual(config.task, task)
        XCTAssertEqual(config.data.directory, "")

        // The model is init_from's config.json without its head; the file's own values, not BertConfig's defaults.
        let directory = Self.root.appendingPathComponent("Tests/TransformerTests/Fixtures/hf-tiny")
        let hf = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("config.json")))
            as? [String: Any])
        XCTAssertEqual(config.model.hiddenSize, hf["hidden_size"] as? Int)
        XCTAssertEqual(config.model.vocabSize, hf["vocab_size"] as? Int)
        XCTAssertEqual(config.model.head, .preTraining)

        // The resolved file writes the task section and the model, and reads back equal, without init_from too.
        let resolved = config.resolved
        guard case let .object(members) = resolved, case let .object(taskMembers)? = members.first(where: { $0.key == "task" })?.value
        else { return XCTFail("no task section in \(resolved.compactText())") }
        XCTAssertEqual(taskMembers.map(\.key), TrainingConfig.schema.values.filter { $0.keyPath.hasPrefix("task.") }.map { String($0.keyPath.dropFirst(5)) })
        XCTAssertEqual(try TrainingConfig(text: config.resolvedJSON()), config)
        XCTAssertEqual(try TrainingConfig(text: config.resolvedJSON(), overrides: ["init_from=null"]).model, config.model)
    }

    func testPreTrainingConfigsLeaveTheTaskOut() throws {
        let text = try String(contentsOfFile: Self.root.appendingPathComponent("configs/debug.json").path, encoding: .utf8)
        let config = try TrainingConfig(text: text)
        XCTAssertEqual(config.task, TaskSettings())
        XCTAssertFalse(config.resolvedJSON().contains("\"task\""))
        // Writing the defaults out explicitly changes neither the resolved file nor the fingerprint.
        let explicit = try TrainingConfig(text: text, overrides: ["task.type=pretraining", "task.doc_stride=128"])
        XCTAssertEqual(explicit.resolvedJSON(), config.resolvedJSON())
        XCTAssertEqual(explicit.fingerprint, config.fingerprint)
    }

    func testTaskSettingsDefaultsAreTheDeclaredOnes() throws {
        let text = try String(contentsOfFile: Self.root.appendingPathComponent("configs/debug.json").path, encoding: .utf8)
        var config = try TrainingConfig(text: text)
        config.task.docStride = 1
        TrainingConfig.schema.applyDefaults(to: &config)
        XCTAssertEqual(config.task, TaskSettings())
    }

    func testTaskErrorsNameTheKey() {
        let model = #""model": {"hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128}"#
        let batch = #""batch": {"global_batch_size": 8}, "schedule": {"total_steps": 30}"#
        func expect(_ task: String, data: Bool = false, _ expected: String, line: UInt = #line) {
            let text = "{\(model), \(batch), \(data ? #""data": {"directory": "d"}, "# : "")\"task\": \(task)}"
            XCTAssertThrowsError(try TrainingConfig(text: text, source: "ft.json"), line: line) {
                XCTAssertEqual("\($0)", expected, line: line)
            }
        }
        expect(#"{"type": "sequence_classification"}"#, "ft.json: task.train_file: missing; this key is required")
        expect(#"{"type": "classify"}"#, #"ft.json: task.type: is "classify"; must be one of "pretraining", "#
            + #""sequence_classification", "token_classification", "question_answering", "multiple_choice", "causal_lm""#)
        expect(#"{"train_file": "a.tsv"}"#, data: true,
               "ft.json: task.train_file: is for fine-tuning; pre-training reads data.directory (set task.type)")
        expect(#"{"metric_for_best_model": "f1"}"#, data: true,
               "ft.json: task.metric_for_best_model: is for fine-tuning; pre-training reads data.directory (set task.type)")
        expect(#"{"type": "sequence_classification", "train_file": "a", "labels": ["x", "x"]}"#,
               "ft.json: task.labels: must be a non-empty list of distinct label names")
        expect(#"{"type": "sequence_classification", "train_file": "a", "labels": []}"#,
               "ft.json: task.labels: must be a non-empty list of distinct label names")
        expect(#"{"type": "sequence_classification", "train_file": "a", "labels": "x"}"#,
               "ft.json: task.labels: must be a list of strings, not a string")
        expect(#"{"type": "sequence_classification", "train_file": "a", "labels": [1]}"#,
               "ft.json: task.labels: must hold strings only, not a number")
        expect(#"{"type": "sequence_classification", "train_file": "a", "problem_type": "ranking"}"#,
               #"ft.json: task.problem_type: is "ranking"; must be one of "single_label_classification", "#
                + #""multi_label_classification", "regression""#)
        expect(#"{"type": "sequence_classification", "train_file": "a", "format": "xml"}"#,
               #"ft.json: task.format: is "xml"; must be one of "csv", "tsv", "jsonl", "label_tab_text", "conll", "#
                + #""word_tag", "peoples_daily", "squad""#)
        expect(#"{"type": "sequence_classification", "train_file": "a", "early_stopping_patience": 2}"#,
               "ft.json: task.early_stopping_patience: needs task.metric_for_best_model to know what improves")
        expect(#"{"type": "sequence_classification", "train_file": "a", "early_stopping_patience": -1}"#,
               "ft.json: task.early_stopping_patience: is -1; must not be negative (0 never stops early)")
        expect(#"{"type": "question_answering", "train_file": "a", "doc_stride": 0}"#,
               "ft.json: task.doc_stride: is 0; must be at least 1")
        expect(#"{"type": "sequence_classification", "train_file": "a", "max_length": 8}"#,
               "ft.json: task.max_length: unknown key; check the spelling or remove it (task keys: doc_stride, "
                + "early_stopping_patience, format, label_field, label_scheme, labels, max_answer_length, "
                + "metric_for_best_model, n_best_size, null_score_diff_threshold, problem_type, text_field, "
                + "text_pair_field, train_file, type, validation_file, version_2_with_negative)")
        // Pre-training still needs its data; fine-tuning does not, but needs a model or init_from.
        expect(#"{"type": "pretraining"}"#, "ft.json: data: missing; this section is required")
        XCTAssertThrowsError(try TrainingConfig(text: #"{"task": {"type": "sequence_classification", "train_file": "a"}, "#
            + "\(batch)}", source: "ft.json")) {
            XCTAssertEqual("\($0)", "ft.json: init_from: missing; fine-tuning starts from a pre-trained model directory (a "
                + "SwiftBERT checkpoint or a Hugging Face BERT directory), whose config.json and tokenizer it uses")
        }
        XCTAssertThrowsError(try TrainingConfig(text: #"{"task": {"type": "sequence_classification", "train_file": "a"}, "#
            + #""init_from": "/no/such/dir", "# + "\(batch)}", source: "ft.json")) {
            XCTAssertTrue("\($0)".hasPrefix("ft.json: init_from: "), "\($0)")
        }
    }
}
