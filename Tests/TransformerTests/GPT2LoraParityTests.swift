import Foundation
import Kernels
import Transformer
import XCTest

/// LoRA on GPT-2 against peft 0.21 + transformers 5.24 on CPU (scripts/make_gpt2_lora_fixtures.py): a random
/// 2-layer GPT2LMHeadModel wrapped by peft with random factors, a right-padded batch; logits at the real
/// tokens, the loss and the gradient of every trainable tensor within 1e-5 relative.
final class GPT2LoraParityTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/gpt2-lora")
    static var base: String { fixtures.appendingPathComponent("base").path }
    let tolerance: Float = 1e-5

    /// r 4, alpha 8 on c_attn and c_proj: c_proj matches attn.c_proj and mlp.c_proj, as in peft.
    func testLoraOnAttentionAndProjectionsMatchesPeft() throws {
        let model = try checkParity("attn")
        XCTAssertEqual(model.table.entries.filter(\.trainable).count, 12)
        XCTAssertEqual(model.table.entries.filter { $0.name.contains(".mlp.c_proj.lora_") }.count, 4)
    }

    /// r 2, rank-stabilised, attn.c_proj and c_fc of block 1 only, every bias trainable.
    func testLoraOnOneLayerWithBiasesMatchesPeft() throws {
        let model = try checkParity("layer1")
        XCTAssertFalse(model.table.entries.contains { $0.name.hasPrefix("transformer.h.0.") && $0.name.contains(".lora_") })
        XCTAssertNotNil(model.table.entry(named: "transformer.ln_f.bias").flatMap { model.table.gradientRange(of: $0) })
    }

    /// The adapter directory peft wrote, merged into the base (as `swiftbert generate` loads it), gives
    /// peft's logits; the base's own weights are those of the base directory.
    func testMergedPeftAdapterGivesPeftLogits() throws {
        let file = try fixture("attn")
        let (merged, base) = try GPT2Model.load(model: Self.fixtures.appendingPathComponent("adapter").path, base: Self.base)
        XCTAssertEqual(base, Self.base)
        XCTAssertNil(merged.config.lora)
        let (ids, mask, labels, B, T) = try inputs(file)
        let (_, logits) = merged.forward(ids: ids, mask: mask, labels: labels, sequences: B, length: T, allLogits: true)
        checkLogits(logits!, file, mask: mask, V: merged.config.vocabSize, "merged adapter")
    }

    /// An adapter SwiftBERT writes holds peft's keys and settings and loads back to the same tensors.
    func testWrittenAdapterHasPeftKeysAndLoadsBack() throws {
        let file = try fixture("attn")
        let model = try makeModel(file)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gpt2-lora-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try model.saveAdapter(to: directory, baseModel: Self.base)
        let peft = try SafetensorsFile(contentsOfFile: Self.fixtures.appendingPathComponent("adapter/adapter_model.safetensors").path)
        let ours = try SafetensorsFile(contentsOfFile: directory + "/" + PeftAdapter.weightsFile)
        XCTAssertEqual(ours.tensorNames.sorted(), peft.tensorNames.sorted())
        let settings = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/" + PeftAdapter.configFile))) as? [String: Any])
        XCTAssertEqual(settings["task_type"] as? String, "CAUSAL_LM")
        XCTAssertEqual(settings["fan_in_fan_out"] as? Bool, true)
        XCTAssertEqual(settings["target_modules"] as? [String], ["c_attn", "c_proj"])
        XCTAssertEqual(try PeftAdapter.loraSettings(in: directory, conv1D: true), model.config.lora)
        let again = GPT2Model(config: model.config)
        try again.loadAdapter(directory: directory)
        for entry in model.table.entries where entry.trainable {
            XCTAssertEqual(Array(again.parameters[entry.range]), Array(model.parameters[entry.range]), entry.name)
        }
    }

    /// Targets are matched as peft matches them; what cannot be adapted names the key and lists the modules.
    func testTargetsFollowPeftsModuleNames() throws {
        let config = GPT2Config(vocabSize: 10, positionCount: 8, hiddenSize: 8, layerCount: 2, headCount: 2)
        func modules(_ targets: [String], layers: [Int]? = nil) throws -> [[GPT2LoraModule]] {
            try LoraSettings(rank: 2, alpha: 4, targetModules: targets, layersToTransform: layers).adaptedModules(config)
        }
        XCTAssertEqual(try modules(["c_attn"]), [[.attention], [.attention]])
        XCTAssertEqual(try modules(["c_proj"])[0], [.attentionProjection, .mlpProjection])
        XCTAssertEqual(try modules(["attn.c_proj"])[0], [.attentionProjection])
        XCTAssertEqual(try modules(["mlp.c_fc", "c_attn"], layers: [1]), [[], [.attention, .fc]])
        XCTAssertEqual(try modules(["h.1.attn.c_attn", "mlp.c_fc"]), [[.fc], [.attention, .fc]], "one block's module by its full name")
        for (targets, message) in [
            (["query"], "peft.target_modules \"query\" matches no module of the model; GPT-2's projections are attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj"),
            (["lm_head"], "peft.target_modules \"lm_head\" names lm_head; LoRA adapts the blocks' Conv1D projections"),
            (["wte"], "peft.target_modules \"wte\" names transformer.wte"),
        ] {
            XCTAssertThrowsError(try modules(targets)) { error in
                XCTAssertTrue("\(error)".hasPrefix(message), "\(error)")
            }
        }
        XCTAssertThrowsError(try LoraSettings(rank: 0, alpha: 4, targetModules: ["c_attn"]).adaptedModules(config)) { error in
            XCTAssertTrue("\(error)".hasPrefix("peft.r is 0"), "\(error)")
        }
    }

    // MARK: - Support

    func fixture(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(contentsOfFile: Self.fixtures.appendingPathComponent(name + ".safetensors").path)
    }

    /// The base directory's weights with the case's LoRA settings (the file's "lora" metadata) and factors.
    func makeModel(_ file: SafetensorsFile) throws -> GPT2Model {
        var config = try GPT2Model.config(in: Self.base)
        let lora = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(XCTUnwrap(file.metadata["lora"]).utf8)) as? [String: Any])
        config.lora = LoraSettings(
            rank: try XCTUnwrap(lora["r"] as? Int), alpha: try XCTUnwrap((lora["lora_alpha"] as? NSNumber)?.doubleValue),
            useRSLoRA: lora["use_rslora"] as? Bool ?? false, targetModules: try XCTUnwrap(lora["target_modules"] as? [String]),
            layersToTransform: lora["layers_to_transform"] as? [Int], bias: try XCTUnwrap(LoraBias(rawValue: lora["bias"] as? String ?? "")))
        XCTAssertEqual(lora["fan_in_fan_out"] as? Bool, true)
        let model = GPT2Model(config: config)
        _ = try model.loadWeights(from: PretrainedDirectory.weightFiles(in: Self.base), initializationSeed: 0)
        for entry in model.table.entries where entry.name.contains(".lora_") {
            try file.copyFloats("lora." + entry.name, into: UnsafeMutableBufferPointer(rebasing: model.parameters[entry.range]))
        }
        return model
    }

    func inputs(_ file: SafetensorsFile) throws -> (ids: [Int32], mask: [Int32], labels: [Int32], B: Int, T: Int) {
        let shape = try XCTUnwrap(file.tensorInfo("input.input_ids")?.shape)
        func ints(_ key: String) throws -> [Int32] { try file.int64s(key).map { Int32($0) } }
        return (try ints("input.input_ids"), try ints("input.attention_mask"), try ints("input.labels"), shape[0], shape[1])
    }

    @discardableResult
    func checkParity(_ name: String) throws -> GPT2Model {
        let file = try fixture(name)
        let model = try makeModel(file)
        let trainable = model.table.entries.filter(\.trainable)
        XCTAssertEqual(Set(trainable.map { "grad." + $0.name }), Set(file.tensorNames.filter { $0.hasPrefix("grad.") }))
        XCTAssertEqual(model.gradients.count, model.table.trainableCount)
        try GPT2ParityTests.checkPasses(model, file, tolerance: tolerance, name)
        return model
    }

    /// Logits at the real tokens (padded rows depend on how the mask is applied).
    func checkLogits(_ logits: [Float], _ file: SafetensorsFile, mask: [Int32], V: Int, _ label: String,
                     file source: StaticString = #filePath, line: UInt = #line) {
        guard let reference = try? file.floats("expect.logits") else { return XCTFail("no expect.logits") }
        let real = mask.indices.filter { mask[$0] != 0 }
        assertParity(real.flatMap { Array(logits[($0 * V)..<(($0 + 1) * V)]) }, against: real.flatMap { Array(reference[($0 * V)..<(($0 + 1) * V)]) },
                     tolerance: tolerance, "logits \(label)", file: source, line: line)
    }
}
