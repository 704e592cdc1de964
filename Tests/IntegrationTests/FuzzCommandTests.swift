import Foundation
import XCTest

/// Damaged inputs through the built binary, as a user meets them: every command stops with a non-zero
/// status and one error line naming the file, within the time limit, and leaves no partial output (no
/// half-written checkpoint, no data or export directory). The in-process fuzz tests
/// (TrainingTests/FuzzTests) try thousands of damages; these check what the user sees.
final class FuzzCommandTests: XCTestCase {
    private var cases = 0

    override func tearDown() {
        if cases > 0 { print("fuzz: \(name): \(cases) cases through the binary, 0 traps, 0 hangs") }
        super.tearDown()
    }

    /// The failure a user should see: not a trap (a trap prints "Fatal error" or a stack dump and dies
    /// of a signal), not a hang, exactly one error line, naming `name`.
    private func expectFailure(_ result: Tool.Result, naming name: String, _ label: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        cases += 1
        XCTAssertFalse(result.timedOut, "\(label): hung", file: file, line: line)
        XCTAssertNotEqual(result.status, 0, "\(label): exit 0\n\(result.stdout)\(result.stderr)", file: file, line: line)
        for crash in ["Fatal error", "Stack dump", "Illegal instruction", "Segmentation fault", "Aborted", "Trace/breakpoint"] {
            XCTAssertFalse(result.stderr.contains(crash), "\(label): crashed\n\(result.stderr)", file: file, line: line)
        }
        let errors = result.stderr.split(separator: "\n").filter {
            $0.hasPrefix("error:") || $0.hasPrefix("Error:") || $0.hasPrefix("multinode.sh: hostfile")
        }
        XCTAssertEqual(errors.count, 1, "\(label): expected one error line\n\(result.stderr)", file: file, line: line)
        XCTAssertTrue(errors.first?.contains(name) == true, "\(label): the error does not name \(name)\n\(result.stderr)",
                      file: file, line: line)
    }

    private func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("swiftbert-fuzz-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    private func copy(_ source: String, to destination: String) throws -> String {
        try? FileManager.default.removeItem(atPath: destination)
        try FileManager.default.copyItem(atPath: source, toPath: destination)
        return destination
    }

    /// Damages that need no random generator: each is one a user meets (an interrupted copy, a disk
    /// error, an editor's slip).
    enum Damage: CaseIterable {
        case empty, truncatedToHalf, truncatedBy1, bitFlipAtStart, bitFlipInMiddle, garbageAppended

        func apply(to path: String) throws {
            var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
            switch self {
            case .empty: bytes = []
            case .truncatedToHalf: bytes = Array(bytes.prefix(bytes.count / 2))
            case .truncatedBy1: bytes = Array(bytes.dropLast())
            case .bitFlipAtStart: if !bytes.isEmpty { bytes[min(3, bytes.count - 1)] ^= 0x10 }
            case .bitFlipInMiddle: if !bytes.isEmpty { bytes[bytes.count / 2] ^= 0x01 }
            case .garbageAppended: bytes += Array("\u{0}\u{1}garbage".utf8)
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
    }

    /// No checkpoint directory was started or committed in `run`.
    private func expectNoCheckpoint(_ run: String, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints")) ?? []
        XCTAssertEqual(entries.filter { $0.hasPrefix("step-") || $0.hasPrefix(".tmp") }, [],
                       "\(label): the failed run left checkpoint files", file: file, line: line)
    }

    // MARK: - train

    func testTrainRefusesDamagedConfigsWithOneLine() throws {
        let directory = try temporaryDirectory()
        let data = try TrainingFixture.data()
        let config = directory + "/config.json"
        let original = try String(contentsOfFile: TrainingFixture.debugConfig, encoding: .utf8)
        let edits: [(label: String, from: String, to: String)] = [
            ("hidden_size as a string", "\"hidden_size\": 64", "\"hidden_size\": \"64\""),
            ("huge global batch", "\"global_batch_size\": 8", "\"global_batch_size\": 1e999"),
            ("huge vocabulary", "\"vocab_size\": 30522", "\"vocab_size\": 99999999999999"),
            ("huge model", "\"hidden_size\": 64", "\"hidden_size\": 100000000"),
            ("negative steps", "\"total_steps\": 30", "\"total_steps\": -30"),
            ("seed as a list", "\"seed\": 12345", "\"seed\": [12345]"),
            ("unknown key", "\"seed\": 12345", "\"seeds\": 12345"),
        ]
        // Damages that always break this file (a flip inside a number could still be a valid config).
        let damages: [Damage] = [.empty, .truncatedToHalf, .bitFlipAtStart, .garbageAppended]
        for index in 0..<(damages.count + edits.count) {
            let label: String
            if index < damages.count {
                label = "\(damages[index])"
                try original.write(toFile: config, atomically: true, encoding: .utf8)
                try damages[index].apply(to: config)
            } else {
                let edit = edits[index - damages.count]
                label = edit.label
                XCTAssertTrue(original.contains(edit.from), "configs/debug.json changed; update the edit '\(edit.label)'")
                try original.replacingOccurrences(of: edit.from, with: edit.to).write(toFile: config, atomically: true, encoding: .utf8)
            }
            let run = directory + "/run"
            let result = try Tool.swiftbert(["train", "--config", config, "--data", data, "--out", run], timeout: 120)
            expectFailure(result, naming: config, "config \(label)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: run), "config \(label): a refused config created the run directory")
        }
        for override in ["batch.global_batch_size=-1", "model.vocab_size=99999999999999", "optimizer.learning_rate=1e999",
                         "seed=-1", "schedule.decay=sideways", "logging.every_steps=[]", "model=3", "nonsense=1"] {
            let run = directory + "/run"
            let result = try Tool.swiftbert(
                ["train", "--config", TrainingFixture.debugConfig, "--data", data, "--out", run, "--set", override], timeout: 120)
            expectFailure(result, naming: String(override.prefix { $0 != "=" }), "--set \(override)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: run), "--set \(override) created the run directory")
        }
    }

    func testTrainRefusesDamagedDataWithOneLine() throws {
        let directory = try temporaryDirectory()
        let original = try TrainingFixture.data()
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: original + "/manifest.json"))) as? [String: Any]
        let trainShard = try XCTUnwrap(((manifest?["train"] as? [String: Any])?["shards"] as? [[String: Any]])?.first?["file"] as? String)
        // Damages that no reader may accept (a flip inside a manifest's count could still be valid JSON).
        let damages: [Damage] = [.empty, .truncatedToHalf, .truncatedBy1, .bitFlipAtStart, .garbageAppended]
        for file in ["manifest.json", trainShard] {
            for damage in damages {
                let data = try copy(original, to: directory + "/data")
                try damage.apply(to: data + "/" + file)
                let run = directory + "/run-\(damage)"
                let result = try Tool.swiftbert(
                    ["train", "--config", TrainingFixture.debugConfig, "--data", data, "--out", run,
                     "--set", "schedule.total_steps=2", "--set", "schedule.warmup_steps=0", "--set", "checkpoint.every_steps=1"],
                    timeout: 120)
                expectFailure(result, naming: data + "/" + file, "train on \(file) \(damage)")
                expectNoCheckpoint(run, "train on \(file) \(damage)")
            }
        }
    }

    // MARK: - checkpoints: inspect, export, resume

    /// A run with one checkpoint (step 2) of the debug model.
    static let checkpointRun: Result<String, Error> = Result {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("swiftbert-fuzz-run-\(getpid())").path
        try? FileManager.default.removeItem(atPath: run)
        let result = try Tool.swiftbert(
            ["train", "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(), "--out", run,
             "--set", "schedule.total_steps=2", "--set", "schedule.warmup_steps=0", "--set", "checkpoint.every_steps=2"],
            timeout: 300)
        guard result.status == 0 else { throw TrainingFailure("training the fixture failed: \(result.stderr)") }
        return run
    }

    func testDamagedCheckpointsAreRefusedByInspectExportAndResume() throws {
        let directory = try temporaryDirectory()
        let run = try Self.checkpointRun.get()
        let original = try TrainingFixture.latestCheckpoint(run)
        for file in ["trainer_state.json", "model.safetensors", "optimizer.safetensors", "config.json"] {
            for damage in [Damage.empty, .truncatedToHalf, .bitFlipInMiddle, .garbageAppended] {
                let label = "\(file) \(damage)"
                let checkpoint = try copy(original, to: directory + "/step-00000002")
                try damage.apply(to: checkpoint + "/" + file)

                expectFailure(try Tool.swiftbert(["inspect", checkpoint], timeout: 60), naming: checkpoint + "/" + file, "inspect, \(label)")

                let out = directory + "/export"
                expectFailure(try Tool.swiftbert(["export", checkpoint, "--out", out], timeout: 60),
                              naming: checkpoint + "/" + file, "export, \(label)")
                XCTAssertFalse(FileManager.default.fileExists(atPath: out), "export, \(label): left \(out)")
                XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains(".tmp") }, [])

                // Only the checkpoint-level damages (not the raw weights, whose damage only the checksum
                // catches) are resumed from, to keep the test short.
                guard damage == .truncatedToHalf else { continue }
                let resumed = directory + "/resumed"
                let result = try Tool.swiftbert(
                    ["train", "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(), "--out", resumed,
                     "--resume", checkpoint, "--set", "schedule.total_steps=4", "--set", "schedule.warmup_steps=0",
                     "--set", "checkpoint.every_steps=2"], timeout: 120)
                expectFailure(result, naming: checkpoint + "/" + file, "resume, \(label)")
                expectNoCheckpoint(resumed, "resume, \(label)")
            }
        }
    }

    // MARK: - Hugging Face directories: fill-mask

    func testFillMaskRefusesDamagedModelDirectoriesWithOneLine() throws {
        let directory = try temporaryDirectory()
        let original = Tool.root.appendingPathComponent("Tests/TransformerTests/Fixtures/hf-tiny").path
        var cases: [(file: String, damage: (String) throws -> Void)] = []
        // Halving vocab.txt keeps its special tokens and leaves a valid, smaller vocabulary.
        for (file, damages) in [("config.json", [Damage.empty, .truncatedToHalf, .bitFlipAtStart]),
                                ("model.safetensors", [.empty, .truncatedToHalf, .bitFlipAtStart, .garbageAppended]),
                                ("vocab.txt", [.empty, .bitFlipAtStart])] {
            for damage in damages { cases.append((file, damage.apply)) }
        }
        for (key, value) in [("hidden_size", "1000000000"), ("num_hidden_layers", "-2"), ("vocab_size", "\"many\""),
                             ("hidden_act", "\"swish-ish\""), ("max_position_embeddings", "1e30")] {
            cases.append(("config.json", { path in
                var object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
                object[key] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
                try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
            }))
        }
        cases.append(("vocab.txt", { path in
            let text = try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "[MASK]\n", with: "")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }))
        for (index, item) in cases.enumerated() {
            let model = try copy(original, to: directory + "/model")
            try item.damage(model + "/" + item.file)
            let result = try Tool.swiftbert(["fill-mask", "--model", model, "the [MASK] of god"], timeout: 60)
            expectFailure(result, naming: model + "/" + item.file, "fill-mask case \(index), \(item.file)")
            XCTAssertEqual(result.stdout, "", "fill-mask case \(index): printed a result")
        }
    }

    // MARK: - prepare

    func testPrepareRefusesDamagedInputsAndLeavesTheOutputAlone() throws {
        let directory = try temporaryDirectory()
        let vocab = Tool.root.appendingPathComponent("corpus/vocab.txt").path
        let corpus = directory + "/corpus.txt"
        let lines = try String(contentsOfFile: Tool.root.appendingPathComponent("corpus/kjv.txt").path, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).prefix(200)
        let goodCorpus = Array(lines.joined(separator: "\n").utf8)
        let brokenVocab = directory + "/vocab.txt"
        let vocabText = try String(contentsOfFile: vocab, encoding: .utf8)
        let cases: [(label: String, corpus: [UInt8], vocab: [UInt8]?, names: String)] = [
            ("invalid UTF-8", goodCorpus.prefix(500) + [0xFF, 0xFE] + goodCorpus.dropFirst(500), nil, corpus),
            ("empty corpus", [], nil, corpus),
            ("blank corpus", Array("\n\n  \n".utf8), nil, corpus),
            ("one document", Array(goodCorpus.prefix(400)).filter { $0 != 0x0A }, nil, corpus),
            ("vocabulary without [MASK]", goodCorpus, Array(vocabText.replacingOccurrences(of: "[MASK]\n", with: "").utf8), brokenVocab),
            ("empty vocabulary", goodCorpus, [], brokenVocab),
            ("binary vocabulary", goodCorpus, [0xC3, 0x28, 0x0A, 0xFF, 0x00] + Array(vocabText.utf8.prefix(2000)), brokenVocab),
        ]
        for item in cases {
            try Data(item.corpus).write(to: URL(fileURLWithPath: corpus))
            var vocabPath = vocab
            if let bytes = item.vocab {
                try Data(bytes).write(to: URL(fileURLWithPath: brokenVocab))
                vocabPath = brokenVocab
            }
            // A fresh --out is not created ...
            let fresh = directory + "/fresh"
            expectFailure(try Tool.swiftbert(["prepare", "--input", corpus, "--vocab", vocabPath, "--out", fresh], timeout: 120),
                          naming: item.names, "prepare, \(item.label)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: fresh), "prepare, \(item.label): created \(fresh)")
            // ... and an existing one, even with --overwrite, is left as it was.
            let existing = directory + "/existing"
            try FileManager.default.createDirectory(atPath: existing, withIntermediateDirectories: true)
            try "keep".write(toFile: existing + "/marker", atomically: true, encoding: .utf8)
            expectFailure(try Tool.swiftbert(["prepare", "--input", corpus, "--vocab", vocabPath, "--out", existing, "--overwrite"],
                                             timeout: 120), naming: item.names, "prepare --overwrite, \(item.label)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: existing), ["marker"], "prepare, \(item.label)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains(".tmp") }, [],
                           "prepare, \(item.label): left a temporary directory")
        }
    }

    // MARK: - hostfiles

    func testMultinodeRefusesDamagedHostfilesBeforeLaunching() throws {
        let directory = try temporaryDirectory()
        let script = Tool.root.appendingPathComponent("launch/multinode.sh").path
        let hostfiles: [(label: String, bytes: [UInt8])] = [
            ("option as a host name", Array("-oProxyCommand=touch\\ /tmp/owned slots=1\n".utf8)),
            ("zero slots", Array("node1 slots=0\n".utf8)),
            ("huge slots", Array("node1 slots=99999999999999999999\n".utf8)),
            ("negative slots", Array("node1 slots=-2\n".utf8)),
            ("slots without a value", Array("node1 slots\n".utf8)),
            ("misspelt field", Array("node1 slot=2\n".utf8)),
            ("Windows line endings", Array("node1 slots=2\r\nnode2 slots=2\r\n".utf8)),
            ("binary bytes", [0x6E, 0x00, 0x01, 0xFF, 0x0A]),
            ("empty", []),
            ("only comments", Array("# node1 slots=2\n\n".utf8)),
            ("shell in a name", Array("node$(id) slots=1\n".utf8)),
        ]
        for (index, hostfile) in hostfiles.enumerated() {
            let path = directory + "/hosts-\(index)"
            try Data(hostfile.bytes).write(to: URL(fileURLWithPath: path))
            let result = try Tool.run(script, ["--hostfile", path, "--no-check", "--dry-run", "--binary", try Tool.binary,
                                               "--", "train", "--config", TrainingFixture.debugConfig], timeout: 30)
            expectFailure(result, naming: path, "hostfile \(hostfile.label)")
            XCTAssertEqual(result.status, 2, "hostfile \(hostfile.label)")
            XCTAssertEqual(result.stdout, "", "hostfile \(hostfile.label): printed a launch command")
        }
        let good = directory + "/hosts-good"
        try "node1 slots=2 # first\n\nnode2 slots=3 max_slots=4\n".write(toFile: good, atomically: true, encoding: .utf8)
        let result = try Tool.run(script, ["--hostfile", good, "--no-check", "--dry-run", "--binary", try Tool.binary,
                                           "--", "train", "--config", TrainingFixture.debugConfig], timeout: 30)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("-np 5 "), result.stdout)
    }
}
