import Data
import Foundation
import Transformer

/// Every key of the run configuration, each declared once: its place in the file, the property it
/// binds to, its type, default, bounds (with the message for a value outside them), whether a resumed
/// run may change it, and one line of documentation. Reading, the resolved file, the fingerprint and
/// docs/configuration.md (`swiftbert config --keys`) come from this list.
///
/// A new section is a property of `TrainingConfig` (a settings struct) and one more `.section(...)` here.
extension TrainingConfig {
    static let schema = ConfigSchema<TrainingConfig>(keys: [
        .custom("model", \.modelSection, type: "object", required: .when(preTrainingOrNoInitFrom), onResume: .mustMatch,
                "the model: Hugging Face `BertConfig` keys, plus `num_nsp_labels` (2, 3 or 0), or for `causal_lm` `GPT2Config` "
                    + "keys, as described above; a run without it takes `init_from`'s `config.json`",
                read: { try readModel(&$0, $1) }, write: { modelJSON($0) }),

        .section("data", required: .when(preparedData), "The prepared data and how it is masked; sequence pairs and the NSP mode come from the data's manifest.", [
            .string("directory", \.data.directory, required: .when(preparedData),
                    ifEmpty: "must not be empty; give the shard directory", onResume: .mayChange,
                    "directory of the shards and their manifest (`--data` overrides); data may move, the shards carry their own fingerprint"),
            .number("masked_lm_prob", \.data.maskedLMProbability, default: 0.15,
                    .strictlyBetween(0, 1, else: "must be between 0 and 1 (exclusive), typically 0.15"), onResume: .mustMatch,
                    "fraction of tokens masked, from an RNG keyed by (seed, epoch, sample) at load time"),
            .integer("max_predictions_per_seq", \.data.maxPredictionsPerSequence, default: 20,
                     .atLeast(1, else: "must be at least 1"), onResume: .mustMatch, "most masked positions in one sequence"),
            .boolean("whole_word_masking", \.data.wholeWordMasking, default: false, onResume: .mustMatch,
                     "mask every WordPiece of a chosen word together"),
        ]),

        .section("batch", required: true, "How many sequences an optimizer step takes, and how they are split.", [
            .integer("global_batch_size", \.batch.globalBatchSize, default: nil,
                     .between(1, maxGlobalBatchSize, else: "must be between 1 and \(maxGlobalBatchSize.formatted()) sequences"),
                     onResume: .mustMatch, "sequences per optimizer step, summed over all ranks and micro-batches"),
            .optionalInteger("micro_batch_size", \.batch.microBatchSize,
                             .atLeast(1, else: "must be at least 1 (or null for the whole per-rank share)"), onResume: .mayChange,
                             "sequences per forward/backward pass on one rank (null: the rank's whole share); the share is accumulated in micro-batches"),
            .integer("sequence_length", \.batch.sequenceLength, default: 128,
                     .atLeast(5, else: "must be at least 5 ([CLS] A [SEP] B [SEP])"), onResume: .mustMatch,
                     "tokens per sequence, padding included; must equal the data's `max_seq_length`"),
        ], rules: [
            ConfigRule(keyPath: "batch.micro_batch_size", help: "at most `batch.global_batch_size`") { config in
                guard let micro = config.batch.microBatchSize, micro > config.batch.globalBatchSize else { return nil }
                return "is \(micro), larger than global_batch_size \(config.batch.globalBatchSize); lower it"
            },
            ConfigRule(keyPath: "batch.sequence_length", help: "at most `model.max_position_embeddings` (GPT-2: `n_positions`)") { config in
                guard config.batch.sequenceLength > config.maxPositions else { return nil }
                let key = config.gpt2 == nil ? "max_position_embeddings" : "n_positions"
                return "is \(config.batch.sequenceLength) but model.\(key) is "
                    + "\(config.maxPositions); use a shorter sequence or a model with more positions"
            },
            ConfigRule(keyPath: "data.max_predictions_per_seq", help: "at most `batch.sequence_length` (pre-training)") { config in
                // Masking settings mean nothing to a fine-tuning run, whose sequences may be short.
                guard config.task.kind == .pretraining, config.data.maxPredictionsPerSequence > config.batch.sequenceLength
                else { return nil }
                return "is \(config.data.maxPredictionsPerSequence), more than batch.sequence_length \(config.batch.sequenceLength)"
            },
        ]),

        .section("optimizer", required: false, "The optimizer and its hyperparameters (BERT's values by default).", [
            .choice("name", \.optimizer.name, default: .adamw, onResume: .mustMatch,
                    "`adamw` (decoupled weight decay, none on LayerNorm weights and biases) or `lamb`"),
            .number("learning_rate", \.optimizer.learningRate, default: 1e-4,
                    .above(0, else: "must be positive, e.g. 1e-4"), onResume: .mustMatch,
                    "peak learning rate, reached at the end of the warmup"),
            .number("beta1", \.optimizer.beta1, default: 0.9,
                    .from(0, below: 1, else: "must be in [0, 1), typically 0.9"), onResume: .mustMatch,
                    "decay of the first moment"),
            .number("beta2", \.optimizer.beta2, default: 0.999,
                    .from(0, below: 1, else: "must be in [0, 1), typically 0.999"), onResume: .mustMatch,
                    "decay of the second moment"),
            .number("epsilon", \.optimizer.epsilon, default: 1e-6,
                    .above(0, else: "must be positive, typically 1e-6"), onResume: .mustMatch,
                    "added to the root of the second moment"),
            .number("weight_decay", \.optimizer.weightDecay, default: 0.01,
                    .between(0, 1, else: "must be in [0, 1], typically 0.01"), onResume: .mustMatch,
                    "decoupled weight decay, not applied to LayerNorm weights and biases"),
            .boolean("bias_correction", \.optimizer.biasCorrection, default: true, onResume: .mustMatch,
                     "divide the moments by (1 - beta^t) as PyTorch's AdamW does; false gives Google's AdamWeightDecay"),
            .number("max_grad_norm", \.optimizer.maxGradNorm, default: 1,
                    .atLeast(0, else: "must not be negative (0 disables clipping)"), onResume: .mustMatch,
                    "clip gradients to this global L2 norm (0: no clipping)"),
        ]),

        .section("schedule", required: true, "The learning rate over the steps: linear warmup, then decay.", [
            .integer("warmup_steps", \.schedule.warmupSteps, default: 0,
                     .atLeast(0, else: "must not be negative"), onResume: .mustMatch,
                     "steps of linear warmup from 0 to the peak"),
            .integer("total_steps", \.schedule.totalSteps, default: nil,
                     .between(1, maxTotalSteps, else: "must be between 1 and \(maxTotalSteps.formatted())"), onResume: .mayChange,
                     "optimizer steps of the run; a resumed run may extend it and follows the new schedule from the step it resumes at"),
            .choice("decay", \.schedule.decay, default: .linear, onResume: .mustMatch,
                    "after the warmup: `linear` or `cosine` decay, or `constant`"),
            .number("min_lr_ratio", \.schedule.minLRRatio, default: 0,
                    .between(0, 1, else: "must be in [0, 1]: the final learning rate as a fraction of the peak"), onResume: .mustMatch,
                    "the learning rate decays to this fraction of the peak, not to 0"),
        ], rules: [
            ConfigRule(keyPath: "schedule.warmup_steps", help: "at most `schedule.total_steps`") { config in
                guard config.schedule.warmupSteps > config.schedule.totalSteps else { return nil }
                return "is \(config.schedule.warmupSteps), more than total_steps \(config.schedule.totalSteps); lower it"
            },
        ]),

        .section("checkpoint", required: false, "When checkpoints are written and which are kept.", [
            .integer("every_steps", \.checkpoint.everySteps, default: 1000,
                     .atLeast(1, else: "must be at least 1"), onResume: .mayChange, "steps between checkpoints"),
            .integer("keep_last", \.checkpoint.keepLast, default: 3,
                     .atLeast(1, else: "must be at least 1 (the newest checkpoint is always kept)"), onResume: .mayChange,
                     "keep the newest this many checkpoints ..."),
            .integer("keep_every", \.checkpoint.keepEvery, default: 0,
                     .atLeast(0, else: "must not be negative (0 keeps no extra checkpoints)"), onResume: .mayChange,
                     "... and also every checkpoint whose step is a multiple of this (0: none)"),
        ]),

        .section("logging", required: false, "Metrics records and validation.", [
            .integer("every_steps", \.logging.everySteps, default: 10,
                     .atLeast(1, else: "must be at least 1"), onResume: .mayChange, "steps between metrics records"),
            .integer("eval_every_steps", \.logging.evalEverySteps, default: 1000,
                     .atLeast(0, else: "must not be negative (0 disables evaluation)"), onResume: .mayChange,
                     "evaluate on the validation split every this many steps (0: never)"),
            .integer("eval_batches", \.logging.evalBatches, default: 20,
                     .atLeast(1, else: "must be at least 1"), onResume: .mayChange,
                     "global batches in one evaluation; fewer when the validation split holds fewer"),
        ]),

        .unsigned("seed", \.seed, default: 12345, onResume: .mustMatch,
                  "root of every random stream: initialisation, data order, masking, dropout"),
        .integer("max_consecutive_nonfinite_steps", \.maxConsecutiveNonfiniteSteps, default: 3,
                 .atLeast(1, else: "must be at least 1"), onResume: .mayChange,
                 "steps with NaN/Inf gradients are skipped on all ranks; this many in a row stop the run"),
        .number("allreduce_bucket_mb", \.allreduceBucketMB, default: 25,
                .between(0.01, 4096, else: "must be in [0.01, 4096] MiB, typically 25"), onResume: .mayChange,
                "size of the gradient all-reduce buckets, in MiB"),
        .optionalString("init_from", \.initFrom, onResume: .mayChange,
                        "a Hugging Face BERT directory to start from instead of random initialisation; its `config.json` and vocabulary must match `model` and the data"),
        .number("watchdog_seconds", \.watchdogSeconds, default: 600,
                .between(0, maxWatchdogSeconds,
                         else: "must be between 0 (no watchdog) and \(Int(maxWatchdogSeconds).formatted()) seconds"),
                onResume: .mayChange,
                "under `mpirun`, how long a rank may go without progress (a step, an evaluation, a checkpoint) before the job is aborted; with in-process ranks, how long a rank waits for the others (0: off)"),

        .section("task", required: false, "What to train: pre-training on `data.directory`, or a fine-tuning task on labelled files (read before the other keys, which depend on `task.type`).", [
            .choice("type", \.task.kind, default: .pretraining, onResume: .mustMatch, "the task and so the head trained"),
            .optionalString("train_file", \.task.trainFile, required: .when(fineTuning), onResume: .mayChange,
                            "labelled training data (CSV/TSV with a header, JSON lines, ...)"),
            .optionalString("validation_file", \.task.validationFile, onResume: .mayChange,
                            "labelled validation data; without it, evaluation and best-checkpoint selection are off"),
            .optionalString("text_field", \.task.textField, onResume: .mustMatch,
                            "field (column) of the text; null: the Hugging Face datasets' name (`text`, `sentence1`, ...)"),
            .optionalString("text_pair_field", \.task.textPairField, onResume: .mustMatch,
                            "field of the second text of a pair; null: `sentence2` when the data has it"),
            .optionalString("label_field", \.task.labelField, onResume: .mustMatch, "field of the label; null: `label`"),
            .stringList("labels", \.task.labels, accepted: "not empty, distinct",
                        check: { Set($0).count != $0.count || $0.isEmpty ? "must be a non-empty list of distinct label names" : nil },
                        onResume: .mustMatch, "label names in id order; null: read from the training data in order of first appearance"),
            .optionalChoice("problem_type", \.task.problemType, onResume: .mustMatch,
                            "sequence classification's loss; null: single-label classification (regression for numeric labels)"),
            .optionalString("metric_for_best_model", \.task.metricForBestModel, onResume: .mustMatch,
                            "the validation metric that picks the best checkpoint (`accuracy`, `f1`, `loss`, ...); null: none"),
            .integer("early_stopping_patience", \.task.earlyStoppingPatience, default: 0,
                     .atLeast(0, else: "must not be negative (0 never stops early)"), onResume: .mayChange,
                     "stop after this many evaluations without improvement of `metric_for_best_model` (0: never)"),
            .optionalChoice("format", \.task.format, onResume: .mustMatch,
                            "layout of the data files; null: from the extension (.csv, .tsv, .jsonl/.json)"),
            .choice("label_scheme", \.task.labelScheme, default: .iob2, onResume: .mustMatch,
                    "token classification: the tag scheme entities are read with (seqeval's rules)"),
            .integer("doc_stride", \.task.docStride, default: 128, .atLeast(1, else: "must be at least 1"), onResume: .mustMatch,
                     "question answering: tokens shared by consecutive windows of a long context"),
            .integer("max_answer_length", \.task.maxAnswerLength, default: 30, .atLeast(1, else: "must be at least 1"),
                     onResume: .mustMatch, "question answering: the longest answer span, in tokens"),
            .integer("n_best_size", \.task.nBestSize, default: 20, .atLeast(1, else: "must be at least 1"),
                     onResume: .mustMatch, "question answering: start and end candidates per window"),
            .boolean("version_2_with_negative", \.task.versionTwoWithNegative, default: false, onResume: .mustMatch,
                     "question answering: SQuAD v2.0, questions may have no answer"),
            .number("null_score_diff_threshold", \.task.nullScoreDiffThreshold, default: 0, onResume: .mustMatch,
                    "question answering: predict no answer when its score exceeds the best answer's by more than this"),
        ], rules: fineTuningOnly.map { key, isSet in
            ConfigRule(keyPath: "task." + key, help: "only for fine-tuning") { config in
                config.task.readsPreparedData && isSet(config.task)
                    ? "is for fine-tuning; \(config.task.kind == .pretraining ? "pre-training" : "causal_lm") reads data.directory (set task.type)"
                    : nil
            }
        } + [
            ConfigRule(keyPath: "task.early_stopping_patience", help: "needs `task.metric_for_best_model`") { config in
                guard config.task.earlyStoppingPatience > 0, config.task.metricForBestModel == nil else { return nil }
                return "needs task.metric_for_best_model to know what improves"
            },
        ], omitted: preTraining),

        .section("peft", required: false, "Parameter-efficient tuning as Hugging Face peft defines it: the base model (`init_from`) stays frozen and only the adapter (and the modules it names) trains; checkpoints hold the adapter in peft's files.", [
            .choice("method", \.peft.method, default: .none, onResume: .mustMatch,
                    "`lora` (BERT tasks and causal_lm), `prefix_tuning` (P-tuning v2: learned keys and values in every layer), `prompt_tuning` or `p_tuning` (virtual tokens, learned directly or through peft's MLP prompt encoder; sequence classification), or `none` to train every parameter"),
            .integer("r", \.peft.rank, default: 8, .atLeast(1, else: "must be at least 1, typically 8"), onResume: .mustMatch,
                     "LoRA: rank of the update B A"),
            .number("lora_alpha", \.peft.alpha, default: 8, .above(0, else: "must be positive, typically r or 2 r"),
                    onResume: .mustMatch, "LoRA: the update is scaled by lora_alpha / r"),
            .number("lora_dropout", \.peft.dropout, default: 0, .from(0, below: 1, else: "must be in [0, 1)"),
                    onResume: .mustMatch, "LoRA: dropout on the adapted projections' inputs (the update's path only)"),
            .boolean("use_rslora", \.peft.useRSLoRA, default: false, onResume: .mustMatch,
                     "LoRA: scale by lora_alpha / sqrt(r) (rank-stabilised) instead"),
            .stringList("target_modules", \.peft.targetModules, accepted: "not empty",
                        check: { $0.isEmpty ? "must name at least one module, e.g. [\"query\", \"value\"]" : nil },
                        onResume: .mustMatch,
                        "LoRA: the projections adapted, by module name as peft matches them (a module matches when its name is the target or ends with \".\" + target). BERT: `query`, `key`, `value`, `attention.output.dense`, `intermediate.dense`, `output.dense` (`output.dense` also matches `attention.output.dense`); null: query and value. GPT-2: `c_attn`, `c_proj` (both `attn.c_proj` and `mlp.c_proj`), `attn.c_proj`, `c_fc`, `mlp.c_proj`; null: c_attn"),
            .custom("layers_to_transform", \.peft.layersToTransform, type: "list of integers or null", required: .never,
                    onResume: .mustMatch, "LoRA: adapt only these layers (BERT's encoder layers, GPT-2's blocks; 0-based); null: all",
                    read: { reader, _ in try readIntegerList(&reader, "layers_to_transform") },
                    write: { $0.map { .array($0.map { .integer($0) }) } ?? .null }),
            .choice("bias", \.peft.bias, default: .none, onResume: .mustMatch,
                    "LoRA: `all` also trains every bias (LayerNorm biases included, as peft does)"),
            .integer("num_virtual_tokens", \.peft.virtualTokenCount, default: 20, .atLeast(1, else: "must be at least 1"),
                     onResume: .mustMatch, "prompt tuning: learned virtual tokens in front of every sequence; prefix tuning: learned keys and values in front of every layer's"),
            .choice("prompt_tuning_init", \.peft.promptInitialization, default: .random, onResume: .mustMatch,
                    "prompt tuning: `RANDOM` (N(0, 1), as peft) or `SAMPLE_VOCAB` (word embeddings of random token ids)"),
            .boolean("prefix_projection", \.peft.prefixProjection, default: false, onResume: .mustMatch,
                     "prefix tuning: compute the prefix with an MLP (Linear, Tanh, Linear) from learned rows while training, as peft's prefix_projection; the adapter holds its output"),
            .optionalInteger("encoder_hidden_size", \.peft.encoderHiddenSize, .atLeast(1, else: "must be at least 1"), onResume: .mustMatch,
                             "P-tuning and prefix_projection: width of the prompt encoder's hidden layers; null: the model's hidden_size"),
            .choice("encoder_reparameterization_type", \.peft.encoderType, default: .mlp, onResume: .mustMatch,
                    "P-tuning: the prompt encoder, `MLP` (Linear, ReLU, Linear, ReLU, Linear) or `LSTM` (a bidirectional LSTM of encoder_hidden_size units, then Linear, ReLU, Linear), as peft's"),
            .integer("encoder_num_layers", \.peft.encoderLayerCount, default: 2, .atLeast(1, else: "must be at least 1"),
                     onResume: .mustMatch, "P-tuning with the LSTM encoder: its layers"),
            .stringList("modules_to_save", \.peft.modulesToSave, accepted: "",
                        check: { _ in nil }, onResume: .mustMatch,
                        "modules trained in full beside the adapter, by module name; null: the task head's output layer (`classifier`, `qa_outputs`; none for pre-training)"),
        ], rules: peftRules, omitted: noPeft),
    ], readFirst: ["task"])

    private static let peftRules: [ConfigRule<TrainingConfig>] = [
        ConfigRule(keyPath: "peft.method", help: "`lora` or `none` for causal_lm") { config in
            guard config.peft.method != .none, config.peft.method != .lora, config.task.kind == .causalLM else { return nil }
            return "\(config.peft.method.rawValue) is not available for causal_lm (GPT-2 trains with LoRA or in full); use \"lora\" or \"none\""
        },
        ConfigRule(keyPath: "peft.method", help: "needs `init_from`, the frozen base model") { config in
            guard config.peft.method != .none, config.initFrom == nil else { return nil }
            return "trains an adapter on a frozen base model; set init_from to that model's directory"
        },
        ConfigRule(keyPath: "peft.method", help: "`prompt_tuning` for sequence classification") { config in
            guard config.peft.method == .promptTuning || config.peft.method == .pTuning,
                config.task.kind != .sequenceClassification else { return nil }
            return "\(config.peft.method.rawValue) supports task.type sequence_classification only (the virtual tokens would shift "
                + "other heads' per-token outputs); use lora"
        },
        ConfigRule(keyPath: "peft.num_virtual_tokens", help: "fits the model's positions with the sequence") { config in
            guard [.promptTuning, .pTuning, .prefixTuning].contains(config.peft.method) else { return nil }
            let total = config.peft.virtualTokenCount + config.batch.sequenceLength
            return total > config.model.maxPositionEmbeddings
                ? "is \(config.peft.virtualTokenCount); with batch.sequence_length \(config.batch.sequenceLength) that is "
                    + "\(total) positions, more than the model's \(config.model.maxPositionEmbeddings); use fewer tokens or a shorter sequence"
                : nil
        },
    ] + ["r", "lora_alpha", "lora_dropout", "target_modules", "layers_to_transform", "bias", "modules_to_save"].map { key in
        ConfigRule(keyPath: "peft." + key, help: "fits the model") { config in
            do {
                if let gpt2 = config.gpt2 {
                    _ = try config.peft.lora(defaultTargets: LoraSettings.gpt2DefaultTargets)?.adaptedModules(gpt2)
                } else {
                    _ = try config.peft.lora(defaultTargets: LoraSettings.bertDefaultTargets)?.adaptedModules(config.model)
                }
                return nil
            } catch let error as LoraSettingsError {
                return error.key == key ? error.message : nil
            } catch {
                return "\(error)"
            }
        }
    }

    private static let noPeft = ConfigCondition<TrainingConfig>(help: "`peft.method` is `\"none\"`") { $0.peft.method == .none }

    /// A list of integers or null.
    private static func readIntegerList(_ reader: inout ObjectReader, _ name: String) throws -> [Int]? {
        guard let value = reader.take(name) else { return nil }
        guard case let .array(items) = value else { throw reader.error(name, "must be a list of integers or null") }
        return try items.map { item in
            guard case let .number(text) = item, let number = Int(text) else {
                throw reader.error(name, "must be a list of integers, not one holding \(item.compactText())")
            }
            return number
        }
    }

    private static let preTraining = ConfigCondition<TrainingConfig>(help: "`task.type` is `\"pretraining\"`") {
        $0.task.kind == .pretraining
    }
    private static let preparedData = ConfigCondition<TrainingConfig>(
        help: "`task.type` is `\"pretraining\"`, or `\"causal_lm\"` without `task.train_file`") { $0.task.readsPreparedData }
    private static let fineTuning = ConfigCondition<TrainingConfig>(
        help: "`task.type` is a fine-tuning task (not `\"pretraining\"` or `\"causal_lm\"`)") {
        $0.task.kind != .pretraining && $0.task.kind != .causalLM
    }
    /// Documents `readModel(_:_:)`, which sees `init_from` before it is read.
    private static let preTrainingOrNoInitFrom = ConfigCondition<TrainingConfig>(
        help: "`task.type` is `\"pretraining\"` or `init_from` is null") { $0.task.kind == .pretraining || $0.initFrom == nil }
    /// Task keys a pre-training run must not set, in the order they are checked.
    private static let fineTuningOnly: [(String, @Sendable (TaskSettings) -> Bool)] = [
        ("train_file", { $0.trainFile != nil }), ("validation_file", { $0.validationFile != nil }),
        ("labels", { $0.labels != nil }), ("metric_for_best_model", { $0.metricForBestModel != nil }),
    ]

    /// docs/configuration.md, generated from `schema` (`swiftbert config --keys`).
    public static var keyDocumentation: String {
        let bookkeeping = ignoredModelKeys.sorted().map { "`\($0)`" }.joined(separator: ", ")
        let text = """
            # Configuration keys

            <!-- Generated from Sources/Training/ConfigKeys.swift by `swiftbert config --keys`; do not edit. -->

            A run is described by one JSON file (examples in `configs/`). Any key can be overridden on the \
            command line with `--set section.key=value`: the value is read as JSON when it parses as JSON, \
            as a string otherwise. A key that is absent or `null` takes its default. Unknown keys, wrong \
            types and values outside the accepted ones are errors naming the key. \
            `swiftbert config --config FILE` prints a configuration with every default filled in, as a run \
            writes it to its `config.json`.

            `model` holds Hugging Face `BertConfig` keys verbatim (`vocab_size`, `hidden_size`, \
            `num_hidden_layers`, `num_attention_heads`, `intermediate_size`, ...; see \
            [hugging-face.md](hugging-face.md)), plus SwiftBERT's `num_nsp_labels` (2, 3 or 0). Hugging \
            Face bookkeeping keys are accepted and dropped, so a `config.json` can be pasted in: \
            \(bookkeeping).

            On resume: a run resumed from a checkpoint must keep the keys marked "must match" (their values \
            form the configuration fingerprint stored with each checkpoint); the others may change, and the \
            run logs what changed.


            """ + schema.markdown()
        return text.trimmingCharacters(in: .newlines) + "\n"
    }

    // Bounds far beyond any real run; they keep sizes and deadlines within what the arithmetic holds.
    static let maxGlobalBatchSize = 1 << 24
    static let maxTotalSteps = 1_000_000_000_000
    static let maxWatchdogSeconds = 1e7
}
