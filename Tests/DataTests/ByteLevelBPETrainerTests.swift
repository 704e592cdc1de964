import Crypto
import Data
import Foundation
import XCTest

/// Learning a byte-level BPE tokenizer against the `tokenizers` library: the fixture tokenizer of
/// scripts/make_bpe_fixtures.py is what `ByteLevelBPETokenizer().train(files, vocab_size=1200,
/// min_frequency=2, special_tokens=["<|endoftext|>"])` learned from the repository's corpora.
final class ByteLevelBPETrainerTests: XCTestCase {
    static let fixtures = ByteLevelBPETests.directory

    /// The repository's corpora, counted once for the tests that learn from them.
    static let repositoryTrainer: ByteLevelBPETrainer = {
        var trainer = ByteLevelBPETrainer(minimumPairFrequency: 2)
        let corpora = try! TokenizerFixtures.repositoryCorpora()
        try! trainer.add(contentsOfFiles: corpora.files.map { corpora.root.appendingPathComponent($0).path })
        return trainer
    }()

    static let repositoryModel: ByteLevelBPEModel = try! repositoryTrainer.learn(vocabularySize: 1200)

    func fixture(_ name: String) throws -> String {
        try String(contentsOf: Self.fixtures.appendingPathComponent(name), encoding: .utf8)
    }

    /// The parity check: the same vocabulary (token and id) and the same merges in the same order, and
    /// the files written are the bytes the library wrote.
    func testLearnsTheVocabularyAndMergesTokenizersLearns() throws {
        let model = Self.repositoryModel
        let files = Dictionary(uniqueKeysWithValues: ByteLevelBPE.files(of: model).map { ($0.name, $0.text) })
        let expectedMerges = try fixture("merges.txt").split(separator: "\n").dropFirst()
        XCTAssertEqual(model.merges.count, expectedMerges.count)
        let firstDifference = zip(model.merges.map { "\($0.0) \($0.1)" }, expectedMerges).enumerated().first { $0.element.0 != $0.element.1 }
        XCTAssertNil(firstDifference, "first different merge: \(String(describing: firstDifference))")
        XCTAssertEqual(model.tokens.count, 1200)
        XCTAssertEqual(files[ByteLevelBPE.mergesFile], try fixture("merges.txt"))
        XCTAssertEqual(files[ByteLevelBPE.vocabularyFile], try fixture("vocab.json"))
        XCTAssertEqual(files[ByteLevelBPE.tokenizerFile], try fixture("tokenizer.json"))
    }

    /// With `SWIFTBERT_SHARED_CORPORA`: the whole of `../shared/corpora` with 8,000 tokens gives the
    /// vocab.json and merges.txt tokenizers saves (their SHA-256 in shared-corpus-training.json).
    func testSharedCorporaLearnWhatTokenizersLearns() throws {
        guard let corpora = try TokenizerFixtures.sharedCorpora() else {
            throw XCTSkip("\(TokenizerFixtures.sharedCorporaVariable) is not set: .ci/run's step 2 runs this on ../shared/corpora")
        }
        struct Reference: Decodable {
            let files: [String]
            let vocabSize: Int
            let minFrequency: Int
            let specialTokens: [String]
            let sha256: [String: String]
        }
        let reference = try JSONDecoder().decode(
            Reference.self, from: Foundation.Data(contentsOf: Self.fixtures.appendingPathComponent("shared-corpus-training.json")))
        XCTAssertEqual(reference.files, corpora.files, "regenerate with scripts/make_bpe_fixtures.py --shared-digests")
        let start = Date()
        var trainer = ByteLevelBPETrainer(specialTokens: reference.specialTokens, minimumPairFrequency: reference.minFrequency)
        try trainer.add(contentsOfFiles: reference.files.map { corpora.root.appendingPathComponent($0).path })
        let model = try trainer.learn(vocabularySize: reference.vocabSize)
        print("byte-level BPE training: \(model.merges.count) merges in " + String(format: "%.2f s", Date().timeIntervalSince(start)))
        for (name, text) in ByteLevelBPE.files(of: model) where reference.sha256[name] != nil {
            let digest = SHA256.hash(data: Foundation.Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
            XCTAssertEqual(digest, reference.sha256[name], name)
        }
    }

    /// Counting on 1, 5 or all cores' threads gives the same words, and so the same tokenizer.
    func testThreadCountDoesNotChangeTheResult() throws {
        let corpora = try TokenizerFixtures.repositoryCorpora()
        let paths = corpora.files.map { corpora.root.appendingPathComponent($0).path }
        for threads in [1, 5] {
            var trainer = ByteLevelBPETrainer(minimumPairFrequency: 2, threadCount: threads)
            try trainer.add(contentsOfFiles: paths)
            XCTAssertEqual(trainer.words, Self.repositoryTrainer.words, "\(threads) threads")
            XCTAssertEqual(try trainer.learn(vocabularySize: 600), try Self.repositoryTrainer.learn(vocabularySize: 600))
        }
    }

    /// Lines are counted one at a time with their line break, as tokenizers feeds a file: a run of
    /// spaces before a line break is one word with it, and never joins the next line's.
    func testWordsAreCountedLineByLine() throws {
        var trainer = ByteLevelBPETrainer()
        trainer.add(text: "ab  \n\n  ab\r\nab")
        let words = Dictionary(uniqueKeysWithValues: trainer.words.map { (String(decoding: $0.key, as: UTF8.self), $0.value) })
        XCTAssertEqual(words, ["ab": 2, "  \n": 1, "\n": 1, " ": 1, " ab": 1, "\r\n": 1])
        // Files give what the text gives, whatever their chunks.
        let directory = try TestPaths.temporaryDirectory(self)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("a.txt").path
        try "ab  \n\n  ab\r\nab".write(toFile: path, atomically: true, encoding: .utf8)
        var fromFile = ByteLevelBPETrainer()
        try fromFile.add(contentsOfFiles: [path])
        XCTAssertEqual(fromFile.words, trainer.words)
    }

    /// tokenizers' own small case, in byte-level form: ties go to the smaller pair of ids (the byte
    /// tokens in the order of their characters), and min_frequency stops the merges.
    func testTiesGoToTheSmallerPairAndMinimumFrequencyStops() throws {
        var trainer = ByteLevelBPETrainer(specialTokens: [], minimumPairFrequency: 2)
        for word in ["roses", "are", "are", "red", "voilets", "blue", "BERT", "is", "is", "big", "and", "so", "GPT-2"] {
            trainer.add(text: word + "\n")
        }
        let model = try trainer.learn(vocabularySize: 1000)
        // "r e" 3 times; then "a re" and "i s" twice each, "a" before "i".
        XCTAssertEqual(model.merges.map { "\($0.0) \($0.1)" }, ["r e", "a re", "i s"])
        XCTAssertEqual(Array(model.tokens[256...]), ["re", "are", "is"])
    }

    /// Written files load back into the same tokenizer, through tokenizer.json and through vocab.json
    /// + merges.txt, and tokenizer_config.json names GPT-2's tokenizer and special token.
    func testWrittenFilesLoadBack() throws {
        let model = try Self.repositoryTrainer.learn(vocabularySize: 700)
        let directory = try TestPaths.temporaryDirectory(self)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("tokenizer").path
        try ByteLevelBPE.write(model, to: out)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: out).sorted(),
            ["merges.txt", "tokenizer.json", "tokenizer_config.json", "vocab.json"])
        let learned = try ByteLevelBPE(model)
        let fromJSON = try ByteLevelBPE.load(directory: out)
        let fromPair = try ByteLevelBPE.load(
            vocabularyJSON: out + "/" + ByteLevelBPE.vocabularyFile, merges: out + "/" + ByteLevelBPE.mergesFile)
        let text = "In the beginning God created the heaven and the earth.<|endoftext|>中文 naïve 😀 def f(x):\n  return x"
        let ids = learned.encode(text)
        XCTAssertEqual(ids.first { $0 == 0 }, 0, "<|endoftext|> is one token")
        XCTAssertEqual(fromJSON.encode(text), ids)
        XCTAssertEqual(fromPair.encode(text), ids)
        XCTAssertEqual(fromJSON.decode(ids), text)
        let config = try JSONValue.parse(String(contentsOfFile: out + "/" + ByteLevelBPE.configFile, encoding: .utf8))
        XCTAssertEqual(config["tokenizer_class"], .string("GPT2Tokenizer"))
        for key in ["bos_token", "eos_token", "unk_token"] { XCTAssertEqual(config[key], .string("<|endoftext|>"), key) }
    }

    /// A non-empty output is kept unless overwrite; replacing leaves only the new files; a failed write
    /// leaves nothing behind.
    func testWriteRefusesAnExistingDirectoryAndLeavesNothingOnError() throws {
        let model = try Self.repositoryTrainer.learn(vocabularySize: 300)
        let directory = try TestPaths.temporaryDirectory(self)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("out").path
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try ByteLevelBPE.write(model, to: out)  // an empty directory is fine
        XCTAssertThrowsError(try ByteLevelBPE.write(model, to: out)) { error in
            XCTAssertTrue("\(error)".contains("already exists; remove it, choose another --out, or pass --overwrite"), "\(error)")
        }
        try "stale".write(toFile: out + "/stale.txt", atomically: true, encoding: .utf8)
        try ByteLevelBPE.write(model, to: out, overwrite: true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/stale.txt"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["out"])
        // A file where the parent directory should be: nothing is written.
        let blocked = directory.appendingPathComponent("file").path
        try "x".write(toFile: blocked, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ByteLevelBPE.write(model, to: blocked + "/out"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(), ["file", "out"])
    }

    /// Bad input and sizes: an error naming the file or the smallest size.
    func testErrorsNameTheProblem() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        defer { try? FileManager.default.removeItem(at: directory) }
        let binary = directory.appendingPathComponent("binary.txt").path
        try Foundation.Data([0x61, 0x62, 0x0A, 0xFF, 0xFE, 0x0A]).write(to: URL(fileURLWithPath: binary))
        var trainer = ByteLevelBPETrainer()
        XCTAssertThrowsError(try trainer.add(contentsOfFiles: [binary])) { error in
            XCTAssertEqual(error as? ByteLevelBPETrainerError, .notUTF8(path: binary))
        }
        XCTAssertThrowsError(try trainer.add(contentsOfFiles: [directory.appendingPathComponent("missing.txt").path])) { error in
            XCTAssertTrue("\(error)".contains("missing.txt"), "\(error)")
        }
        XCTAssertThrowsError(try trainer.learn(vocabularySize: 1000)) { error in
            XCTAssertEqual(error as? ByteLevelBPETrainerError, .emptyCorpus)
        }
        trainer.add(text: "hello hello")
        XCTAssertThrowsError(try trainer.learn(vocabularySize: 257)) { error in
            XCTAssertTrue("\(error)".contains("ask for at least 258"), "\(error)")
        }
        XCTAssertEqual(try trainer.learn(vocabularySize: 258).tokens.count, 258)
    }
}
