import Foundation
@testable import Training
import XCTest

/// Every key of the run configuration, each given zero, a negative number, huge numbers and values of
/// the wrong type: each is either accepted or refused with a `ConfigError` naming that key. The table
/// must list every key the resolved configuration has, so a new key cannot go unaudited. The accepted
/// extremes are trained with in `ConfigExtremesTests` (integration tests).
final class ConfigKeyAuditTests: XCTestCase {
    private enum Kind { case integer, number, bool, string, choice, optionalInteger, optionalString, optionalChoice, list, stringList }

    /// What a key does with 0, -1, Int.max and 1e300 (true: accepted).
    private struct Row {
        let key: String
        let kind: Kind
        let zero: Bool, negative: Bool, hugeInteger: Bool, hugeNumber: Bool

        init(_ key: String, _ kind: Kind, zero: Bool = false, negative: Bool = false,
             hugeInteger: Bool = false, hugeNumber: Bool = false) {
            self.key = key
            self.kind = kind
            self.zero = zero
            self.negative = negative
            self.hugeInteger = hugeInteger
            self.hugeNumber = hugeNumber
        }
    }

    private let rows: [Row] = [
        Row("model.architectures", .list),
        Row("model.model_type", .string),
        Row("model.position_embedding_type", .string),
        Row("model.vocab_size", .integer),
        Row("model.hidden_size", .integer),
        Row("model.num_hidden_layers", .integer, zero: true),
        Row("model.num_attention_heads", .integer),
        Row("model.intermediate_size", .integer),
        Row("model.hidden_act", .string),
        Row("model.hidden_dropout_prob", .number, zero: true),
        Row("model.attention_probs_dropout_prob", .number, zero: true),
        Row("model.max_position_embeddings", .integer),
        Row("model.type_vocab_size", .integer),
        Row("model.initializer_range", .number, zero: true),
        Row("model.layer_norm_eps", .number),
        // Out of the vocabulary means no padding index, as in Hugging Face.
        Row("model.pad_token_id", .integer, zero: true, negative: true, hugeInteger: true),
        Row("model.num_nsp_labels", .integer, zero: true),
        Row("data.directory", .string),
        Row("data.masked_lm_prob", .number),
        Row("data.max_predictions_per_seq", .integer),
        Row("data.whole_word_masking", .bool),
        Row("batch.global_batch_size", .integer),
        Row("batch.micro_batch_size", .optionalInteger),
        Row("batch.sequence_length", .integer),
        Row("optimizer.name", .choice),
        // A diverging rate is a run the non-finite guard stops with its own error (TrainingTests use 1e30).
        Row("optimizer.learning_rate", .number, hugeInteger: true, hugeNumber: true),
        Row("optimizer.beta1", .number, zero: true),
        Row("optimizer.beta2", .number, zero: true),
        Row("optimizer.epsilon", .number, hugeInteger: true, hugeNumber: true),
        Row("optimizer.weight_decay", .number, zero: true),
        Row("optimizer.bias_correction", .bool),
        Row("optimizer.max_grad_norm", .number, zero: true, hugeInteger: true, hugeNumber: true),
        Row("schedule.warmup_steps", .integer, zero: true),
        Row("schedule.total_steps", .integer),
        Row("schedule.decay", .choice),
        Row("schedule.min_lr_ratio", .number, zero: true),
        Row("checkpoint.every_steps", .integer, hugeInteger: true),
        Row("checkpoint.keep_last", .integer, hugeInteger: true),
        Row("checkpoint.keep_every", .integer, zero: true, hugeInteger: true),
        Row("logging.every_steps", .integer, hugeInteger: true),
        Row("logging.eval_every_steps", .integer, zero: true, hugeInteger: true),
        Row("logging.eval_batches", .integer, hugeInteger: true),
        Row("seed", .integer, zero: true, hugeInteger: true),
        Row("max_consecutive_nonfinite_steps", .integer, hugeInteger: true),
        Row("allreduce_bucket_mb", .number),
        Row("init_from", .optionalString),
        Row("watchdog_seconds", .number, zero: true),
        // Read in a fine-tuning configuration (`fineTuningBase`): pre-training leaves the task section out.
        Row("task.type", .choice),
        Row("task.train_file", .optionalString),
        Row("task.validation_file", .optionalString),
        Row("task.text_field", .optionalString),
        Row("task.text_pair_field", .optionalString),
        Row("task.label_field", .optionalString),
        Row("task.labels", .stringList),
        Row("task.problem_type", .optionalChoice),
        Row("task.metric_for_best_model", .optionalString),
        // Patience without task.metric_for_best_model is refused by a rule naming the key.
        Row("task.early_stopping_patience", .integer, zero: true),
        Row("task.format", .optionalChoice),
        Row("task.label_scheme", .choice),
        Row("task.doc_stride", .integer, hugeInteger: true),
        Row("task.max_answer_length", .integer, hugeInteger: true),
        Row("task.n_best_size", .integer, hugeInteger: true),
        Row("task.version_2_with_negative", .bool),
        Row("task.null_score_diff_threshold", .number, zero: true, negative: true, hugeInteger: true, hugeNumber: true),
    ]

    private let base = """
    {"model": {"vocab_size": 30522, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "intermediate_size": 128},
     "data": {"directory": "data/kjv"},
     "batch": {"global_batch_size": 8, "sequence_length": 128},
     "schedule": {"warmup_steps": 3, "total_steps": 30}}
    """

    private var fineTuningBase: String {
        String(base.dropLast()) + #", "task": {"type": "sequence_classification", "train_file": "train.tsv"}}"#
    }

    /// Every leaf key path of a JSON object, as the resolved file lists them.
    private func keyPaths(_ object: [String: Any], prefix: String = "") -> [String] {
        object.flatMap { key, value -> [String] in
            let path = prefix.isEmpty ? key : prefix + "." + key
            if let child = value as? [String: Any] { return keyPaths(child, prefix: path) }
            return [path]
        }
    }

    func testTheTableCoversEveryResolvedKey() throws {
        var resolvedKeys: Set<String> = []
        for text in [base, fineTuningBase] {
            let resolved = try TrainingConfig(text: text).resolvedJSON()
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(resolved.utf8)) as? [String: Any])
            resolvedKeys.formUnion(keyPaths(object))
        }
        XCTAssertEqual(resolvedKeys, Set(rows.map(\.key)), "a configuration key has no row in the audit table")
    }

    /// The type docs/configuration.md gives each SwiftBERT key is the kind this audit finds the reader enforcing.
    func testTheDocumentedTypeOfEveryKeyIsItsAuditedKind() {
        let documented = Dictionary(uniqueKeysWithValues: TrainingConfig.schema.values.map { ($0.keyPath, $0.value.type) })
        for row in rows where !row.key.hasPrefix("model.") {
            let type: String
            switch row.kind {
            case .integer: type = "integer"
            case .number: type = "number"
            case .bool: type = "boolean"
            case .string, .choice: type = "string"
            case .optionalInteger: type = "integer or null"
            case .optionalString, .optionalChoice: type = "string or null"
            case .list: type = "list"
            case .stringList: type = "list of strings or null"
            }
            XCTAssertEqual(documented[row.key], type, row.key)
        }
    }

    func testEveryKeyAcceptsOrNamesItselfForZeroNegativeHugeAndWrongTypes() throws {
        var cases = 0
        for row in rows {
            var values: [(String, Bool)] = []
            switch row.kind {
            case .integer, .number, .optionalInteger:
                values = [("0", row.zero), ("-1", row.negative), ("9223372036854775807", row.hugeInteger),
                          ("1e300", row.hugeNumber), ("1e400", false), ("\"1\"", false), ("true", false),
                          ("[1]", false), ("{}", false)]
                if row.kind == .integer { values.append(("2.5", false)) }
            case .bool:
                values = [("0", false), ("1", false), ("\"true\"", false), ("null", true), ("[]", false)]
            case .string, .optionalString:
                values = [("0", false), ("true", false), ("[\"a\"]", false), ("{}", false)]
            case .choice:
                values = [("\"no-such-choice\"", false), ("0", false), ("true", false)]
            case .optionalChoice:
                values = [("\"no-such-choice\"", false), ("0", false), ("true", false), ("null", true)]
            case .stringList:
                values = [("0", false), ("\"a\"", false), ("[1]", false), ("[]", false), ("[\"a\",\"a\"]", false),
                          ("{}", false), ("[\"a\",\"b\"]", true), ("null", true)]
            case .list:
                values = [("0", true), ("\"BertModel\"", true)]  // bookkeeping Hugging Face ignores too
            }
            for (value, accepted) in values {
                cases += 1
                let override = "\(row.key)=\(value)"
                do {
                    _ = try TrainingConfig(text: row.key.hasPrefix("task.") ? fineTuningBase : base, source: "run.json",
                                           overrides: [override])
                    XCTAssertTrue(accepted, "\(override) was accepted")
                } catch let error as ConfigError {
                    XCTAssertFalse(accepted, "\(override) was refused: \(error)")
                    // A key whose value breaks a rule shared with another key may be named by either,
                    // but always the key the override set or the section's own rule.
                    XCTAssertTrue(error.description.contains(row.key) || error.keyPath == row.key,
                                  "\(override): the error does not name \(row.key): \(error)")
                    XCTAssertFalse(error.description.contains("\n"), "\(override): a multi-line error: \(error)")
                }
            }
        }
        XCTAssertGreaterThan(cases, 300)
        print("config audit: \(cases) values over \(rows.count) keys")
    }
}
