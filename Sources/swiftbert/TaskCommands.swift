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

    @Option(help: ArgumentHelp("A fine-tuned model directory (a checkpoint of a fine-tuning run).", valueName: "dir"))
    var model: String

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
        let modelConfig: BertConfig
        do {
            modelConfig = try PretrainedDirectory.config(in: model)
        } catch {
            Console.standalone.fail("\(error)")
            throw ExitCode.failure
        }
        let kind = try taskKind(of: modelConfig, model: model)
        func string(_ value: String?) -> JSONValue { value.map { .string($0) } ?? .null }
        let size = Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] ?? "1") ?? 1
        var task: [(key: String, value: JSONValue)] = [
            ("type", .string(kind.rawValue)), ("train_file", .string(data)), ("validation_file", .string(data)),
            ("text_field", string(fields.textField)), ("text_pair_field", string(fields.textPairField)),
            ("label_field", string(fields.labelField)),
        ]
        if kind == .sequenceClassification {
            task.append(("problem_type", .string(modelConfig.resolvedProblemType.rawValue)))
            if modelConfig.resolvedProblemType != .regression {
                task.append(("labels", .array(modelConfig.labels.map { .string($0) })))
            }
        } else if !modelConfig.labels.isEmpty {
            task.append(("labels", .array(modelConfig.labels.map { .string($0) })))
        }
        let root = JSONValue.object([
            ("task", .object(task)),
            ("init_from", .string(model)),
            ("batch", .object([
                ("global_batch_size", .integer(batchSize * size)),
                ("sequence_length", .integer(maxLength ?? min(512, modelConfig.maxPositionEmbeddings))),
            ])),
            ("schedule", .object([("total_steps", .integer(1))])),
        ])
        let config: TrainingConfig
        do {
            config = try TrainingConfig(text: root.compactText(), source: "evaluate")
        } catch {
            Console.standalone.fail("\(error)")
            throw ExitCode.failure
        }
        try runOnRanks(announce: false) { comm, console in
            // Standard output carries the result alone; progress goes to standard error.
            let record = try Trainer.evaluate(config: config, communicator: comm) {
                FileHandle.standardError.write(Data("\($0)\n".utf8))
            }
            guard comm.rank == 0 else { return }
            let members = record.fields.compactMap { name, value in value.map { (key: name, value: JSONValue.double($0)) } }
            print(JSONValue.object(members).compactText())
        }
    }
}
