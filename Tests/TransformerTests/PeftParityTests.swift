import Foundation
import Kernels
import Transformer
import XCTest

/// LoRA against Hugging Face peft 0.21 + transformers 5.24 on CPU: base weights, the adapter as peft
/// saves it, inputs, logits, loss and the gradient of every trainable tensor, written by
/// scripts/make_peft_fixtures.py (see its docstring) with every dropout 0.
final class PeftParityTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/peft")
    let tolerance: Float = 1e-5

    /// r 4, alpha 8 on query and value of both layers; the classifier trains (peft's SEQ_CLS default).
    func testLoraOnQueryAndValue() throws { try checkParity("lora_qv") }

    /// r 2, rank-stabilised scaling, all six projections of layer 1 only, every bias trainable.
    func testLoraOnEveryProjectionWithBiases() throws { try checkParity("lora_all") }

    /// Prompt tuning, 3 virtual tokens in front of [CLS] (positions 0-2, token type 0, mask 1; the
    /// pooler reads the first virtual token): the prompt table and the classifier train.
    func testPromptTuning() throws { try checkParity("prompt") }

    /// Prefix tuning, 3 learned keys and values in front of every layer's attention (the text at
    /// positions 3 ..< 3 + T, the prefix never masked): the prefix table and the classifier train.
    func testPrefixTuning() throws { try checkParity("prefix") }

    /// Prefix tuning through peft's projection (Linear 32-24, Tanh, Linear 24-128): the learned rows,
    /// the projection and the classifier train; the adapter holds the projection's output.
    func testPrefixTuningThroughTheProjection() throws {
        try checkParity("prefix_proj", encoder: PromptEncoderSettings(kind: .projection, hiddenSize: 24))
    }

    /// P-tuning with peft's MLP prompt encoder (Linear 32-24, ReLU, Linear 24-24, ReLU, Linear 24-32).
    func testPTuningWithTheMLPEncoder() throws {
        try checkParity("ptuning_mlp", encoder: PromptEncoderSettings(kind: .mlp, hiddenSize: 24))
    }

    /// P-tuning with peft's LSTM prompt encoder (a bidirectional 2-layer LSTM of 24 units, then Linear
    /// 48-48, ReLU, Linear 48-32): every LSTM weight and bias, the rows, the head and the classifier.
    func testPTuningWithTheLSTMEncoder() throws {
        try checkParity("ptuning_lstm", encoder: PromptEncoderSettings(kind: .lstm, hiddenSize: 24, layerCount: 2))
    }

    /// peft's P-tuning adapters hold the encoder's output, which inference reads as virtual tokens:
    /// the MLP's and the LSTM's give peft's logits without the encoder.
    func testLoadsPTuningAdaptersForInference() throws {
        for name in ["ptuning_mlp", "ptuning_lstm"] {
            let c = try loadCase(name)
            XCTAssertNil(c.config.promptEncoder)
            let model = try loadModel(c)
            let output = model.step(c.inputs, targets: .classes(c.labels), normalizer: c.normalizer, options: PassOptions(training: false, computeGradients: false))
            check(output.logits, against: try c.file.floats("expect.logits"), "\(name) logits")
        }
    }

    /// A prefix peft trained through its projection MLP: the adapter holds the projection's output,
    /// which SwiftBERT reads as the prefix (as peft's inference does), giving peft's logits and loss.
    func testLoadsPrefixTrainedThroughTheProjection() throws {
        let c = try loadCase("prefix_proj")
        let model = try loadModel(c)
        let output = model.step(c.inputs, targets: .classes(c.labels), normalizer: c.normalizer, options: PassOptions(training: false, computeGradients: false))
        check(output.logits, against: try c.file.floats("expect.logits"), "prefix_proj logits")
        let expectedSum = try c.file.floats("expect.loss_sum")[0]
        XCTAssertEqual(Float(output.lossSum), expectedSum, accuracy: tolerance * abs(expectedSum))
    }

    /// The adapter directory peft wrote loads onto the base directory transformers wrote, and gives
    /// the fixture's logits.
    func testLoadsAdapterDirectoryWrittenByPeft() throws {
        let c = try loadCase("lora_qv")
        let adapter = Self.fixtures.appendingPathComponent("lora-adapter").path
        var config = try PretrainedDirectory.config(in: Self.fixtures.appendingPathComponent("lora-base").path)
        config.lora = try PeftAdapter.loraSettings(in: adapter)
        XCTAssertEqual(config.lora, c.config.lora)
        let model = BertForSequenceClassification(config: config, maxSequenceCount: c.inputs.sequenceCount, sequenceLength: c.inputs.sequenceLength)
        _ = try model.loadWeights(from: PretrainedDirectory.weightFiles(in: Self.fixtures.appendingPathComponent("lora-base").path))
        try model.loadAdapter(from: SafetensorsFile(contentsOfFile: adapter + "/" + PeftAdapter.weightsFile))
        let output = model.step(c.inputs, targets: .classes(c.labels), normalizer: c.normalizer, options: PassOptions(training: false, computeGradients: false))
        check(output.logits, against: try c.file.floats("expect.logits"), "lora-adapter logits")
    }

    /// An adapter written by SwiftBERT holds exactly the trainable tensors under peft's keys and loads
    /// back to the same parameters (peft loading it is checked by the fixture script's --check-adapter).
    func testWrittenAdapterRoundTrips() throws {
        for name in ["lora_qv", "lora_all", "prefix"] {
            let c = try loadCase(name)
            let model = try loadModel(c)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peft-\(name)-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try model.saveAdapter(to: directory, baseModel: "base")
            let written = try SafetensorsFile(contentsOfFile: directory + "/" + PeftAdapter.weightsFile)
            let peftKeys = Set(c.file.tensorNames.filter { $0.hasPrefix("grad.") }.map { String($0.dropFirst(5)) })
            XCTAssertEqual(Set(written.tensorNames), peftKeys, "\(name): the adapter's tensors are the trainable ones under peft's keys")
            var reread = c.config
            reread.lora = nil
            reread.prefix = nil
            try PeftAdapter.adapterSettings(in: directory).apply(to: &reread)
            XCTAssertEqual(reread, c.config, "\(name): adapter_config.json gives the same settings")
            let copy = BertForSequenceClassification(config: model.config, maxSequenceCount: 1, sequenceLength: 4)
            _ = copy.parameters.update(from: model.parameters)
            for entry in copy.table.entries where entry.trainable {
                copy.parameters[entry.range].update(repeating: .nan)
            }
            try copy.loadAdapter(from: written)
            XCTAssertTrue(zip(copy.parameters, model.parameters).allSatisfy { $0 == $1 }, name)
        }
    }

    func testRefusesAdapterOfAnotherShape() throws {
        let c = try loadCase("lora_qv")
        var config = c.config
        config.lora?.rank = 8
        let model = BertForSequenceClassification(config: config, maxSequenceCount: 1, sequenceLength: 4)
        let file = try SafetensorsFile(contentsOfFile: Self.fixtures.appendingPathComponent("lora-adapter/adapter_model.safetensors").path)
        XCTAssertThrowsError(try model.loadAdapter(from: file)) { error in
            XCTAssertTrue("\(error)".contains("lora_A.weight has shape [4, 32]"), "\(error)")
        }
        config.lora = LoraSettings(rank: 4, alpha: 8, targetModules: ["query"])
        let fewer = BertForSequenceClassification(config: config, maxSequenceCount: 1, sequenceLength: 4)
        XCTAssertThrowsError(try fewer.loadAdapter(from: file)) { error in
            XCTAssertTrue("\(error)".contains("fit no trainable parameter"), "\(error)")
        }
    }

    // MARK: - Cases

    struct Case {
        let file: SafetensorsFile
        var config: BertConfig
        let inputs: EncoderInputs
        let labels: [Int32]
        let normalizer: Float
    }

    /// The case's model; with `encoder`, the prompt or prefix is trained through it (the adapter's
    /// settings alone give the inference model, which reads the saved table).
    func loadCase(_ name: String, encoder: PromptEncoderSettings? = nil) throws -> Case {
        let file = try SafetensorsFile(contentsOfFile: Self.fixtures.appendingPathComponent(name + ".safetensors").path)
        var config = try JSONDecoder().decode(BertConfig.self, from: Data(XCTUnwrap(file.metadata["config"]).utf8))
        let adapterDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("peft-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: adapterDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: adapterDirectory) }
        try Data(XCTUnwrap(file.metadata["adapter_config"]).utf8).write(to: adapterDirectory.appendingPathComponent(PeftAdapter.configFile))
        try PeftAdapter.adapterSettings(in: adapterDirectory.path).apply(to: &config)
        if let encoder {
            config.prompt?.encoder = encoder
            config.prefix?.encoder = encoder
        }
        let shape = try XCTUnwrap(file.tensorInfo("input.input_ids")?.shape)
        func ints(_ key: String) throws -> [Int32] { try file.int64s(key).map { Int32($0) } }
        let inputs = EncoderInputs(
            inputIDs: try ints("input.input_ids"), tokenTypeIDs: try ints("input.token_type_ids"),
            attentionMask: try ints("input.attention_mask"), sequenceCount: shape[0], sequenceLength: shape[1],
            sampleIndices: Array(0..<shape[0]))
        return Case(file: file, config: config, inputs: inputs, labels: try ints("input.labels"), normalizer: Float(shape[0]))
    }

    /// The base parameters by their transformers names, the adapter's tensors by peft's keys.
    func loadModel(_ c: Case) throws -> BertForSequenceClassification {
        let model = BertForSequenceClassification(config: c.config, maxSequenceCount: c.inputs.sequenceCount, sequenceLength: c.inputs.sequenceLength)
        for entry in model.table.entries where c.file.tensorInfo("param." + entry.name) != nil {
            try c.file.copyFloats("param." + entry.name, into: UnsafeMutableBufferPointer(rebasing: model.parameters[entry.range]))
        }
        let adapter = FileManager.default.temporaryDirectory.appendingPathComponent("peft-adapter-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: adapter) }
        // The fixture's adapter.* tensors as peft's adapter_model.safetensors holds them.
        let names = c.file.tensorNames.filter { $0.hasPrefix("adapter.") }.sorted()
        let values = try names.flatMap { try c.file.floats($0) }
        try values.withUnsafeBufferPointer { all in
            var offset = 0
            let tensors = names.map { name in
                let shape = c.file.tensorInfo(name)!.shape, count = shape.reduce(1, *)
                defer { offset += count }
                return (name: String(name.dropFirst(8)), shape: shape, data: UnsafeBufferPointer(rebasing: all[offset..<(offset + count)]))
            }
            try SafetensorsWriter.write(tensors, metadata: [:], to: adapter)
        }
        try model.loadAdapter(from: SafetensorsFile(contentsOfFile: adapter))
        for entry in model.table.entries where entry.name.hasPrefix(PromptEncoderSettings.namePrefix) {
            let key = Self.fixtureKey(entry.name)
            try c.file.copyFloats(key, into: UnsafeMutableBufferPointer(rebasing: model.parameters[entry.range]))
        }
        return model
    }

    /// The fixture's name of a trainable tensor's key: `encoder.` + its name inside peft's prompt encoder.
    static func fixtureKey(_ key: String) -> String {
        key.hasPrefix(PromptEncoderSettings.namePrefix) ? "encoder." + key.dropFirst(PromptEncoderSettings.namePrefix.count) : key
    }

    func checkParity(_ name: String, encoder: PromptEncoderSettings? = nil) throws {
        let c = try loadCase(name, encoder: encoder)
        let model = try loadModel(c)
        let peftKeys = Set(c.file.tensorNames.filter { $0.hasPrefix("grad.") }.map { String($0.dropFirst(5)) })
        let trainable = model.table.entries.filter(\.trainable)
        XCTAssertEqual(model.table.trainableCount, trainable.map(\.count).reduce(0, +))
        // Exactly what peft trains (the tiny base is smaller than some encoders, so no share is assumed).
        let peftTrainable = peftKeys.map { c.file.tensorInfo("grad." + $0)!.shape.reduce(1, *) }.reduce(0, +)
        XCTAssertEqual(model.table.trainableCount, peftTrainable, "\(name): the trainable parameters are peft's")
        if encoder == nil, let prompts = try? c.file.floats("expect.prompts") {
            let entry = try XCTUnwrap(model.table.entry(named: "prompt_embeddings"))
            XCTAssertEqual(Array(model.parameters[entry.range]), prompts, "\(name): the prompt table is what peft feeds")
        }
        let saved = Parallel.workerCount
        defer { Parallel.workerCount = saved }
        for workers in [1, 2] {
            Parallel.workerCount = workers
            for lossRowsOnly in [true, false] {
                model.computesLastLayerAtLossRowsOnly = lossRowsOnly
                let label = "\(name) (\(workers) worker(s), last layer at \(lossRowsOnly ? "[CLS]" : "every row"))"
                model.zeroGradients()
                let output = model.step(c.inputs, targets: .classes(c.labels), normalizer: c.normalizer, options: PassOptions(training: true, computeGradients: true))
                let expectedSum = try c.file.floats("expect.loss_sum")[0]
                XCTAssertEqual(Float(output.lossSum), expectedSum, accuracy: tolerance * abs(expectedSum), "\(label) loss sum")
                check(output.logits, against: try c.file.floats("expect.logits"), "\(label) logits")
                var compared = Set<String>()
                for entry in trainable {
                    let key = Self.fixtureKey(model.adapterKey(entry))
                    compared.insert(key)
                    let range = try XCTUnwrap(model.table.gradientRange(of: entry))
                    let ours = Array(model.gradients[range]), reference = try c.file.floats("grad." + key)
                    guard key.hasSuffix("attention.self.key.bias") || key.hasSuffix("attention.self.key.base_layer.bias") else {
                        check(ours, against: reference, "\(label) grad \(key)")
                        continue
                    }
                    // A key bias shifts all scores of an attention row alike: its exact gradient is 0, and
                    // both sides hold rounding noise far below the value bias's gradient (HeadParityTests).
                    let sibling = try c.file.floats("grad." + key.replacingOccurrences(of: "key.", with: "value."))
                    let scale = sibling.map { abs($0) }.max() ?? 0
                    XCTAssertGreaterThan(scale, 0, "\(label) \(key) sibling")
                    XCTAssertLessThanOrEqual(reference.map { abs($0) }.max() ?? 0, tolerance * scale, "\(label) reference \(key)")
                    XCTAssertLessThanOrEqual(ours.map { abs($0) }.max() ?? 0, tolerance * scale, "\(label) \(key)")
                }
                XCTAssertEqual(compared, peftKeys, "\(label): trainable tensors differ from peft's")
            }
        }
        if encoder != nil {
            // The adapter holds the encoder's output, as peft's does; its tensors go to their own file.
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peft-\(name)-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try model.saveAdapter(to: directory, baseModel: "base")
            let written = try SafetensorsFile(contentsOfFile: directory + "/" + PeftAdapter.weightsFile)
            XCTAssertEqual(Set(written.tensorNames), Set(c.file.tensorNames.filter { $0.hasPrefix("adapter.") }.map { String($0.dropFirst(8)) }))
            check(try written.floats("prompt_embeddings"), against: try c.file.floats("adapter.prompt_embeddings"), "\(name): the encoder's output")
            let encoderFile = try SafetensorsFile(contentsOfFile: directory + "/" + PromptEncoderSettings.weightsFile)
            XCTAssertEqual(Set(encoderFile.tensorNames.map(Self.fixtureKey)), Set(peftKeys.filter { $0.hasPrefix("encoder.") }))
        }
    }

    func check(_ actual: [Float], against expected: [Float], _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        assertParity(actual, against: expected, tolerance: tolerance, label, file: file, line: line)
    }
}
