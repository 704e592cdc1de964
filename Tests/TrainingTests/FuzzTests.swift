import Data
import Foundation
import Training
import Transformer
import XCTest

/// Damages every kind of file and setting a user hands to SwiftBERT (random byte flips, truncations,
/// empty files, huge numbers, wrong types) and checks the contract of every reader: a damaged input
/// either loads and reads through to the end, or throws an error whose description is one line and
/// names the file (or the key). A trap crashes the test process, which fails the run. The seed is
/// fixed, so a failure names a case that fails again; each test prints how many cases it tried.
final class FuzzTests: XCTestCase {
    static let seed: UInt64 = 0x5EED_F022

    /// Repository files used as undamaged originals (never ../shared: the suite runs in a fresh clone).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static func repositoryFile(_ path: String) -> String { root.appendingPathComponent(path).path }
    static let hfTiny = repositoryFile("Tests/TransformerTests/Fixtures/hf-tiny")

    private static var total = FuzzTally()

    override class func tearDown() {
        print("fuzz: \(total.summary) in total")
        super.tearDown()
    }

    // MARK: - Configs

    func testDamagedTrainingConfigsLoadOrNameTheFile() throws {
        var fuzz = Fuzzer(seed: Self.seed)
        let directory = try makeTemporaryDirectory(self, "fuzz-config")
        for name in ["debug", "bert-tiny"] {
            let original = Array(try Data(contentsOf: URL(fileURLWithPath: Self.repositoryFile("configs/\(name).json"))))
            let path = directory + "/\(name).json"
            for index in 0..<800 {
                let damage = fuzz.damage(original, text: true)
                try Data(damage.bytes).write(to: URL(fileURLWithPath: path))
                fuzz.expect("\(name).json case \(index) (\(damage.name))", naming: [path]) {
                    let config = try TrainingConfig.load(contentsOfFile: path)
                    try Self.exercise(config)
                }
            }
        }
        fuzz.report("training config JSON")
    }

    func testEveryConfigKeyTakesAnyOverrideWithoutTrapping() throws {
        var fuzz = Fuzzer(seed: Self.seed)
        let path = Self.repositoryFile("configs/debug.json")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var keys: [String: String] = [:]
        Self.flatten(try TrainingConfig(text: text).resolved, prefix: "", into: &keys)
        let values = ["0", "-1", "1", "0.5", "-0", "1e308", "1e999", "-1e999", "1e-400", "9223372036854775807",
                      "9223372036854775808", "-9223372036854775809", "18446744073709551616", "3.5e15",
                      "true", "null", "\"\"", "\"x\"", "[]", "{}", "[1]", "NaN", "", "\u{0}", "lamb", "cosine"]
        for key in keys.keys.sorted() {
            for value in values {
                let override = "\(key)=\(value)"
                // The message names the key set, or the key it conflicts with, by its last component.
                let names = [String(key.split(separator: ".").last!), "override '\(override)'"]
                fuzz.expect("--set \(override)", naming: names) {
                    try Self.exercise(try TrainingConfig(text: text, source: path, overrides: [override]))
                }
            }
        }
        for override in ["=", "=1", "a", "model", ".=1", "a..b=1", "data.=1", "model.hidden_size.x=1", "data=5",
                         "batch=[]", "model=null", "x.y.z=1", "seed=-1", "seed=1.5", "seed=\"1\"",
                         "schedule.total_steps=1e6", "batch.global_batch_size=1e15", "logging=\"off\""] {
            fuzz.expect("--set \(override)", naming: ["override '\(override)'", String(override.prefix { $0 != "=" && $0 != "." })]) {
                try Self.exercise(try TrainingConfig(text: text, source: path, overrides: [override]))
            }
        }
        fuzz.report("--set overrides")
    }

    func testDamagedModelConfigsLoadOrNameTheFile() throws {
        var fuzz = Fuzzer(seed: Self.seed)
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: Self.hfTiny + "/config.json")))
        let path = try makeTemporaryDirectory(self, "fuzz-bert-config") + "/config.json"
        for index in 0..<1200 {
            let damage = fuzz.damage(original, text: true)
            try Data(damage.bytes).write(to: URL(fileURLWithPath: path))
            fuzz.expect("config.json case \(index) (\(damage.name))", naming: [path]) {
                let config = try BertConfig.load(contentsOfFile: path)
                // The bound on the parameter count is the exact count of the table the model allocates.
                XCTAssertEqual(config.parameterCount, ParameterTable(config: config).totalCount, "case \(index)")
            }
        }
        fuzz.report("model config.json")
    }

    /// What a loaded config must survive: the batch layout for a few world sizes and a round trip
    /// through its resolved form.
    static func exercise(_ config: TrainingConfig) throws {
        for worldSize in 1...4 { _ = try? config.batchLayout(worldSize: worldSize) }
        let again = try TrainingConfig(text: config.resolvedJSON())
        XCTAssertEqual(again, config, "the resolved form reads back as another configuration")
    }

    static func flatten(_ value: JSONValue, prefix: String, into out: inout [String: String]) {
        guard case let .object(members) = value else {
            out[prefix] = value.compactText()
            return
        }
        for (key, child) in members { flatten(child, prefix: prefix.isEmpty ? key : prefix + "." + key, into: &out) }
    }

    // MARK: - Vocabularies and corpora

    func testDamagedVocabulariesLoadOrNameTheFile() throws {
        var fuzz = Fuzzer(seed: Self.seed)
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: Self.hfTiny + "/vocab.txt")))
        let path = try makeTemporaryDirectory(self, "fuzz-vocab") + "/vocab.txt"
        let sample = String(decoding: Self.corpus.prefix(4000), as: UTF8.self) + " Café naïve 中文 résumé ##ing [MASK]"
        for index in 0..<400 {
            let damage = fuzz.damage(original, text: true)
            try Data(damage.bytes).write(to: URL(fileURLWithPath: path))
            fuzz.expect("vocab.txt case \(index) (\(damage.name))", naming: [path]) {
                let vocabulary = try Vocabulary(contentsOfFile: path)
                let ids = BertTokenizer(vocabulary: vocabulary).encode(sample)
                XCTAssertTrue(ids.allSatisfy { $0 >= 0 && Int($0) < vocabulary.count }, "case \(index): id outside the vocabulary")
            }
        }
        fuzz.report("vocab.txt")
    }

    /// Google-format text: the first verses of the repository's corpus, a document every six lines,
    /// and a line of accents and CJK.
    static let corpus: [UInt8] = {
        let text = (try? String(contentsOfFile: repositoryFile("corpus/kjv.txt"), encoding: .utf8)) ?? ""
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).prefix(60).map(String.init)
        lines.insert("Café naïve résumé, 中文字符 and ﬁ ligatures.", at: 3)
        return Array(stride(from: 0, to: lines.count, by: 6)
            .map { lines[$0..<min($0 + 6, lines.count)].joined(separator: "\n") }.joined(separator: "\n\n").utf8)
    }()

    func testDamagedCorporaReadOrNameTheFileAndPrepareLeavesNoOutput() throws {
        var fuzz = Fuzzer(seed: Self.seed)
        let directory = try makeTemporaryDirectory(self, "fuzz-corpus")
        let path = directory + "/corpus.txt"
        let tokenizer = try PreparationTokenizer(vocabularyFile: Self.hfTiny + "/vocab.txt")
        let splitter = SentenceSplitter()
        for index in 0..<400 {
            let damage = fuzz.damage(Self.corpus, text: true)
            try Data(damage.bytes).write(to: URL(fileURLWithPath: path))
            let format: CorpusFormat = index % 2 == 0 ? .google : .documents
            fuzz.expect("corpus case \(index) (\(damage.name), \(format))", naming: [path]) {
                let reader = try CorpusReader(inputs: [path], format: format)
                while let document = try reader.next() { _ = document.sentences(splitter: splitter) }
            }
            // Every tenth case goes through prepare: a failure leaves neither the output nor its temporary.
            guard index % 10 == 0 else { continue }
            let out = directory + "/data-\(index)"
            fuzz.expect("prepare case \(index) (\(damage.name))", naming: [path]) {
                defer {
                    let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
                        .filter { $0.contains(".tmp") }
                    XCTAssertEqual(leftovers, [], "case \(index): prepare left a temporary directory")
                }
                do {
                    _ = try Preparer(settings: Self.prepareSettings(inputs: [path], out: out), tokenizer: tokenizer).run()
                } catch {
                    XCTAssertFalse(FileManager.default.fileExists(atPath: out), "case \(index): a failed prepare left \(out)")
                    throw error
                }
                try Self.readEverything(directory: out, vocabularySize: tokenizer.vocabularySize)
            }
        }
        fuzz.report("corpora")
    }

    static func prepareSettings(inputs: [String], out: String) -> PrepareSettings {
        var settings = PrepareSettings(inputs: inputs, outputDirectory: out)
        settings.format = .google
        settings.instances = InstanceSettings(maxSequenceLength: 32, shortSequenceProbability: 0.1, nextSentenceMode: .binary)
        settings.dupeFactor = 2
        settings.validationFraction = 0.2
        settings.shardBytes = 1 << 16
        settings.memoryLimitBytes = 8 << 20
        settings.workerCount = 2
        return settings
    }

    // MARK: - Data directories

    func testDamagedDataDirectoriesOpenOrNameTheFile() throws {
        var fuzz = Fuzzer(seed: Self.seed)
        let directory = try makeTemporaryDirectory(self, "fuzz-data")
        let corpusPath = directory + "/corpus.txt"
        try Data(Self.corpus).write(to: URL(fileURLWithPath: corpusPath))
        let tokenizer = try PreparationTokenizer(vocabularyFile: Self.hfTiny + "/vocab.txt")
        let original = directory + "/original"
        let manifest = try Preparer(settings: Self.prepareSettings(inputs: [corpusPath], out: original), tokenizer: tokenizer).run()
        let shards = manifest.train.shards.map(\.file) + manifest.validation.shards.map(\.file)
        XCTAssertGreaterThanOrEqual(manifest.validation.instances, 1, "the original needs a validation split to damage")
        try Self.readEverything(directory: original, vocabularySize: tokenizer.vocabularySize)

        let damaged = directory + "/damaged"
        for index in 0..<500 {
            try? FileManager.default.removeItem(atPath: damaged)
            try FileManager.default.copyItem(atPath: original, toPath: damaged)
            // Half the cases damage the manifest (text), half a shard (binary).
            let target = index % 2 == 0 ? DatasetManifest.fileName : shards[(index / 2) % shards.count]
            let targetPath = damaged + "/" + target
            let damage = fuzz.damage(Array(try Data(contentsOf: URL(fileURLWithPath: targetPath))), text: index % 2 == 0)
            try Data(damage.bytes).write(to: URL(fileURLWithPath: targetPath))
            // The message names a file of the directory: the damaged one, or one the damaged manifest names.
            fuzz.expect("\(target) case \(index) (\(damage.name))", naming: [damaged + "/"]) {
                try Self.readEverything(directory: damaged, vocabularySize: tokenizer.vocabularySize)
            }
        }
        // A manifest that points outside the directory, or at nothing.
        for file in ["../original/\(shards[0])", "/etc/passwd", "", ".", "missing.shard"] {
            try? FileManager.default.removeItem(atPath: damaged)
            try FileManager.default.copyItem(atPath: original, toPath: damaged)
            let manifestPath = damaged + "/" + DatasetManifest.fileName
            let text = try String(contentsOfFile: manifestPath, encoding: .utf8)
                .replacingOccurrences(of: "\"\(shards[0])\"", with: "\"\(file)\"")
            try text.write(toFile: manifestPath, atomically: true, encoding: .utf8)
            fuzz.expect("shard file name '\(file)'", naming: [manifestPath, damaged + "/" + file]) {
                try Self.readEverything(directory: damaged, vocabularySize: tokenizer.vocabularySize)
            }
        }
        fuzz.report("data directories (manifest.json, shards)")
    }

    /// Opens both splits and reads every record; batches are built (and their ids checked) once the
    /// checksums verify, as the trainer does.
    static func readEverything(directory: String, vocabularySize: Int) throws {
        let manifest = try DatasetManifest.load(directory: directory)
        for split in DataSplit.allCases {
            let dataset = try PretrainingDataset(directory: directory, split: split)
            XCTAssertEqual(dataset.count, manifest.split(split).instances)
            for shard in dataset.shards {
                for i in 0..<shard.instanceCount {
                    _ = shard.tokens(of: i).reduce(0) { $0 ^ $1 }
                    _ = shard.segmentALengths[i] ^ UInt16(shard.nspLabels[i])
                }
            }
            try dataset.verifyChecksums()
            for start in stride(from: 0, to: dataset.count, by: 16) {
                let batch = try dataset.batch(sampleIndices: Array(start..<min(start + 16, dataset.count)), epoch: 1, seed: 7)
                XCTAssertTrue((batch.inputIDs + batch.maskedLabels).allSatisfy { $0 >= 0 && Int($0) < vocabularySize },
                              "\(directory): a verified shard gave an id outside the vocabulary")
            }
        }
    }

    // MARK: - Safetensors

    func testDamagedSafetensorsFilesOpenOrNameTheFile() throws {
        var fuzz = Fuzzer(seed: Self.seed)
        let directory = try makeTemporaryDirectory(self, "fuzz-safetensors")
        let mixed = directory + "/mixed.safetensors"
        try Self.writeMixedDTypeFile(to: mixed)
        let path = directory + "/damaged.safetensors"
        for (name, source) in [("mixed", mixed), ("hf-tiny", Self.hfTiny + "/model.safetensors")] {
            let original = Array(try Data(contentsOf: URL(fileURLWithPath: source)))
            try Self.readEverything(safetensors: source)
            for index in 0..<(name == "mixed" ? 1200 : 300) {
                // Half the cases edit the header's JSON and fix the length field, to reach the header's checks.
                let damage = index % 2 == 0 ? fuzz.damageHeader(original) : fuzz.damage(original, text: false)
                try Data(damage.bytes).write(to: URL(fileURLWithPath: path))
                fuzz.expect("\(name) case \(index) (\(damage.name))", naming: [path]) {
                    try Self.readEverything(safetensors: path)
                }
            }
        }
        let huge = "18446744073709551615"
        let headers = [
            "", "{}", "[]", "null", "{\"a\":{}}", "{\"__metadata__\":{\"k\":1}}", "{\"__metadata__\":[]}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
            "{\"a\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[\(huge),\(huge)],\"data_offsets\":[0,4]}}",
            "{\"a\":{\"dtype\":\"U8\",\"shape\":[4611686018427387904,4,0],\"data_offsets\":[0,0]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,\(huge),\(huge)],\"data_offsets\":[0,0]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\(huge)]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
            "{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
            String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000),
            "{\"a\":" + String(repeating: "{\"b\":", count: 50_000) + "1" + String(repeating: "}", count: 50_001),
        ]
        for (index, header) in headers.enumerated() {
            var bytes = Array(withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) })
            bytes += Array(header.utf8) + [0, 0, 128, 63]
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            fuzz.expect("hand-made header \(index)", naming: [path]) { try Self.readEverything(safetensors: path) }
        }
        for length in [UInt64.max, UInt64(Int.max), 1 << 40, 100_000_001, 9] {
            let bytes = Array(withUnsafeBytes(of: length.littleEndian) { Array($0) }) + Array("{}".utf8)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            fuzz.expect("header length \(length)", naming: [path]) { try Self.readEverything(safetensors: path) }
        }
        fuzz.report("safetensors files")
    }

    /// Every tensor, as Float or Int64 by its dtype.
    static func readEverything(safetensors path: String) throws {
        let file = try SafetensorsFile(contentsOfFile: path)
        for name in file.tensorNames {
            let info = try XCTUnwrap(file.tensorInfo(name))
            switch info.dtype {
            case .float32, .float64, .float16, .bfloat16: XCTAssertEqual(try file.floats(name).count, info.elementCount)
            default: XCTAssertEqual(try file.int64s(name).count, info.elementCount)
            }
        }
    }

    /// A file with a tensor of every dtype, an empty tensor and metadata.
    static func writeMixedDTypeFile(to path: String) throws {
        var tensors: [SafetensorsWriter.Tensor] = []
        var storage: [[UInt8]] = []
        for (index, dtype) in SafetensorsDType.allCases.enumerated() {
            let shape = index % 3 == 0 ? [0, 3] : [index + 1, 2]
            storage.append((0..<(shape.reduce(1, *) * dtype.size)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ index) })
        }
        try storage.withUnsafeBufferPointers { buffers in
            for (index, dtype) in SafetensorsDType.allCases.enumerated() {
                let shape = index % 3 == 0 ? [0, 3] : [index + 1, 2]
                tensors.append(.init(name: "tensor.\(dtype.rawValue)", dtype: dtype, shape: shape, bytes: buffers[index]))
            }
            try SafetensorsWriter.write(tensors, metadata: ["format": "pt", "note": "fuzz"], to: path)
        }
    }

    // MARK: - Checkpoints

    func testDamagedCheckpointManifestsVerifyOrNameTheFile() throws {
        var fuzz = Fuzzer(seed: Self.seed)
        let run = try makeTemporaryDirectory(self, "fuzz-checkpoint")
        let store = try CheckpointStore(runDirectory: run, keepLast: 1)
        let state = try JSONDecoder().decode(TrainerState.self, from: Data("""
            {"step": 20, "consumed_samples": 160, "epoch": 0, "seed": 12345, "learning_rate": 0.001, "world_size": 2,
             "global_batch_size": 8, "config_fingerprint": "ab", "data_fingerprint": "cd", "loss": 7.5,
             "consecutive_nonfinite_steps": 0, "skipped_steps": 0}
            """.utf8))
        let checkpoint = try store.commit(step: 20, state: state) { directory in
            for file in ["config.json", "model.safetensors", "vocab.txt"] {
                try FileManager.default.copyItem(atPath: Self.hfTiny + "/" + file, toPath: directory + "/" + file)
            }
        }
        XCTAssertEqual(try CheckpointStore.verify(checkpoint.path).decodeState(TrainerState.self), state)
        let manifestPath = checkpoint.path + "/" + CheckpointStore.manifestName
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: manifestPath)))
        let scratch = run + "/digest"
        for index in 0..<600 {
            var damage = fuzz.damage(original, text: true)
            // Half the cases sign the damaged manifest again, as a manifest of another version would be:
            // its checksum holds and the values themselves must be checked.
            if index % 2 == 0, let signed = try Self.resign(damage.bytes, scratch: scratch) {
                damage = (damage.name + ", re-signed", signed)
            }
            try Data(damage.bytes).write(to: URL(fileURLWithPath: manifestPath))
            fuzz.expect("trainer_state.json case \(index) (\(damage.name))", naming: [checkpoint.path]) {
                let manifest = try CheckpointStore.verify(checkpoint.path)
                _ = try manifest.decodeState(TrainerState.self)
            }
            _ = store.newestVerified()
        }
        try Data(original).write(to: URL(fileURLWithPath: manifestPath))
        for file in ["config.json", "model.safetensors", "vocab.txt"] {
            let path = checkpoint.path + "/" + file
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
            for index in 0..<20 {
                let damage = fuzz.damage(bytes, text: file != "model.safetensors")
                try Data(damage.bytes).write(to: URL(fileURLWithPath: path))
                fuzz.expect("\(file) case \(index) (\(damage.name))", naming: [path]) {
                    try CheckpointStore.verify(checkpoint.path)
                }
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
        XCTAssertEqual(store.newestVerified().checkpoint, checkpoint)
        fuzz.report("checkpoint manifests (trainer_state.json) and files")
    }

    /// The manifest with `manifest_sha256` recomputed over its (damaged) members, or nil when it is no
    /// longer a JSON object.
    static func resign(_ bytes: [UInt8], scratch: String) throws -> [UInt8]? {
        guard case let .object(members)? = try? JSONValue.parse(String(decoding: bytes, as: UTF8.self)) else { return nil }
        let kept = members.filter { $0.key != "manifest_sha256" }
        try Data(JSONValue.object(kept).compactText(sortedKeys: true).utf8).write(to: URL(fileURLWithPath: scratch))
        let digest = try CheckpointStore.sha256(ofFile: scratch, fsync: false).sha256
        return Array(JSONValue.object(kept + [("manifest_sha256", .string(digest))]).prettyText().utf8)
    }
}

// MARK: - Damage

/// Cases tried, accepted and rejected.
struct FuzzTally {
    var cases = 0
    var accepted = 0
    var rejected = 0

    var summary: String {
        let formatter = NumberFormatter()
        formatter.numberStyle = .decimal
        let count = formatter.string(from: NSNumber(value: cases)) ?? "\(cases)"
        return "\(count) cases (\(accepted) loaded, \(rejected) rejected with a one-line error), 0 traps"
    }
}

/// Deterministic damage (SplitMix64) and the check of what a reader did with it.
struct Fuzzer {
    private var state: UInt64
    private var tally = FuzzTally()

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(next() % UInt64(bound)) }

    /// Numbers that break readers: zero, negative, beyond Int, beyond Double, fractions.
    static let nastyNumbers = ["0", "-1", "-0", "1e308", "1e999", "-1e999", "1e-400", "0.5", "99999999999999999999",
                               "9223372036854775807", "9223372036854775808", "-9223372036854775808", "4294967296", "2147483648"]
    /// Values of the wrong type for any key.
    static let wrongTypes = ["\"x\"", "\"\"", "[]", "{}", "null", "true", "[1,2]", "{\"a\":1}", "\"\\u0000\"", "\"a\\nb\""]

    /// One random kind of damage; `text` adds edits of JSON numbers and values.
    mutating func damage(_ original: [UInt8], text: Bool) -> (name: String, bytes: [UInt8]) {
        var bytes = original
        let kinds = text ? 11 : 8
        switch below(kinds) {
        case 0:
            let at = below(bytes.count), bit = below(8)
            if !bytes.isEmpty { bytes[at] ^= 1 << bit }
            return ("bit \(bit) of byte \(at) flipped", bytes)
        case 1:
            let count = 1 + below(8)
            for _ in 0..<count where !bytes.isEmpty { bytes[below(bytes.count)] = UInt8(truncatingIfNeeded: next()) }
            return ("\(count) random bytes", bytes)
        case 2:
            let length = below(bytes.count)
            return ("truncated to \(length) bytes", Array(bytes.prefix(length)))
        case 3:
            return ("empty", [])
        case 4:
            let at = below(bytes.count + 1), count = 1 + below(16)
            bytes.insert(contentsOf: (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) }, at: at)
            return ("\(count) bytes inserted at \(at)", bytes)
        case 5:
            let start = below(bytes.count), end = min(bytes.count, start + 1 + below(64))
            bytes.removeSubrange(start..<end)
            return ("bytes \(start)..<\(end) deleted", bytes)
        case 6:
            let start = below(bytes.count), end = min(bytes.count, start + 1 + below(256)), at = below(bytes.count + 1)
            bytes.insert(contentsOf: original[start..<end], at: at)
            return ("bytes \(start)..<\(end) copied to \(at)", bytes)
        case 7:
            let count = 1 + below(1024)
            bytes += (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) }
            return ("\(count) bytes appended", bytes)
        case 8, 9:
            // A number literal replaced by a nasty one.
            let numbers = Self.ranges(in: bytes) { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "e") }
                .filter { range in bytes[range].contains { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } }
            guard !numbers.isEmpty else { return damage(original, text: false) }
            let range = numbers[below(numbers.count)]
            let value = Self.nastyNumbers[below(Self.nastyNumbers.count)]
            bytes.replaceSubrange(range, with: Array(value.utf8))
            return ("number at \(range.lowerBound) set to \(value)", bytes)
        default:
            // The value after a ':' replaced by one of the wrong type.
            let colons = bytes.indices.filter { bytes[$0] == UInt8(ascii: ":") }
            guard !colons.isEmpty else { return damage(original, text: false) }
            let colon = colons[below(colons.count)]
            let end = Self.valueEnd(bytes, from: colon + 1)
            let value = Self.wrongTypes[below(Self.wrongTypes.count)]
            bytes.replaceSubrange((colon + 1)..<end, with: Array(" \(value)".utf8))
            return ("value after byte \(colon) set to \(value)", bytes)
        }
    }

    /// Damage to a safetensors header's JSON, with the length field fixed so the reader parses it.
    mutating func damageHeader(_ original: [UInt8]) -> (name: String, bytes: [UInt8]) {
        let length = original.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = Array(original[8..<(8 + length)])
        let damage = self.damage(header, text: true)
        let prefix = withUnsafeBytes(of: UInt64(damage.bytes.count).littleEndian) { Array($0) }
        return ("header " + damage.name, prefix + damage.bytes + original[(8 + length)...])
    }

    /// Maximal runs of bytes satisfying `belongs`.
    static func ranges(in bytes: [UInt8], _ belongs: (UInt8) -> Bool) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var start: Int?
        for (i, byte) in bytes.enumerated() {
            if belongs(byte) { start = start ?? i } else if let s = start { result.append(s..<i); start = nil }
        }
        if let s = start { result.append(s..<bytes.count) }
        return result
    }

    /// Where a JSON value starting at `from` ends, roughly (a scalar, or a balanced bracket).
    static func valueEnd(_ bytes: [UInt8], from: Int) -> Int {
        var i = from
        while i < bytes.count, bytes[i] == UInt8(ascii: " ") || bytes[i] == UInt8(ascii: "\n") { i += 1 }
        guard i < bytes.count else { return bytes.count }
        if bytes[i] == UInt8(ascii: "{") || bytes[i] == UInt8(ascii: "[") {
            var depth = 0, inString = false
            while i < bytes.count {
                let byte = bytes[i]
                if inString {
                    if byte == UInt8(ascii: "\\") { i += 1 } else if byte == UInt8(ascii: "\"") { inString = false }
                } else if byte == UInt8(ascii: "\"") {
                    inString = true
                } else if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") {
                    depth += 1
                } else if byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") {
                    depth -= 1
                    if depth == 0 { return i + 1 }
                }
                i += 1
            }
            return bytes.count
        }
        if bytes[i] == UInt8(ascii: "\"") {
            i += 1
            while i < bytes.count, bytes[i] != UInt8(ascii: "\"") { i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1 }
            return min(i + 1, bytes.count)
        }
        while i < bytes.count, ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: "\n")].contains(bytes[i]) { i += 1 }
        return i
    }

    /// Runs one case: `body` either returns, or throws an error whose description is one line and
    /// contains one of `names` (the file, or the key).
    mutating func expect(_ label: String, naming names: [String], _ body: () throws -> Void) {
        tally.cases += 1
        do {
            try body()
            tally.accepted += 1
        } catch {
            tally.rejected += 1
            let message = "\(error)"
            XCTAssertFalse(message.contains("\n") || message.contains("\r"), "\(label): the error is not one line: \(message)")
            XCTAssertTrue(names.contains { message.contains($0) }, "\(label): the error names none of \(names): \(message)")
            XCTAssertFalse(message.isEmpty, "\(label): empty error")
        }
    }

    /// Prints the count of this test's cases and adds them to the total.
    func report(_ what: String) {
        print("fuzz: \(what): \(tally.summary)")
        FuzzTests.add(tally)
    }
}

extension FuzzTests {
    static func add(_ tally: FuzzTally) {
        total.cases += tally.cases
        total.accepted += tally.accepted
        total.rejected += tally.rejected
    }
}

extension Array where Element == [UInt8] {
    /// Raw views of every element at once, for writers that take borrowed buffers.
    func withUnsafeBufferPointers<Result>(_ body: ([UnsafeRawBufferPointer]) throws -> Result) rethrows -> Result {
        func nest(_ index: Int, _ done: [UnsafeRawBufferPointer]) throws -> Result {
            guard index < count else { return try body(done) }
            return try self[index].withUnsafeBytes { try nest(index + 1, done + [$0]) }
        }
        return try nest(0, [])
    }
}
