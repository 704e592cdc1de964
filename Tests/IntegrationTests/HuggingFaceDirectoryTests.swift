import Foundation
import XCTest

/// Hugging Face directories through the binary: checkpoints carry tokenizer.json, directories as
/// transformers 5 saves them (no vocab.txt) serve the commands, and `init_from` refuses a directory
/// that does not match the run.
final class HuggingFaceDirectoryTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("swiftbert-hf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    /// Trains the debug model for `steps` steps from `initFrom` (or scratch) into a new run directory.
    func train(_ name: String, steps: Int = 2, set extra: [String] = []) throws -> (result: Tool.Result, run: String) {
        let run = scratch.appendingPathComponent(name).path
        var arguments = ["train", "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(), "--out", run,
                         "--debug", "--set", "schedule.total_steps=\(steps)", "--set", "schedule.warmup_steps=1",
                         "--set", "checkpoint.every_steps=\(steps)"]
        for setting in extra { arguments += ["--set", setting] }
        return (try Tool.swiftbert(arguments, timeout: 600), run)
    }

    /// A copy of `directory` without vocab.txt, as transformers 5 saves a tokenizer.
    func withoutVocabularyFile(_ directory: String, name: String) throws -> String {
        let copy = scratch.appendingPathComponent(name).path
        try FileManager.default.copyItem(atPath: directory, toPath: copy)
        try FileManager.default.removeItem(atPath: copy + "/vocab.txt")
        return copy
    }

    func testInitFromChecksConfigAndVocabulary() throws {
        let (first, run) = try train("source")
        XCTAssertEqual(first.status, 0, first.stderr)
        let checkpoint = try TrainingFixture.latestCheckpoint(run)
        XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint + "/tokenizer.json"))

        // The same model and vocabulary, read from tokenizer.json: accepted.
        let transformers5 = try withoutVocabularyFile(checkpoint, name: "transformers5")
        let (accepted, _) = try train("accepted", set: ["init_from=\"\(transformers5)\""])
        XCTAssertEqual(accepted.status, 0, accepted.stderr)
        XCTAssertTrue((accepted.stdout + accepted.stderr).contains("initialised from \(transformers5)"))

        // Another activation, same shapes: the weights would load; the check names the key.
        let (activation, activationRun) = try train("activation", set: ["init_from=\"\(checkpoint)\"", "model.hidden_act=\"relu\""])
        XCTAssertNotEqual(activation.status, 0)
        XCTAssertTrue(activation.stderr.contains("hidden_act \"gelu\"") && activation.stderr.contains("\"relu\""), activation.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: activationRun + "/checkpoints/latest"))

        // A vocabulary with two tokens swapped (a transformers 4 directory: vocab.txt, no
        // tokenizer.json): the first differing id and both tokens.
        let swapped = scratch.appendingPathComponent("swapped").path
        try FileManager.default.copyItem(atPath: checkpoint, toPath: swapped)
        try FileManager.default.removeItem(atPath: swapped + "/tokenizer.json")
        var tokens = try String(contentsOfFile: swapped + "/vocab.txt", encoding: .utf8).components(separatedBy: "\n")
        tokens.swapAt(2000, 2001)
        try tokens.joined(separator: "\n").write(toFile: swapped + "/vocab.txt", atomically: true, encoding: .utf8)
        let (vocabulary, _) = try train("vocabulary", set: ["init_from=\"\(swapped)\""])
        XCTAssertNotEqual(vocabulary.status, 0)
        XCTAssertTrue(
            vocabulary.stderr.contains("id 2000") && vocabulary.stderr.contains("\"\(tokens[2000])\"")
                && vocabulary.stderr.contains("\"\(tokens[2001])\""), vocabulary.stderr)
    }

    func testTransformers5DirectoryServesTheCommands() throws {
        let model = Tool.root.appendingPathComponent("Tests/TransformerTests/Fixtures/hf-tiny").path
        let transformers5 = try withoutVocabularyFile(model, name: "hf-tiny")
        let text = "the man went to the [MASK] to buy some milk."
        let withVocabulary = try Tool.swiftbert(["fill-mask", "--model", model, "--json", text])
        let withoutVocabulary = try Tool.swiftbert(["fill-mask", "--model", transformers5, "--json", text])
        XCTAssertEqual(withVocabulary.status, 0, withVocabulary.stderr)
        XCTAssertEqual(withoutVocabulary.status, 0, withoutVocabulary.stderr)
        XCTAssertEqual(withoutVocabulary.stdout, withVocabulary.stdout)

        let lines = "In the beginning God created the heaven and the earth.\ncafé, naïve!\n中文 text\n"
        let byVocabulary = try Tool.swiftbert(["tokenize", "--vocab", model + "/vocab.txt", "--ids"], input: lines)
        let byDirectory = try Tool.swiftbert(["tokenize", "--model", transformers5, "--ids"], input: lines)
        XCTAssertEqual(byDirectory.status, 0, byDirectory.stderr)
        XCTAssertEqual(byDirectory.stdout, byVocabulary.stdout)
        XCTAssertEqual(byDirectory.stdout.split(separator: "\n").count, 3)

        let empty = scratch.appendingPathComponent("empty").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let refused = try Tool.swiftbert(["tokenize", "--model", empty])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("vocab.txt") && refused.stderr.contains("tokenizer.json"), refused.stderr)
    }
}
