import ArgumentParser
import Data
import Foundation
import Training
import Transformer

/// What `swiftbert inspect` prints for a checkpoint, and `swiftbert export`.
enum CheckpointInspection {
    static func isCheckpoint(_ path: String) -> Bool {
        FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(CheckpointStore.manifestName))
            || FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(PretrainedDirectory.configFile))
                && FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(Trainer.optimizerFileName))
    }

    /// Prints the checkpoint's state and files and verifies every checksum; throws naming the first
    /// file that does not match.
    static func inspect(_ path: String) throws {
        let manifestPath = (path as NSString).appendingPathComponent(CheckpointStore.manifestName)
        guard FileManager.default.fileExists(atPath: manifestPath) else {
            throw CheckpointError(path: manifestPath, message: "missing: the checkpoint was not completely written "
                + "and cannot be verified; resume from an older one")
        }
        print("# checkpoint \(path)")
        let manifest: CheckpointManifest
        do {
            manifest = try CheckpointStore.verify(path)
        } catch {
            print("  checksums      FAILED")
            throw error
        }
        let state = try manifest.decodeState(TrainerState.self)
        print("  step           \(state.step)")
        print("  samples        \(state.consumedSamples) (epoch \(state.epoch))")
        print("  loss at save   " + (state.loss.map { String(format: "%.4f", $0) } ?? "n/a"))
        print("  learning rate  \(String(format: "%.3e", state.learningRate))")
        print("  world size     \(state.worldSize) rank\(state.worldSize == 1 ? "" : "s"), global batch \(state.globalBatchSize)")
        print("  skipped steps  \(state.skippedSteps)")
        print("  config         \(state.configFingerprint.prefix(16))...")
        print("  data           \(state.dataFingerprint.prefix(16))...")
        if PeftAdapter.isAdapter(path) { printAdapter(path, baseSHA256: state.baseModelSHA256) }
        print("  files")
        for file in manifest.files {
            print("    \(file.name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(byteCount(file.size).padding(toLength: 10, withPad: " ", startingAt: 0)) sha256 \(file.sha256.prefix(16))... OK")
        }
        print("  checksums      OK (\(manifest.files.count) files)")
    }

    /// The adapter of a parameter-efficient checkpoint: its settings, its base and what trains.
    static func printAdapter(_ path: String, baseSHA256: String?) {
        do {
            let weights = try SafetensorsFile(contentsOfFile: (path as NSString).appendingPathComponent(PeftAdapter.weightsFile))
            let trainable = weights.tensorNames.reduce(0) { $0 + (weights.tensorInfo($1)?.shape.reduce(1, *) ?? 0) }
            switch try PeftAdapter.adapterSettings(in: path) {
            case let .lora(lora):
                print("  adapter        LoRA r \(lora.rank), lora_alpha \(String(format: "%g", lora.alpha)), on \(lora.targetModules.joined(separator: ", "))"
                    + (lora.layersToTransform.map { " of layers \($0.map(String.init).joined(separator: ", "))" } ?? ""))
            case let .prompt(prompt):
                print("  adapter        prompt tuning, \(prompt.virtualTokenCount) virtual tokens (\(prompt.initialization.rawValue) init)")
            case let .prefix(prefix):
                print("  adapter        prefix tuning, \(prefix.virtualTokenCount) virtual tokens (keys and values in every layer)")
            }
            do {
                let base: String, total: Int
                if PeftAdapter.isCausalLM(path) {
                    base = try PeftAdapter.baseDirectory(of: path, base: nil)
                    let factors = weights.tensorNames.filter { $0.contains(".lora_") }
                    total = try GPT2Model.config(in: base).parameterCount + factors.reduce(0) { $0 + (weights.tensorInfo($1)?.shape.reduce(1, *) ?? 0) }
                } else {
                    let source = try PeftAdapter.resolve(model: path, base: nil)
                    (base, total) = (source.base, ParameterTable(config: source.config).totalCount)
                }
                print("  base           \(base)" + (baseSHA256.map { " (weights sha256 \($0.prefix(16))...)" } ?? ""))
                print("  trainable      \(trainable.formatted()) of \(total.formatted()) parameters "
                    + String(format: "(%.2f%%)", 100 * Double(trainable) / Double(total)))
            } catch {
                print("  base           not usable here: \(error)")
                print("  trainable      \(trainable.formatted()) parameters")
            }
        } catch {
            print("  adapter        unreadable: \(error)")
        }
    }

    static func byteCount(_ bytes: Int) -> String {
        if bytes >= 1 << 30 { return String(format: "%.2f GiB", Double(bytes) / Double(1 << 30)) }
        if bytes >= 1 << 20 { return String(format: "%.1f MiB", Double(bytes) / Double(1 << 20)) }
        if bytes >= 1 << 10 { return String(format: "%.1f KiB", Double(bytes) / Double(1 << 10)) }
        return "\(bytes) B"
    }
}

/// `swiftbert export CHECKPOINT --out DIR`: the Hugging Face model of a checkpoint, for sharing.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the Hugging Face model of a verified checkpoint (no optimizer or trainer state).",
        discussion: """
            The result holds config.json, model.safetensors, vocab.txt, tokenizer.json and \
            tokenizer_config.json: AutoTokenizer.from_pretrained(DIR) loads the tokenizer, and the model \
            class named in config.json's "architectures" loads the weights (see the README).
            """)

    @Argument(help: "A checkpoint directory (runs/NAME/checkpoints/step-NNNNNNNN).")
    var checkpoint: String

    @Option(help: "Directory to create (must not exist).")
    var out: String

    func run() throws {
        try CheckpointStore.verify(checkpoint)
        guard !FileManager.default.fileExists(atPath: out) else {
            throw ValidationError("\(out) already exists; choose a new directory")
        }
        let parent = ((out as NSString).deletingLastPathComponent as NSString)
        let temporary = (parent.length == 0 ? "." : parent as String) + "/.tmp-export-\(getpid())"
        do {
            try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: true)
            for file in [PretrainedDirectory.configFile, PretrainedDirectory.weightsFile, PretrainedTokenizer.vocabularyFile,
                         PretrainedTokenizer.tokenizerFile, PretrainedTokenizer.configFile] {
                let source = (checkpoint as NSString).appendingPathComponent(file)
                guard FileManager.default.fileExists(atPath: source) else { continue }
                try FileManager.default.copyItem(atPath: source, toPath: (temporary as NSString).appendingPathComponent(file))
            }
            try FileManager.default.moveItem(atPath: temporary, toPath: out)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw CheckpointError(path: out, message: "export failed: \(error.localizedDescription)")
        }
        print("exported \(checkpoint) -> \(out) (Hugging Face model directory)")
    }
}

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fold a LoRA adapter into its base model and write a plain Hugging Face model directory.",
        discussion: """
            Each adapted weight becomes W + scaling * B A (a GPT-2 Conv1D weight, stored [in, out], W + scaling \
            * (B A)^T), as peft's merge_and_unload computes it; the \
            result (config.json, model.safetensors and the tokenizer files) loads in transformers without \
            peft, and in every SwiftBERT command. The adapter is a SwiftBERT checkpoint of a LoRA run or a \
            directory peft wrote.

            Example: swiftbert merge --adapter runs/lora/checkpoints/step-00000500 --out models/merged
            """)

    @Option(help: ArgumentHelp("A peft adapter directory (adapter_config.json, adapter_model.safetensors).", valueName: "dir"))
    var adapter: String

    @Option(help: ArgumentHelp("Its base model (default: adapter_config.json's base_model_name_or_path).", valueName: "dir"))
    var base: String?

    @Option(help: ArgumentHelp("Directory to create (must not exist).", valueName: "dir"))
    var out: String

    func run() throws {
        guard !FileManager.default.fileExists(atPath: out) else {
            throw ValidationError("\(out) already exists; choose a new directory")
        }
        let parent = ((out as NSString).deletingLastPathComponent as NSString)
        let temporary = (parent.length == 0 ? "." : parent as String) + "/.tmp-merge-\(getpid())"
        do {
            guard PeftAdapter.isAdapter(adapter) else {
                throw PeftAdapterError("\(adapter) holds no \(PeftAdapter.configFile); --adapter takes a peft adapter directory")
            }
            let merged: TrainableModel, baseDirectory: String, tokenizer: String, tokenizerFiles: [String]
            if PeftAdapter.isCausalLM(adapter) {
                (merged, baseDirectory) = try GPT2Model.load(model: adapter, base: base)
                tokenizer = (try? ByteLevelBPE.files(inDirectory: adapter)) != nil ? adapter : baseDirectory
                tokenizerFiles = [ByteLevelBPE.tokenizerFile, ByteLevelBPE.vocabularyFile, ByteLevelBPE.mergesFile, ByteLevelBPE.configFile]
            } else {
                let source = try PeftAdapter.resolve(model: adapter, base: base)
                merged = try BertModel.load(source, maxSequenceCount: 1, sequenceLength: 1, inferenceOnly: true).merged()
                (baseDirectory, tokenizer) = (source.base, tokenizerDirectory(source))
                tokenizerFiles = [PretrainedTokenizer.vocabularyFile, PretrainedTokenizer.tokenizerFile, PretrainedTokenizer.configFile]
            }
            try merged.savePretrained(to: temporary)
            for file in tokenizerFiles {
                let path = (tokenizer as NSString).appendingPathComponent(file)
                guard FileManager.default.fileExists(atPath: path) else { continue }
                try FileManager.default.copyItem(atPath: path, toPath: (temporary as NSString).appendingPathComponent(file))
            }
            try FileManager.default.moveItem(atPath: temporary, toPath: out)
            print("merged \(adapter) into \(baseDirectory) -> \(out) (Hugging Face model directory)")
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            Console.standalone.fail("\(error)")
            throw ExitCode.failure
        }
    }
}
