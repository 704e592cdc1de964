import Foundation
import Transformer
import XCTest

/// What transformers writes and reads for each fine-tuning head, without Python: the tensors and
/// config.json of `save_pretrained` and the loading info of `from_pretrained` for a BertForPreTraining
/// checkpoint, recorded in Fixtures/heads/layouts.json by scripts/make_head_fixtures.py.
final class HeadLayoutTests: XCTestCase {
    struct Layouts: Decodable {
        struct Tensor: Decodable { let shape: [Int]; let dtype: String }
        struct LoadingInfo: Decodable {
            let missing_keys: [String]
            let unexpected_keys: [String]
            let mismatched_keys: [String]
        }
        struct NewTensor: Decodable { let `init`: String; let std: Double }
        struct Head: Decodable {
            let labels: [String]?
            let pooler: Bool
            let tensors: [String: Tensor]
            let new_head: [String: NewTensor]
            let from_pretraining: LoadingInfo
        }
        let config: [String: Int]
        let heads: [String: Head]
    }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let layoutsURL = fixtures.appendingPathComponent("heads/layouts.json")

    func layouts() throws -> Layouts {
        try JSONDecoder().decode(Layouts.self, from: Data(contentsOf: Self.layoutsURL))
    }

    /// layouts.json as plain JSON, for the config.json transformers wrote.
    func layoutsJSON() throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: Self.layoutsURL)) as? [String: Any])
    }

    /// The recorded config.json of a head (`problem_types` for sequence classification's other problem types).
    func recordedConfig(_ className: String, problemType: String? = nil) throws -> [String: Any] {
        let json = try layoutsJSON()
        if let problemType {
            return try XCTUnwrap((json["problem_types"] as? [String: Any])?[problemType] as? [String: Any], problemType)
        }
        let head = (json["heads"] as? [String: Any])?[className] as? [String: Any]
        return try XCTUnwrap(head?["config"] as? [String: Any], className)
    }

    /// layouts.json's sizes with `className`'s head and labels.
    func config(_ layouts: Layouts, _ className: String) throws -> BertConfig {
        let c = layouts.config
        var config = BertConfig(
            vocabSize: c["vocab_size"]!, hiddenSize: c["hidden_size"]!, hiddenLayerCount: c["num_hidden_layers"]!,
            attentionHeadCount: c["num_attention_heads"]!, intermediateSize: c["intermediate_size"]!,
            maxPositionEmbeddings: c["max_position_embeddings"]!)
        config.head = try XCTUnwrap(ModelHead.allCases.first { $0.className == className }, className)
        config.labels = layouts.heads[className]?.labels ?? []
        return config
    }

    func temporaryDirectory() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("head-layout-\(UUID().uuidString)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testEveryHeadIsRecorded() throws {
        let layouts = try layouts()
        XCTAssertEqual(
            Set(layouts.heads.keys),
            Set(ModelHead.allCases.filter { $0 != .preTraining }.map(\.className)))
        for (name, head) in layouts.heads {
            XCTAssertEqual(try config(layouts, name).head.hasPooler, head.pooler, name)
        }
    }

    /// The parameter table and the written model.safetensors are exactly transformers' tensors.
    func testTensorNamesAndShapesAreTransformers() throws {
        let layouts = try layouts()
        for (name, head) in layouts.heads {
            let model = HeadParityTests.makeModel(try config(layouts, name), sequences: 1, length: 8)
            let table = Dictionary(uniqueKeysWithValues: model.table.entries.map { ($0.name, $0.shape) })
            XCTAssertEqual(table, head.tensors.mapValues(\.shape), name)
            XCTAssertEqual(model.config.parameterCount, model.table.totalCount, name)

            let directory = temporaryDirectory()
            try model.savePretrained(to: directory)
            let file = try SafetensorsFile(contentsOfFile: directory + "/model.safetensors")
            var written: [String: Layouts.Tensor] = [:]
            for tensor in file.tensorNames {
                let info = try XCTUnwrap(file.info(tensor))
                written[tensor] = Layouts.Tensor(shape: info.shape, dtype: info.dtype)
            }
            XCTAssertEqual(written.mapValues(\.shape), head.tensors.mapValues(\.shape), name)
            XCTAssertEqual(Set(written.values.map(\.dtype)), Set(head.tensors.values.map(\.dtype)), name)
        }
    }

    /// config.json: every key SwiftBERT writes (but its own `num_nsp_labels`) has transformers' value,
    /// and the head's keys (architectures, id2label, label2id, problem_type, classifier_dropout) are
    /// present exactly when transformers writes them.
    func testConfigJSONMatchesTransformers() throws {
        let layouts = try layouts()
        var cases: [(label: String, config: BertConfig, recorded: [String: Any])] = []
        for name in layouts.heads.keys.sorted() {
            cases.append((name, try config(layouts, name), try recordedConfig(name)))
        }
        var multiLabel = try config(layouts, "BertForSequenceClassification")
        multiLabel.labels = ["toxic", "obscene", "insult"]
        multiLabel.problemType = .multiLabel
        cases.append(("multi-label", multiLabel, try recordedConfig("", problemType: "multi_label_classification")))
        var regression = try config(layouts, "BertForSequenceClassification")
        regression.labels = []
        regression.problemType = .regression
        cases.append(("regression", regression, try recordedConfig("", problemType: "regression")))

        let headKeys = ["architectures", "id2label", "label2id", "problem_type", "classifier_dropout"]
        for (label, config, recorded) in cases {
            let directory = temporaryDirectory()
            try HeadParityTests.makeModel(config, sequences: 1, length: 8).savePretrained(to: directory)
            let written = try XCTUnwrap(
                JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/config.json")))
                    as? [String: Any])
            for key in headKeys {
                XCTAssertEqual(written[key] == nil, recorded[key] == nil, "\(label): \(key) \(written[key] == nil ? "not " : "")written")
            }
            // SwiftBERT's own num_nsp_labels, and position_embedding_type (a BertConfig key of transformers 4;
            // 5 keeps it as an attribute).
            for (key, value) in written where !["num_nsp_labels", "position_embedding_type"].contains(key) {
                let reference = try XCTUnwrap(recorded[key], "\(label): transformers writes no \(key)")
                XCTAssertEqual(value as? NSObject, reference as? NSObject, "\(label): \(key)")
            }
            // And it reads back as the same config, with the label names written for unnamed outputs.
            var expected = config
            if expected.head == .sequenceClassification { expected.problemType = expected.resolvedProblemType }
            if let names = written["id2label"] as? [String: String], expected.labels.isEmpty {
                expected.labels = (0..<names.count).map { names[String($0)] ?? "" }
            }
            XCTAssertEqual(try PretrainedDirectory.config(in: directory), expected, label)
        }
    }

    /// transformers' recorded config.json reads as the head and labels it describes.
    func testTransformersConfigJSONDecodes() throws {
        let layouts = try layouts()
        for name in layouts.heads.keys {
            let json = try JSONSerialization.data(withJSONObject: try recordedConfig(name))
            let decoded = try JSONDecoder().decode(BertConfig.self, from: json)
            var expected = try config(layouts, name)
            if expected.head == .sequenceClassification { expected.problemType = .singleLabel }
            XCTAssertEqual(decoded.head, expected.head, name)
            XCTAssertEqual(decoded.labels, expected.labels, name)
            XCTAssertEqual(decoded.problemType, expected.problemType, name)
            XCTAssertNil(decoded.classifierDropout, name)
            XCTAssertEqual(decoded.headOutputCount, expected.headOutputCount, name)
        }
        for (problemType, outputs) in [("multi_label_classification", 3), ("regression", 1)] {
            let json = try JSONSerialization.data(withJSONObject: try recordedConfig("", problemType: problemType))
            let decoded = try JSONDecoder().decode(BertConfig.self, from: json)
            XCTAssertEqual(decoded.problemType?.rawValue, problemType)
            XCTAssertEqual(decoded.headOutputCount, outputs, problemType)
        }
    }

    /// A BertForPreTraining checkpoint (hf-tiny) loaded into each head: transformers' missing keys are
    /// the newly initialised tensors, its unexpected keys the discarded ones; the encoder is the
    /// checkpoint's, the new head BERT's init (biases 0, weights N(0, initializer_range)).
    func testLoadingAPreTrainingCheckpointReportsWhatTransformersReports() throws {
        let layouts = try layouts()
        let directory = Self.fixtures.appendingPathComponent("hf-tiny").path
        let files = try PretrainedDirectory.weightFiles(in: directory)
        for (name, head) in layouts.heads {
            var config = try PretrainedDirectory.config(in: directory)
            config.head = try XCTUnwrap(ModelHead.allCases.first { $0.className == name })
            config.labels = head.labels ?? []
            // As in the recorded statistics: a std other than 0.02 shows the init reads the config.
            config.initializerRange = 0.05
            let model = HeadParityTests.makeModel(config, sequences: 1, length: 8)
            let report = try model.loadWeights(from: files, initializationSeed: 7)
            XCTAssertEqual(head.from_pretraining.mismatched_keys, [], name)
            XCTAssertEqual(report.initializedTensors.sorted(), head.from_pretraining.missing_keys, name)
            XCTAssertEqual(report.discardedTensors, head.from_pretraining.unexpected_keys, name)
            XCTAssertEqual(report.ignoredTensors, [], name)
            XCTAssertNotNil(report.notice, name)

            let checkpoint = files[0]
            for entry in model.table.entries {
                let values = Array(model.parameters[entry.range])
                if let new = head.new_head[entry.name] {
                    if new.`init` == "zeros" {
                        XCTAssertEqual(values, [Float](repeating: 0, count: entry.count), "\(name) \(entry.name)")
                    } else {
                        XCTAssertEqual(new.`init`, "normal(0, initializer_range)", entry.name)
                        // Sample std of at least 64 normals: within 30% of 0.05 (over 3 standard errors).
                        let mean = values.reduce(0, +) / Float(values.count)
                        let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(values.count)).squareRoot()
                        XCTAssertGreaterThanOrEqual(values.count, 64)
                        XCTAssertEqual(std, 0.05, accuracy: 0.015, "\(name) \(entry.name)")
                        XCTAssertEqual(new.std, 0.05, accuracy: 0.015, "\(name) \(entry.name) (transformers)")
                    }
                } else {
                    XCTAssertEqual(values, try checkpoint.floats(entry.name), "\(name) \(entry.name)")
                }
            }
        }
    }

    /// A saved head model loads back bit for bit, with nothing initialised or discarded.
    func testSavedHeadModelLoadsBackBitIdentically() throws {
        let layouts = try layouts()
        for name in layouts.heads.keys.sorted() {
            var config = try config(layouts, name)
            config.classifierDropout = 0.25
            if config.head == .sequenceClassification { config.problemType = .multiLabel }
            let model = HeadParityTests.makeModel(config, sequences: 1, length: 8)
            model.initializeParameters(seed: 11)
            // Non-zero biases and LayerNorm parameters too, so that every tensor's copy is checked.
            for i in model.parameters.indices { model.parameters[i] += Float(i % 17) * 1e-3 }
            let directory = temporaryDirectory()
            try model.savePretrained(to: directory)

            let loadedConfig = try PretrainedDirectory.config(in: directory)
            XCTAssertEqual(loadedConfig, config, name)
            let loaded = HeadParityTests.makeModel(loadedConfig, sequences: 1, length: 8)
            let report = try loaded.loadWeights(from: try PretrainedDirectory.weightFiles(in: directory), initializationSeed: 99)
            XCTAssertEqual(report, PretrainedLoadReport(), name)
            XCTAssertEqual(loaded.table.entries, model.table.entries, name)
            XCTAssertEqual(Array(loaded.parameters).map(\.bitPattern), Array(model.parameters).map(\.bitPattern), name)
        }
    }

    // MARK: - Bad head keys

    /// Each bad value is one error naming the key and the file, and saying what is wrong.
    func testBadHeadKeysAreErrorsNamingTheKey() throws {
        let base = try recordedConfig("BertForSequenceClassification")
        let cases: [(change: [String: Any], key: String, reason: String)] = [
            (["id2label": ["NEG", "POS"]], "id2label", "expected an object"),
            (["id2label": ["0": 1, "1": 2]], "id2label", "expected an object"),
            (["id2label": ["0": "NEG", "2": "POS"]], "id2label", "without gaps"),
            (["id2label": ["00": "NEG", "1": "POS"]], "id2label", "without gaps"),
            (["id2label": ["+0": "NEG", "1": "POS"]], "id2label", "without gaps"),
            (["id2label": ["zero": "NEG"]], "id2label", "without gaps"),
            (["id2label": [String: String]()], "id2label", "at least one label"),
            (["id2label": ["0": "POS", "1": "POS"]], "id2label", "\"POS\""),
            (["problem_type": "multi_label"], "problem_type", "\"multi_label\" is not one of"),
            (["problem_type": 2], "problem_type", "expected a string"),
            (["problem_type": "regression"], "problem_type", "one output"),
            (["classifier_dropout": "high"], "classifier_dropout", "expected a number or null"),
            (["classifier_dropout": 1.0], "classifier_dropout", "must be in [0, 1)"),
            (["classifier_dropout": -0.1], "classifier_dropout", "must be in [0, 1)"),
            (["id2label": NSNull(), "label2id": NSNull(), "num_labels": 0], "num_labels", "must be in 1...1000000"),
            (["id2label": NSNull(), "label2id": NSNull(), "num_labels": "two"], "num_labels", "expected an integer"),
        ]
        let directory = temporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/config.json"
        for (change, key, reason) in cases {
            var json = base
            for (name, value) in change {
                if value is NSNull { json[name] = nil } else { json[name] = value }
            }
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try BertConfig.load(contentsOfFile: path), "\(change)") { error in
                guard case let .invalidValue(errorKey, errorReason, errorPath)? = error as? BertConfigError else {
                    return XCTFail("\(change): \(error)")
                }
                XCTAssertEqual(errorKey, key, "\(change): \(error)")
                XCTAssertTrue(errorReason.contains(reason), "\(change): \(error)")
                XCTAssertEqual(errorPath, path, "\(change)")
            }
        }
        // Accepted: null classifier_dropout and problem_type (inferred), num_labels without id2label.
        var json = base
        json["classifier_dropout"] = NSNull()
        json["problem_type"] = NSNull()
        json["id2label"] = nil
        json["label2id"] = nil
        json["num_labels"] = 3
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
        let config = try BertConfig.load(contentsOfFile: path)
        XCTAssertEqual(config.labels, ["LABEL_0", "LABEL_1", "LABEL_2"])
        XCTAssertNil(config.classifierDropout)
        XCTAssertNil(config.problemType)
        XCTAssertEqual(config.resolvedProblemType, .singleLabel)
    }

    /// A config built in code with labels a config.json cannot hold is refused before anything is written.
    func testDuplicateLabelsAreRefused() throws {
        var config = BertConfig(vocabSize: 40, hiddenSize: 16, hiddenLayerCount: 1, attentionHeadCount: 2, intermediateSize: 32)
        config.head = .tokenClassification
        config.labels = ["O", "B-PER", "O"]
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertTrue("\(error)".contains("id2label") && "\(error)".contains("\"O\""), "\(error)")
        }
        let directory = temporaryDirectory()
        let model = BertForTokenClassification(config: config, maxSequenceCount: 1, sequenceLength: 8)
        XCTAssertThrowsError(try model.savePretrained(to: directory))
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory), "nothing is written")
    }
}
