// Hugging Face BERT model directories: load any of them into `BertForPreTraining`, write ones that
// `transformers.BertForPreTraining.from_pretrained` loads with no missing or unexpected keys.
//
// Names in the wild: `bert.`-prefixed (BertForPreTraining, BertForMaskedLM) or bare (BertModel:
// `embeddings.`, `encoder.`, `pooler.`); LayerNorm `gamma`/`beta` in checkpoints converted from
// TensorFlow; the MLM decoder stored tied (`cls.predictions.decoder.weight` = word embeddings,
// `cls.predictions.decoder.bias` = `cls.predictions.bias`) or left out; the `position_ids` buffer in
// older files; one `model.safetensors` or shards listed in `model.safetensors.index.json`.

import Foundation

/// What loading a pretrained directory did besides copying tensors.
public struct PretrainedLoadReport: Sendable, Equatable {
    /// Model parameters absent from the files (pooler, head), given BERT's initialisation.
    public var initializedTensors: [String]
    /// Tensors of another head (or a pooler this head lacks) in the files, left out as transformers
    /// does when it loads a checkpoint into a model with a different head.
    public var discardedTensors: [String]
    /// Tensors of the files that carry no parameter and were skipped (the `position_ids` buffer).
    public var ignoredTensors: [String]
    /// Whether the encoder's names carried the `bert.` prefix.
    public var hadPrefix: Bool

    public init(
        initializedTensors: [String] = [], discardedTensors: [String] = [], ignoredTensors: [String] = [],
        hadPrefix: Bool = true
    ) {
        self.initializedTensors = initializedTensors
        self.discardedTensors = discardedTensors
        self.ignoredTensors = ignoredTensors
        self.hadPrefix = hadPrefix
    }

    /// A line for the user when parameters were initialised rather than loaded, else nil.
    public var notice: String? {
        var notes: [String] = []
        if !initializedTensors.isEmpty {
            notes.append("note: \(initializedTensors.count) tensor(s) not in the checkpoint were newly initialised "
                + "(fine-tune or pre-train before relying on them): " + initializedTensors.joined(separator: ", "))
        }
        if !discardedTensors.isEmpty {
            notes.append("note: \(discardedTensors.count) tensor(s) of the checkpoint belong to another head and were "
                + "not loaded: " + discardedTensors.joined(separator: ", "))
        }
        return notes.isEmpty ? nil : notes.joined(separator: "; ")
    }
}

/// A model directory or weights file that does not fit the model; names the file and the tensors.
public enum PretrainedModelError: Error, LocalizedError, CustomStringConvertible, Equatable {
    case missingFile(directory: String, file: String, hint: String)
    case unreadableIndex(path: String, reason: String)
    case missingTensors(path: String, names: [String])
    case unexpectedTensors(path: String, names: [String], model: String)
    case shapeMismatch(path: String, tensor: String, found: [Int], expected: [Int])
    case duplicateTensor(path: String, tensor: String)
    case untiedDecoder(path: String, tensor: String, tiedTo: String)
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .missingFile(directory, file, hint):
            return "model directory \(directory) has no \(file); \(hint)"
        case let .unreadableIndex(path, reason):
            return "cannot read shard index \(path): \(reason)"
        case let .missingTensors(path, names):
            return "\(path) lacks \(names.count) tensor(s) the model needs: \(Self.list(names)); "
                + "is config.json the model's own config?"
        case let .unexpectedTensors(path, names, model):
            return "\(path) has \(names.count) tensor(s) that are not part of \(model): \(Self.list(names)); "
                + "only BERT encoders with or without the pretraining heads can be loaded"
        case let .shapeMismatch(path, tensor, found, expected) where tensor.hasPrefix("classifier."):
            return "\(path): tensor '\(tensor)' has shape \(found) but the classifier being built has shape "
                + "\(expected): the checkpoint's classifier is for another number of labels; start from a model "
                + "without this head, or use the labels of its config.json (id2label)"
        case let .shapeMismatch(path, tensor, found, expected):
            return "\(path): tensor '\(tensor)' has shape \(found) but config.json implies \(expected); "
                + "the config does not match the weights"
        case let .duplicateTensor(path, tensor):
            return "\(path): tensor '\(tensor)' is stored twice (with and without the 'bert.' prefix, or in two shards)"
        case let .untiedDecoder(path, tensor, tiedTo):
            return "\(path): tensor '\(tensor)' differs from '\(tiedTo)'; SwiftBERT ties the MLM decoder to it "
                + "and cannot load an untied decoder"
        case let .writeFailed(path, reason):
            return "cannot write \(path): \(reason)"
        }
    }

    public var errorDescription: String? { description }

    private static func list(_ names: [String]) -> String {
        let shown = names.prefix(12).map { "'\($0)'" }.joined(separator: ", ")
        return names.count > 12 ? shown + ", ... (\(names.count - 12) more)" : shown
    }
}

// MARK: - Directory layout

/// The model files of a Hugging Face BERT directory (the tokenizer's are Data's `PretrainedTokenizer`).
public enum PretrainedDirectory {
    /// Creates `directory` (and its parents) for writing a model or an adapter into.
    static func create(_ directory: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw PretrainedModelError.writeFailed(path: directory, reason: error.localizedDescription)
        }
    }

    public static let configFile = "config.json"
    public static let weightsFile = "model.safetensors"
    public static let shardIndexFile = "model.safetensors.index.json"

    /// The model config of `directory`.
    public static func config(in directory: String) throws -> BertConfig {
        let path = (directory as NSString).appendingPathComponent(configFile)
        guard FileManager.default.fileExists(atPath: path) else {
            throw PretrainedModelError.missingFile(
                directory: directory, file: configFile, hint: "pass a Hugging Face BERT model directory")
        }
        let config = try BertConfig.load(contentsOfFile: path)
        try config.checkFitsInMemory(bytesPerParameter: 4, path: path)
        return config
    }

    /// The files holding the weights: `model.safetensors`, the shards of its index, or else
    /// `pytorch_model.bin` (read in place, see PyTorchCheckpoint.swift).
    public static func weightFiles(in directory: String) throws -> [SafetensorsFile] {
        let single = (directory as NSString).appendingPathComponent(weightsFile)
        if FileManager.default.fileExists(atPath: single) {
            return [try SafetensorsFile(contentsOfFile: single)]
        }
        let index = (directory as NSString).appendingPathComponent(shardIndexFile)
        if FileManager.default.fileExists(atPath: index) {
            guard let data = FileManager.default.contents(atPath: index),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let map = json["weight_map"] as? [String: String]
            else {
                throw PretrainedModelError.unreadableIndex(path: index, reason: "expected a JSON object with a \"weight_map\" of file names")
            }
            return try Set(map.values).sorted().map { shard in
                guard !shard.contains("/") else {
                    throw PretrainedModelError.unreadableIndex(path: index, reason: "shard '\(shard)' is not a file name in the directory")
                }
                return try SafetensorsFile(contentsOfFile: (directory as NSString).appendingPathComponent(shard))
            }
        }
        // Older Hugging Face directories hold PyTorch's own format only.
        let pyTorch = (directory as NSString).appendingPathComponent("pytorch_model.bin")
        if FileManager.default.fileExists(atPath: pyTorch) {
            return [try SafetensorsFile(pyTorchCheckpoint: pyTorch)]
        }
        throw PretrainedModelError.missingFile(
            directory: directory, file: weightsFile, hint: "pass a Hugging Face BERT model directory")
    }
}

// MARK: - Loading

extension BertForPreTraining {
    /// Builds a model for `maxSequenceCount x sequenceLength` inputs from a Hugging Face BERT directory
    /// (config.json + model.safetensors). Parameters the files lack (pooler, heads) get BERT's
    /// initialisation from `initializationSeed` and are listed in the report. `inferenceOnly` as in `init`.
    public static func pretrained(
        directory: String, maxSequenceCount: Int, sequenceLength: Int, initializationSeed: UInt64 = 0,
        inferenceOnly: Bool = false
    ) throws -> (model: BertForPreTraining, report: PretrainedLoadReport) {
        let config = try PretrainedDirectory.config(in: directory)
        let files = try PretrainedDirectory.weightFiles(in: directory)
        let model = BertForPreTraining(
            config: config, maxSequenceCount: maxSequenceCount, sequenceLength: sequenceLength, inferenceOnly: inferenceOnly)
        let report = try model.loadWeights(from: files, initializationSeed: initializationSeed)
        return (model, report)
    }

}

extension BertModel {
    /// Loads parameters from safetensors files with Hugging Face names (see the top of this file for
    /// the accepted variants). Missing pooler/head tensors are initialised; missing encoder tensors,
    /// unexpected tensors and shape mismatches are errors naming them. On error the parameters are
    /// left partly overwritten: discard the model.
    public func loadWeights(from files: [SafetensorsFile], initializationSeed: UInt64 = 0) throws -> PretrainedLoadReport {
        let origin = files.count == 1 ? files[0].path : files.map(\.path).joined(separator: ", ")
        var sources: [String: (file: SafetensorsFile, stored: String)] = [:]
        var unexpected: [String] = []
        var discarded: [String] = []
        var ignored: [String] = []
        var decoderWeight: (file: SafetensorsFile, stored: String)?
        var decoderBias: (file: SafetensorsFile, stored: String)?
        var bare = 0

        for file in files {
            for stored in file.tensorNames {
                var name = stored
                if name.contains("LayerNorm.") || name.contains("LayerNorm_") {
                    // TensorFlow-converted checkpoints name LayerNorm parameters gamma and beta.
                    if name.hasSuffix(".gamma") { name = String(name.dropLast(6)) + ".weight" }
                    if name.hasSuffix(".beta") { name = String(name.dropLast(5)) + ".bias" }
                }
                if name.hasPrefix("embeddings.") || name.hasPrefix("encoder.") || name.hasPrefix("pooler.") {
                    name = "bert." + name
                    bare += 1
                }
                switch name {
                case "bert.embeddings.position_ids":
                    ignored.append(stored)
                    continue
                case "cls.predictions.decoder.weight":
                    decoderWeight = (file, stored)
                    continue
                case "cls.predictions.decoder.bias":
                    decoderBias = (file, stored)
                    continue
                default:
                    break
                }
                guard table.entry(named: name) != nil else {
                    // A pre-training model refuses other heads' tensors, so that a mistaken directory is
                    // noticed; a fine-tuning head starts from any checkpoint, as in transformers.
                    if BertModel.isHeadTensor(name) && config.head != .preTraining {
                        discarded.append(stored)
                    } else {
                        unexpected.append(stored)
                    }
                    continue
                }
                if sources[name] != nil { throw PretrainedModelError.duplicateTensor(path: file.path, tensor: stored) }
                sources[name] = (file, stored)
            }
        }
        if !unexpected.isEmpty {
            throw PretrainedModelError.unexpectedTensors(path: origin, names: unexpected.sorted(), model: config.head.className)
        }
        if config.head != .preTraining {
            discarded += [decoderWeight, decoderBias].compactMap { $0?.stored }
            (decoderWeight, decoderBias) = (nil, nil)
        }

        if sources["cls.predictions.bias"] == nil, let decoderBias {
            sources["cls.predictions.bias"] = decoderBias
        }
        // Only the pooler and the heads may be absent (an encoder saved alone, or for masked LM only);
        // LoRA's factors are never in a base model's files.
        let absent = table.entries.map(\.name).filter { sources[$0] == nil }
        let missing = absent.filter { !BertModel.isHeadTensor($0) && !BertModel.isAdapterTensor($0) }
        if !missing.isEmpty {
            throw PretrainedModelError.missingTensors(path: origin, names: missing)
        }
        // Absent parameters start from BERT's init, drawn for them alone: drawing normals for the
        // whole model (100M+ for bert-base) would only slow loading down.
        if !absent.isEmpty {
            initializeParameters(seed: initializationSeed, only: Set(absent))
        }
        for entry in table.entries {
            if let source = sources[entry.name] { try copy(source, into: entry) }
        }
        if sources[PromptTuningSettings.entryName] == nil { initializePromptFromVocabulary(seed: initializationSeed) }
        if let decoderWeight {
            try checkTied(decoderWeight, to: "bert.embeddings.word_embeddings.weight", storedAs: sources)
        }
        if let decoderBias, sources["cls.predictions.bias"]?.stored != decoderBias.stored {
            try checkTied(decoderBias, to: "cls.predictions.bias", storedAs: sources)
        }
        return PretrainedLoadReport(
            initializedTensors: absent.filter { !BertModel.isAdapterTensor($0) }, discardedTensors: discarded.sorted(), ignoredTensors: ignored, hadPrefix: bare == 0)
    }

    /// Whether a (normalised) tensor name belongs to a head or the pooler rather than the encoder: a
    /// checkpoint may lack those, or carry another head's.
    static func isHeadTensor(_ name: String) -> Bool {
        !name.hasPrefix("bert.") || name.hasPrefix("bert.pooler.")
    }

    /// Whether a table name is one of LoRA's factors (initialised as peft does when a base model is loaded).
    static func isAdapterTensor(_ name: String) -> Bool {
        name.hasSuffix(".lora_A.weight") || name.hasSuffix(".lora_B.weight") || name == PromptTuningSettings.entryName
    }

    private func copy(_ source: (file: SafetensorsFile, stored: String), into entry: ParameterTable.Entry) throws {
        guard let info = source.file.tensorInfo(source.stored) else {
            throw SafetensorsError.missingTensor(path: source.file.path, tensor: source.stored)
        }
        guard info.shape == entry.shape else {
            throw PretrainedModelError.shapeMismatch(path: source.file.path, tensor: source.stored, found: info.shape, expected: entry.shape)
        }
        try source.file.copyFloats(source.stored, into: UnsafeMutableBufferPointer(rebasing: parameters[entry.range]))
    }

    /// A tied copy must hold exactly the values of the parameter it is tied to.
    private func checkTied(
        _ copy: (file: SafetensorsFile, stored: String), to name: String,
        storedAs sources: [String: (file: SafetensorsFile, stored: String)]
    ) throws {
        let entry = table.entry(named: name)!
        guard let info = copy.file.tensorInfo(copy.stored), info.shape == entry.shape else {
            throw PretrainedModelError.shapeMismatch(
                path: copy.file.path, tensor: copy.stored, found: copy.file.tensorInfo(copy.stored)?.shape ?? [], expected: entry.shape)
        }
        let values = try copy.file.floats(copy.stored)
        let loaded = parameters[entry.range]
        if !zip(values, loaded).allSatisfy({ $0 == $1 }) {
            throw PretrainedModelError.untiedDecoder(path: copy.file.path, tensor: copy.stored, tiedTo: sources[name]?.stored ?? name)
        }
    }
}

// MARK: - Saving

extension BertModel {
    /// Writes every parameter under its Hugging Face name to a safetensors file, in the layout
    /// transformers' `save_pretrained` uses (the tied decoder is left out, as it does).
    public func writeWeights(to path: String, metadata: [String: String] = ["format": "pt"]) throws {
        let base = UnsafeBufferPointer(parameters)
        let tensors = table.entries.map { entry in
            (name: entry.name, shape: entry.shape, data: UnsafeBufferPointer(rebasing: base[entry.range]))
        }
        try SafetensorsWriter.write(tensors, metadata: metadata, to: path)
    }

    /// Writes the model files of a Hugging Face directory: config.json and model.safetensors (the
    /// tokenizer files are written by Data's `PretrainedTokenizer.write`). Which transformers classes
    /// load the result depends on the NSP head: see `BertConfig.architectures`.
    public func savePretrained(to directory: String) throws {
        // A config built in code is checked before anything is written (config.json cannot hold every value).
        try config.validate()
        try PretrainedDirectory.create(directory)
        func path(_ file: String) -> String { (directory as NSString).appendingPathComponent(file) }
        try writeWeights(to: path(PretrainedDirectory.weightsFile))
        do {
            try config.write(to: path(PretrainedDirectory.configFile))
        } catch {
            throw PretrainedModelError.writeFailed(path: path(PretrainedDirectory.configFile), reason: error.localizedDescription)
        }
    }
}

extension BertModel {
    /// The model of a Hugging Face directory with the head its config.json names (`architectures`),
    /// built for `maxSequenceCount x sequenceLength` inputs; see `BertForPreTraining.pretrained`.
    public static func load(
        directory: String, maxSequenceCount: Int, sequenceLength: Int, inferenceOnly: Bool = false
    ) throws -> (model: BertModel, report: PretrainedLoadReport) {
        let config = try PretrainedDirectory.config(in: directory)
        let files = try PretrainedDirectory.weightFiles(in: directory)
        let model = BertModel.make(
            config: config, maxSequenceCount: maxSequenceCount, sequenceLength: sequenceLength, inferenceOnly: inferenceOnly)
        let report = try model.loadWeights(from: files)
        return (model, report)
    }

    /// A model of the subclass `config.head` names.
    public static func make(config: BertConfig, maxSequenceCount: Int, sequenceLength: Int, inferenceOnly: Bool = false) -> BertModel {
        let kind: BertModel.Type
        switch config.head {
        case .preTraining: kind = BertForPreTraining.self
        case .sequenceClassification: kind = BertForSequenceClassification.self
        case .tokenClassification: kind = BertForTokenClassification.self
        case .questionAnswering: kind = BertForQuestionAnswering.self
        case .multipleChoice: kind = BertForMultipleChoice.self
        }
        return kind.init(config: config, maxSequenceCount: maxSequenceCount, sequenceLength: sequenceLength, inferenceOnly: inferenceOnly)
    }
}
