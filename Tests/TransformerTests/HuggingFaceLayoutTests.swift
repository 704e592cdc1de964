import Foundation
import Transformer
import XCTest

/// Which transformers classes load which SwiftBERT checkpoints, without Python: the tensors
/// SwiftBERT writes for each NSP head against the tensors each class expects and what its
/// `from_pretrained` reported, recorded by scripts/make_hf_directory_fixtures.py (transformers 5).
final class HuggingFaceLayoutTests: XCTestCase {
    struct Layouts: Decodable {
        struct ModelClass: Decodable {
            let expects: [String: [Int]]
            let tied: [String]
            let strips_prefix: String?
        }
        struct Report: Decodable, Equatable {
            let error: String?
            let missing_keys: [String]
            let unexpected_keys: [String]
            let mismatched_keys: [String]
        }
        struct Checkpoint: Decodable {
            let tensors: [String: [Int]]
            let reports: [String: Report]
        }
        let config: [String: Int]
        let classes: [String: ModelClass]
        let checkpoints: [String: Checkpoint]
    }

    func layouts() throws -> Layouts {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hf-layouts.json")
        return try JSONDecoder().decode(Layouts.self, from: Data(contentsOf: url))
    }

    /// The tensors (name -> shape) and config.json SwiftBERT writes for the fixture's config.
    func written(_ layouts: Layouts, nspClasses: Int) throws -> (tensors: [String: [Int]], architectures: [String]) {
        let c = layouts.config
        let config = BertConfig(
            vocabSize: c["vocab_size"]!, hiddenSize: c["hidden_size"]!, hiddenLayerCount: c["num_hidden_layers"]!,
            attentionHeadCount: c["num_attention_heads"]!, intermediateSize: c["intermediate_size"]!,
            maxPositionEmbeddings: c["max_position_embeddings"]!, typeVocabSize: c["type_vocab_size"]!,
            nspClassCount: nspClasses)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("layout-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try BertForPreTraining(config: config, maxSequenceCount: 1, sequenceLength: 8).savePretrained(to: directory)
        let file = try SafetensorsFile(contentsOfFile: directory + "/model.safetensors")
        var tensors: [String: [Int]] = [:]
        for name in file.tensorNames { tensors[name] = file.tensorInfo(name)!.shape }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json")))
        return (tensors, (json as? [String: Any])?["architectures"] as? [String] ?? [])
    }

    /// What `from_pretrained` reports for `tensors`, by transformers' rules: a class without the
    /// `bert.` prefix on its own names reads `bert.X` as `X`; tensors it does not have are unexpected,
    /// its tensors absent from the file (except tied copies) missing; a shape mismatch is an error.
    func report(loading tensors: [String: [Int]], into modelClass: Layouts.ModelClass) -> Layouts.Report {
        var mapped: [String: String] = [:]
        for name in tensors.keys {
            if let prefix = modelClass.strips_prefix {
                mapped[name] = name.hasPrefix(prefix) ? String(name.dropFirst(prefix.count)) : name
            } else {
                mapped[name] = name
            }
        }
        let unexpected = tensors.keys.filter { modelClass.expects[mapped[$0]!] == nil }.sorted()
        let present = Set(mapped.values)
        let missing = modelClass.expects.keys.filter { !present.contains($0) && !modelClass.tied.contains($0) }.sorted()
        let mismatched = tensors.keys.filter { name in
            modelClass.expects[mapped[name]!].map { $0 != tensors[name]! } ?? false
        }.map { mapped[$0]! }.sorted()
        return Layouts.Report(
            error: mismatched.isEmpty ? nil : "size mismatch", missing_keys: missing, unexpected_keys: unexpected,
            mismatched_keys: mismatched)
    }

    func testCheckpointTensorsAreTheRecordedLayouts() throws {
        let layouts = try layouts()
        XCTAssertEqual(Set(layouts.checkpoints.keys), ["2", "3", "0"])
        for (classes, checkpoint) in layouts.checkpoints {
            XCTAssertEqual(try written(layouts, nspClasses: Int(classes)!).tensors, checkpoint.tensors, "NSP \(classes)")
        }
        // With 2 NSP classes the file is BertForPreTraining's state dict without the tied decoder.
        let pretraining = layouts.classes["BertForPreTraining"]!
        var expected = pretraining.expects
        for name in pretraining.tied { expected[name] = nil }
        XCTAssertEqual(try written(layouts, nspClasses: 2).tensors, expected)
    }

    func testTransformersReportsFollowFromTheLayouts() throws {
        let layouts = try layouts()
        XCTAssertEqual(Set(layouts.classes.keys), ["BertForPreTraining", "BertForMaskedLM", "BertModel", "BertForNextSentencePrediction"])
        for (classes, checkpoint) in layouts.checkpoints {
            let tensors = try written(layouts, nspClasses: Int(classes)!).tensors
            for (name, modelClass) in layouts.classes {
                let recorded = checkpoint.reports[name]!
                let computed = report(loading: tensors, into: modelClass)
                XCTAssertEqual(computed.missing_keys, recorded.missing_keys, "NSP \(classes) \(name)")
                XCTAssertEqual(computed.unexpected_keys, recorded.unexpected_keys, "NSP \(classes) \(name)")
                XCTAssertEqual(computed.mismatched_keys, recorded.mismatched_keys, "NSP \(classes) \(name)")
                XCTAssertEqual(computed.error != nil, recorded.error != nil, "NSP \(classes) \(name): \(recorded.error ?? "")")
            }
        }
    }

    /// The README's table, checked: which class loads which checkpoint, and with what.
    func testWhichClassesLoadWhichCheckpoints() throws {
        let layouts = try layouts()
        func outcome(_ classes: Int, _ name: String) -> String {
            let report = layouts.checkpoints[String(classes)]!.reports[name]!
            if report.error != nil { return "fails" }
            if !report.missing_keys.isEmpty { return "initialises " + report.missing_keys.joined(separator: ",") }
            return "loads"
        }
        for name in ["BertForMaskedLM", "BertModel"] {
            for classes in [2, 3, 0] { XCTAssertEqual(outcome(classes, name), "loads", "NSP \(classes) \(name)") }
        }
        XCTAssertEqual(outcome(2, "BertForPreTraining"), "loads")
        XCTAssertEqual(outcome(2, "BertForNextSentencePrediction"), "loads")
        XCTAssertEqual(outcome(3, "BertForPreTraining"), "fails")
        XCTAssertEqual(outcome(3, "BertForNextSentencePrediction"), "fails")
        XCTAssertEqual(outcome(0, "BertForPreTraining"), "initialises cls.seq_relationship.bias,cls.seq_relationship.weight")
        XCTAssertEqual(layouts.checkpoints["2"]!.reports["BertForPreTraining"]!.unexpected_keys, [])
    }

    /// config.json's `architectures` names a class that loads every tensor the file holds for that
    /// head, initialising none and failing on none.
    func testArchitecturesNameAClassThatLoadsTheCheckpoint() throws {
        let layouts = try layouts()
        for classes in [2, 3, 0] {
            let architectures = try written(layouts, nspClasses: classes).architectures
            XCTAssertEqual(architectures.count, 1, "NSP \(classes)")
            let report = try XCTUnwrap(layouts.checkpoints[String(classes)]!.reports[architectures[0]], architectures[0])
            XCTAssertNil(report.error, "NSP \(classes) \(architectures[0])")
            XCTAssertEqual(report.missing_keys, [], "NSP \(classes) \(architectures[0])")
            if classes == 2 { XCTAssertEqual(report.unexpected_keys, [], architectures[0]) }
        }
    }
}
