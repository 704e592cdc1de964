import ArgumentParser
import Data
import Distributed
import Foundation
import Kernels
import Training
import Transformer

/// Where the columns of labelled data are, for the commands that read it.
struct DataFieldOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Field (column) of the text (default: the Hugging Face datasets' names).", valueName: "name"))
    var textField: String?
    @Option(help: ArgumentHelp("Field of the second text of pairs.", valueName: "name"))
    var textPairField: String?
    @Option(help: ArgumentHelp("Field of the label (default: label).", valueName: "name"))
    var labelField: String?
    @Option(name: .customLong("data-format"), help: ArgumentHelp(
        "Layout of the data: " + TaskFormat.allCases.map(\.rawValue).joined(separator: ", ")
            + " (default: from the extension, .csv/.tsv/.jsonl).", valueName: "format"))
    var dataFormat: String?

    func validate() throws {
        if let dataFormat, TaskFormat(rawValue: dataFormat) == nil {
            throw ValidationError("--data-format must be one of " + TaskFormat.allCases.map(\.rawValue).joined(separator: ", "))
        }
    }
}

extension DataFieldOptions {
    /// `options`, each unset field taken from a training run's task settings.
    static func merged(_ options: DataFieldOptions, with task: TaskSettings?) -> DataFieldOptions {
        var merged = options
        merged.textField = options.textField ?? task?.textField
        merged.textPairField = options.textPairField ?? task?.textPairField
        merged.labelField = options.labelField ?? task?.labelField
        merged.dataFormat = options.dataFormat ?? task?.format?.rawValue
        return merged
    }
}

/// The fine-tuning task of a model directory's head.
func taskKind(of config: BertConfig, model: String) throws -> TaskKind {
    guard let kind = TaskKind.allCases.first(where: { $0.head == config.head }), kind != .pretraining else {
        throw ValidationError(
            "\(model) holds a \(config.architectures.first ?? "BERT") model without a fine-tuning head; give a directory "
                + "written by a fine-tuning run (its config.json names e.g. BertForSequenceClassification)")
    }
    return kind
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a fine-tuned model's loss and metrics on labelled data, as JSON.",
        discussion: """
            Runs the evaluation a fine-tuning run makes, over every example of --data, and prints one JSON object: \
            the loss and the task's metrics (accuracy, f1_macro, f1_micro, matthews_correlation for classification; \
            pearson, spearmanr, mse for regression; ...). Labels are matched by name to the model's id2label. \
            Under mpirun the examples are shared by the ranks.

            Example: swiftbert evaluate --model runs/sentiment/best --data dev.tsv
            """)

    @Option(help: ArgumentHelp("A fine-tuned model directory (a checkpoint of a fine-tuning run), or a peft adapter directory.", valueName: "dir"))
    var model: String

    @Option(help: ArgumentHelp("The base model of the adapter --model names (default: its adapter_config.json's base_model_name_or_path).", valueName: "dir"))
    var base: String?

    @Option(help: ArgumentHelp("Labelled data in the format the model was fine-tuned on (CSV/TSV/JSON lines).", valueName: "file"))
    var data: String

    @OptionGroup var fields: DataFieldOptions

    @Option(help: ArgumentHelp("Examples per forward pass on each rank.", valueName: "n"))
    var batchSize = 32

    @Option(help: ArgumentHelp("Tokens per sequence with [CLS] and [SEP] (default: min(512, max_position_embeddings)).", valueName: "n"))
    var maxLength: Int?

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be positive, got \(batchSize)") }
    }

    func run() throws {
        let source: (config: BertConfig, base: String, adapter: String?)
        do {
            source = try PeftAdapter.resolve(model: model, base: base)
        } catch {
            Console.standalone.fail("\(error)")
            throw ExitCode.failure
        }
        let modelConfig = source.config
        let kind = try taskKind(of: modelConfig, model: model)
        // A checkpoint of a fine-tuning run knows how its data was read: its settings are the defaults.
        let trained = try? TrainingConfig.load(
            contentsOfFile: (model as NSString).appendingPathComponent(Trainer.trainingConfigFileName))
        func string(_ value: String?) -> JSONValue { value.map { .string($0) } ?? .null }
        let fields = DataFieldOptions.merged(fields, with: trained?.task)
        let size = Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] ?? "1") ?? 1
        var task: [(key: String, value: JSONValue)] = [
            ("type", .string(kind.rawValue)), ("train_file", .string(data)), ("validation_file", .string(data)),
            ("text_field", string(fields.textField)), ("text_pair_field", string(fields.textPairField)),
            ("label_field", string(fields.labelField)), ("format", string(fields.dataFormat)),
        ]
        if kind == .sequenceClassification {
            task.append(("problem_type", .string(modelConfig.resolvedProblemType.rawValue)))
            if modelConfig.resolvedProblemType != .regression {
                task.append(("labels", .array(modelConfig.labels.map { .string($0) })))
            }
        } else if !modelConfig.labels.isEmpty {
            task.append(("labels", .array(modelConfig.labels.map { .string($0) })))
        }
        if kind == .questionAnswering, let trained = trained?.task {
            task += [("doc_stride", .integer(trained.docStride)), ("max_answer_length", .integer(trained.maxAnswerLength)),
                     ("n_best_size", .integer(trained.nBestSize)),
                     ("version_2_with_negative", .bool(trained.versionTwoWithNegative)),
                     ("null_score_diff_threshold", .double(trained.nullScoreDiffThreshold))]
        }
        if kind == .tokenClassification, let scheme = trained?.task.labelScheme {
            task.append(("label_scheme", .string(scheme.rawValue)))
        }
        let root = JSONValue.object([
            ("task", .object(task)),
            ("init_from", .string(source.base)),
            ("batch", .object([
                ("global_batch_size", .integer(batchSize * size)),
                ("sequence_length", .integer(
                    maxLength ?? trained?.batch.sequenceLength
                        ?? min(512, modelConfig.textPositions))),
            ])),
            ("schedule", .object([("total_steps", .integer(1))])),
        ])
        var config: TrainingConfig
        do {
            config = try TrainingConfig(text: root.compactText(), source: "evaluate")
            config.model.lora = modelConfig.lora
            config.model.prompt = modelConfig.prompt
            config.model.prefix = modelConfig.prefix
        } catch {
            Console.standalone.fail("\(error)")
            throw ExitCode.failure
        }
        try runOnRanks(announce: false) { comm, console in
            // Standard output carries the result alone; progress goes to standard error.
            let record = try Trainer.evaluate(config: config, adapter: source.adapter, communicator: comm) {
                FileHandle.standardError.write(Data("\($0)\n".utf8))
            }
            guard comm.rank == 0 else { return }
            let members = record.fields.compactMap { name, value in value.map { (key: name, value: JSONValue.double($0)) } }
            print(JSONValue.object(members).compactText())
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a fine-tuned model on texts and print what the matching transformers pipeline returns, as JSON lines.",
        discussion: """
            The model's head picks the pipeline: text-classification ([{"label", "score"}] per input, --top-k for \
            more labels), token-classification (entity groups {"entity_group", "score", "word", "start", "end"}), \
            question-answering ({"score", "start", "end", "answer"}). Input: --input FILE ('-' for standard input) \
            with one text per line, or JSON lines (--format jsonl) with the pipelines' field names: "text" and \
            optionally "text_pair"; "question" and "context" for question answering. One output line per input, in \
            input order; nothing is printed when an input is malformed.

            Example: swiftbert predict --model runs/sentiment/best --input reviews.txt
            """)

    @Option(help: ArgumentHelp("A fine-tuned model directory, or a peft adapter directory.", valueName: "dir"))
    var model: String

    @Option(help: ArgumentHelp("The base model of the adapter --model names (default: its adapter_config.json's base_model_name_or_path).", valueName: "dir"))
    var base: String?

    @Option(help: ArgumentHelp("Inputs: FILE, or '-' for standard input.", valueName: "file"))
    var input: String = "-"

    @Option(help: "lines (one text per line) or jsonl (one JSON object per line).")
    var format: TextInputOptions.Format = .lines

    @Option(help: ArgumentHelp("Text classification: labels per input, best first (default 1; 0 for all).", valueName: "k"))
    var topK = 1

    @Option(help: ArgumentHelp("Inputs per forward pass.", valueName: "n"))
    var batchSize = 32

    @Option(help: ArgumentHelp("Tokens per sequence with [CLS] and [SEP] (default: min(512, max_position_embeddings)); longer inputs are truncated.", valueName: "n"))
    var maxLength: Int?

    @OptionGroup var questionAnswering: QuestionAnsweringOptions

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be positive, got \(batchSize)") }
        if topK < 0 { throw ValidationError("--top-k must not be negative, got \(topK)") }
        if let maxLength, maxLength < 3 { throw ValidationError("--max-length must be at least 3, got \(maxLength)") }
    }

    func run() throws {
        // All cores for BLAS and the element-wise kernels (attention, softmax, GELU, LayerNorm).
        BLASRuntime.setThreadCount(CPUFeatures.allowedCoreCount)
        Parallel.workerCount = CPUFeatures.allowedCoreCount
        do {
            let source = try PeftAdapter.resolve(model: model, base: base)
            let config = source.config
            _ = try taskKind(of: config, model: model)
            let length = min(maxLength ?? 512, config.textPositions)
            let inputs = try readInputs()
            let tokenizer = try PretrainedTokenizer.load(directory: tokenizerDirectory(source)).tokenizer
            let loaded = try BertModel.load(source, maxSequenceCount: batchSize, sequenceLength: length, inferenceOnly: true)
            let outputs: [JSONValue]
            switch loaded {
            case let classifier as BertForSequenceClassification:
                outputs = try predictSequenceClassification(classifier, tokenizer: tokenizer, inputs: inputs, length: length)
            case let reader as BertForQuestionAnswering:
                outputs = try predictQuestionAnswering(reader, tokenizer: tokenizer, inputs: inputs, length: length)
            case let tagger as BertForTokenClassification:
                outputs = try predictTokenClassification(tagger, tokenizer: tokenizer, inputs: inputs, length: length)
            default:
                throw InputError("predict does not handle \(config.head.className) models yet")
            }
            let text = outputs.map { $0.compactText() }.joined(separator: "\n")
            print(text)
        } catch let error as ValidationError {
            throw error
        } catch {
            Console.standalone.fail("\(error)")
            throw ExitCode.failure
        }
    }

    /// Every input as its fields, read and checked whole before anything is printed.
    func readInputs() throws -> [PredictInput] {
        let name = input == "-" ? "standard input" : input
        let data: Data
        if input == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: input) else {
                throw InputError("cannot read --input \(input): no such file, or it is not readable")
            }
            data = contents
        }
        guard let text = String(data: data, encoding: .utf8) else { throw InputError("\(name) is not valid UTF-8") }
        var inputs: [PredictInput] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = line.hasSuffix("\r") ? line.dropLast() : line
            if line.isEmpty { continue }
            let origin = "\(name) line \(index + 1)"
            switch format {
            case .lines:
                inputs.append(PredictInput(fields: ["text": String(line)], origin: origin))
            case .jsonl:
                guard case let .object(members)? = try? JSONValue.parse(String(line)) else {
                    throw InputError("\(origin): not a JSON object; --format jsonl takes one object per line")
                }
                var fields: [String: String] = [:]
                for (key, value) in members {
                    if case let .string(string) = value { fields[key] = string }
                }
                inputs.append(PredictInput(fields: fields, origin: origin))
            }
        }
        guard !inputs.isEmpty else { throw InputError("\(name) holds no inputs") }
        return inputs
    }

    /// transformers' text-classification pipeline: softmax scores (sigmoid for multi-label and
    /// one-output models), the `--top-k` best labels.
    func predictSequenceClassification(
        _ model: BertForSequenceClassification, tokenizer: BertTokenizer, inputs: [PredictInput], length: Int
    ) throws -> [JSONValue] {
        let encoder = try TaskEncoder(tokenizer: tokenizer, maxLength: length)
        let sequences = try inputs.map { input -> EncodedSequence in
            guard let text = input.fields["text"] else { throw InputError("\(input.origin): no \"text\" field") }
            return encoder.encode(text, pair: input.fields["text_pair"])
        }
        let logits = runBatches(sequences, padID: tokenizer.vocabulary.padID) { model.step($0, targets: nil, options: .inference).logits }
        let K = model.config.headOutputCount
        let sigmoid = model.config.resolvedProblemType == .multiLabel || K == 1
        let names = model.config.labels.count == K ? model.config.labels : (0..<K).map { "LABEL_\($0)" }
        return logits.map { row in
            let scores: [Double]
            if sigmoid {
                scores = row.map { 1 / (1 + exp(-Double($0))) }
            } else {
                let maximum = Double(row.max()!)
                let exps = row.map { exp(Double($0) - maximum) }
                let total = exps.reduce(0, +)
                scores = exps.map { $0 / total }
            }
            let ranked = scores.indices.sorted { scores[$0] > scores[$1] }.prefix(topK == 0 ? K : topK)
            return .array(ranked.map { .object([("label", .string(names[$0])), ("score", .double(scores[$0]))]) })
        }
    }

    /// The head's per-input outputs: sequences run in batches of similar length (sorted, so little
    /// padding), `body` returning each batch's logits, rows of equal size per sequence.
    func runBatches(_ sequences: [EncodedSequence], padID: Int32, _ body: (EncoderInputs) -> [Float]) -> [[Float]] {
        let order = sequences.indices.sorted { sequences[$0].inputIDs.count < sequences[$1].inputIDs.count }
        var results = [[Float]](repeating: [], count: sequences.count)
        for start in stride(from: 0, to: order.count, by: batchSize) {
            let members = Array(order[start..<min(order.count, start + batchSize)])
            let padded = PaddedBatch(
                features: members.map { TaskFeature(line: 0, sequences: [sequences[$0]]) }, padID: padID)
            let logits = body(EncoderInputs(
                inputIDs: padded.inputIDs, tokenTypeIDs: padded.tokenTypeIDs, attentionMask: padded.attentionMask,
                sequenceCount: padded.sequenceCount, sequenceLength: padded.sequenceLength))
            let width = logits.count / members.count
            for (row, index) in members.enumerated() { results[index] = Array(logits[(row * width)..<((row + 1) * width)]) }
        }
        return results
    }
}

/// One input of `predict`: its fields by name and where it came from.
struct PredictInput {
    var fields: [String: String]
    var origin: String
}

/// Where a model's tokenizer is: the model (or adapter) directory when it holds one, else the base's.
func tokenizerDirectory(_ source: (config: BertConfig, base: String, adapter: String?)) -> String {
    guard let adapter = source.adapter else { return source.base }
    let files = ["vocab.txt", "tokenizer.json"].map { (adapter as NSString).appendingPathComponent($0) }
    return files.contains(where: FileManager.default.fileExists(atPath:)) ? adapter : source.base
}
