import Crypto
@testable import Data
import Foundation
import XCTest

/// `prepare --objective causal_lm`: documents encoded whole with GPT-2's byte-level BPE, each
/// followed by <|endoftext|>, packed per split into sequences of T tokens.
final class CausalPrepareTests: XCTestCase {
    static let bpe = TestPaths.repositoryRoot.appendingPathComponent("Tests/DataTests/Fixtures/bpe")
    static let tokenizerJSON = bpe.appendingPathComponent("tokenizer.json").path

    /// The first `chapters` chapters of the KJV, Google format (a chapter a document).
    func kjvExcerpt(chapters: Int, in directory: URL) throws -> (path: String, documents: [String]) {
        let text = try String(contentsOfFile: TestPaths.kjv, encoding: .utf8)
        let all = Array(text.components(separatedBy: "\n\n").prefix(chapters))
        let path = directory.appendingPathComponent("kjv-excerpt.txt").path
        try all.joined(separator: "\n\n").write(toFile: path, atomically: true, encoding: .utf8)
        // A document's text is its lines joined by line breaks (the corpus has no stray white space).
        let documents = all.map { $0.split(separator: "\n").map(String.init).joined(separator: "\n") }
        return (path, documents)
    }

    func settings(_ inputs: [String], out: URL, T: Int, threads: Int = 2) -> PrepareSettings {
        var settings = PrepareSettings(inputs: inputs, outputDirectory: out.path)
        settings.objective = .causalLM
        settings.instances = InstanceSettings(maxSequenceLength: T, shortSequenceProbability: 0, nextSentenceMode: .none)
        settings.validationFraction = 0.2
        settings.seed = 7
        settings.shardBytes = 1 << 16
        settings.workerCount = threads
        return settings
    }

    /// Every sequence of a split, in sample order, read the way a trainer reads them.
    func sequences(_ directory: URL, _ split: DataSplit) throws -> [[Int32]] {
        let dataset = try PretrainingDataset(directory: directory.path, split: split)
        return (0..<dataset.count).map { index in
            let (shard, local) = dataset.location(of: index)
            return shard.tokens(of: local).map { Int32(bitPattern: $0) }
        }
    }

    /// File name -> SHA-256 of every file in `directory`.
    func digests(_ directory: URL) throws -> [String: String] {
        var result: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            let data = try Foundation.Data(contentsOf: directory.appendingPathComponent(name))
            result[name] = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        }
        return result
    }

    func testSequencesConcatenateToEachSplitsDocumentsWithEndOfText() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let (input, documents) = try kjvExcerpt(chapters: 40, in: directory)
        let out = directory.appendingPathComponent("data")
        let T = 64
        let manifest = try Preparer(settings: settings([input], out: out, T: T), tokenizer: PreparationTokenizer(byteLevelBPE: Self.tokenizerJSON)).run()

        let bpe = try ByteLevelBPE.load(tokenizerJSON: Self.tokenizerJSON)
        let eos = try XCTUnwrap(bpe.id(ofSpelled: "<|endoftext|>"))
        var expected: [DataSplit: [Int32]] = [.train: [], .validation: []]
        var documentCounts: [DataSplit: Int] = [.train: 0, .validation: 0]
        var corpusTokens = 0
        for (index, text) in documents.enumerated() {
            let split: DataSplit = Preparer.isValidationDocument(index, seed: 7, validationFraction: 0.2) ? .validation : .train
            let ids = bpe.encode(text)
            corpusTokens += ids.count
            expected[split]! += ids + [eos]
            documentCounts[split]! += 1
        }
        XCTAssertGreaterThan(documentCounts[.validation]!, 0, "the test needs both splits")

        for split in DataSplit.allCases {
            let stream = expected[split]!
            let read = try sequences(out, split)
            let info = manifest.split(split)
            XCTAssertEqual(read.flatMap { $0 }, stream.count % T == 1 ? Array(stream.dropLast()) : stream, "\(split)")
            XCTAssertEqual(read.count, (stream.count + T - 2) / T, "\(split): sequences")
            for sequence in read.dropLast() { XCTAssertEqual(sequence.count, T, "\(split)") }
            XCTAssertTrue((2...T).contains(read.last!.count), "\(split): last sequence has \(read.last!.count) tokens")
            XCTAssertTrue(read.contains { $0.dropLast().contains(eos) }, "\(split): some sequence spans two documents")
            XCTAssertEqual(info.instances, read.count)
            XCTAssertEqual(info.tokens, read.reduce(0) { $0 + $1.count })
            XCTAssertEqual(info.documents, documentCounts[split])
            XCTAssertEqual(info.nspLabelCounts, [read.count])
            XCTAssertGreaterThan(info.shards.count, split == .train ? 1 : 0, "\(split): shards of 64 KB")
        }

        XCTAssertEqual(manifest.objective, .causalLM)
        XCTAssertEqual(manifest.vocabulary.endOfTextID, eos)
        XCTAssertEqual(manifest.vocabulary.padID, eos)
        XCTAssertEqual([manifest.vocabulary.unknownID, manifest.vocabulary.classifierID, manifest.vocabulary.separatorID,
                        manifest.vocabulary.maskID], [-1, -1, -1, -1])
        XCTAssertEqual(manifest.vocabulary.size, 1200)
        XCTAssertEqual(manifest.vocabulary.file, "tokenizer.json")
        XCTAssertEqual(manifest.vocabulary.fingerprint, bpe.fingerprint)
        XCTAssertFalse(manifest.vocabulary.lowercase)
        XCTAssertEqual(manifest.instances.maxSequenceLength, T)
        XCTAssertEqual(manifest.instances.nextSentenceMode, .none)
        XCTAssertEqual(manifest.corpus.documents, documents.count)
        XCTAssertEqual(manifest.corpus.tokens, corpusTokens)
        XCTAssertEqual(manifest.corpus.sentences, documents.reduce(0) { $0 + $1.split(separator: "\n").count })

        // What a reader sees: the manifest as written, the shards' records, the copied tokenizer.
        let loaded = try DatasetManifest.load(directory: out.path)
        XCTAssertEqual(loaded, manifest)
        let json = try String(contentsOf: out.appendingPathComponent("manifest.json"), encoding: .utf8)
        XCTAssertTrue(json.contains("\"objective\" : \"causal_lm\""), json)
        XCTAssertTrue(json.contains("\"eos_id\" : \(eos)"), json)
        let dataset = try PretrainingDataset(directory: out.path, split: .train)
        XCTAssertNoThrow(try dataset.verifyChecksums())
        for shard in dataset.shards {
            XCTAssertEqual(shard.header.sequenceLength, T)
            for i in 0..<shard.instanceCount {
                XCTAssertEqual(Int(shard.segmentALengths[i]), shard.tokens(of: i).count)
                XCTAssertEqual(shard.nspLabels[i], 0)
                XCTAssertNoThrow(try shard.checkRecord(i, vocabularySize: manifest.vocabulary.size, nspLabelCount: 1))
            }
        }
        XCTAssertEqual(try Foundation.Data(contentsOf: out.appendingPathComponent("tokenizer.json")),
                       try Foundation.Data(contentsOf: URL(fileURLWithPath: Self.tokenizerJSON)))
        XCTAssertThrowsError(try dataset.batch(sampleIndices: [0], epoch: 0, seed: 1), "causal data makes no masked batches") {
            XCTAssertTrue("\($0)".contains("causal_lm"), "\($0)")
        }
        // The records are whole sequences, which MLM's layout rejects.
        XCTAssertThrowsError(try Shard(path: dataset.shards[0].path)) {
            XCTAssertTrue("\($0)".contains("[CLS] and [SEP]"), "\($0)")
        }
    }

    /// Several chunks (3 MB of text, chunks of 2 MB) and a document cut in pieces (1.5 MB, pieces
    /// of at most 1 MB): still the same bytes on 1 thread and on 2.
    func testOutputIsTheSameForOneAndTwoThreads() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let documents = directory.appendingPathComponent("documents")
        try FileManager.default.createDirectory(at: documents, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestPaths.kjv, toPath: documents.appendingPathComponent("a-kjv.txt").path)
        try "  A short document,\r\n\r\nwith CRLF line ends.\r\n".write(
            to: documents.appendingPathComponent("b-short.txt"), atomically: true, encoding: .utf8)
        var outputs: [[String: String]] = []
        var manifests: [DatasetManifest] = []
        for threads in [1, 2] {
            let out = directory.appendingPathComponent("data-\(threads)")
            var s = settings([TestPaths.kjv, documents.path], out: out, T: 128, threads: threads)
            s.memoryLimitBytes = 8 << 20
            s.validationFraction = 0.05
            var reports: [PrepareProgress] = []
            manifests.append(try Preparer(settings: s, tokenizer: PreparationTokenizer(byteLevelBPE: Self.tokenizerJSON)).run {
                reports.append($0)
            })
            outputs.append(try digests(out))
            XCTAssertGreaterThan(reports.count, 1, "progress after each chunk")
            XCTAssertEqual(reports.last?.trainInstances, manifests.last?.train.instances)
            XCTAssertEqual(reports.last?.documents, manifests.last?.corpus.documents)
        }
        XCTAssertEqual(manifests[0].preparation.chunkBytes, 2 << 20)
        XCTAssertGreaterThan(manifests[0].corpus.bytes, manifests[0].preparation.chunkBytes)
        // 336 chapters, the KJV file as one document (cut in two pieces, packed as one), the short one.
        XCTAssertEqual(manifests[0].corpus.documents, 336 + 2)
        XCTAssertEqual(manifests[0], manifests[1])
        XCTAssertEqual(outputs[0], outputs[1])
        XCTAssertGreaterThan(outputs[0].keys.filter { $0.hasSuffix(".shard") }.count, 2)
    }

    func testVocabAndMergesGiveTheSameDataAsTokenizerJSON() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let (input, _) = try kjvExcerpt(chapters: 30, in: directory)
        let pair = directory.appendingPathComponent("gpt2-files")
        try FileManager.default.createDirectory(at: pair, withIntermediateDirectories: true)
        for name in ["vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(at: Self.bpe.appendingPathComponent(name), to: pair.appendingPathComponent(name))
        }
        let fromJSON = directory.appendingPathComponent("from-json"), fromPair = directory.appendingPathComponent("from-pair")
        let a = try Preparer(settings: settings([input], out: fromJSON, T: 50), tokenizer: PreparationTokenizer(byteLevelBPE: Self.tokenizerJSON)).run()
        let b = try Preparer(settings: settings([input], out: fromPair, T: 50), tokenizer: PreparationTokenizer(byteLevelBPE: pair.path)).run()

        XCTAssertEqual(a.vocabulary.fingerprint, b.vocabulary.fingerprint)
        XCTAssertEqual(b.vocabulary.file, "vocab.json")
        var bAsA = b
        bAsA.vocabulary.file = a.vocabulary.file
        XCTAssertEqual(bAsA, a, "the manifests differ only in the tokenizer file")
        let (x, y) = (try digests(fromJSON), try digests(fromPair))
        XCTAssertEqual(Set(x.keys).subtracting(y.keys), ["tokenizer.json"])
        XCTAssertEqual(Set(y.keys).subtracting(x.keys), ["vocab.json", "merges.txt"])
        let shards = x.keys.filter { $0.hasSuffix(".shard") }
        XCTAssertFalse(shards.isEmpty)
        for name in shards { XCTAssertEqual(x[name], y[name], "\(name) is byte-identical") }
        XCTAssertNoThrow(try PretrainingDataset(directory: fromPair.path, split: .train))
    }

    func testFingerprintDependsOnTheMerges() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let merges = try String(contentsOf: Self.bpe.appendingPathComponent("merges.txt"), encoding: .utf8)
        var lines = merges.split(separator: "\n", omittingEmptySubsequences: false)
        lines.swapAt(1, 2)  // two merges trade ranks
        try lines.joined(separator: "\n").write(to: directory.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(at: Self.bpe.appendingPathComponent("vocab.json"), to: directory.appendingPathComponent("vocab.json"))
        let original = try PreparationTokenizer(byteLevelBPE: Self.tokenizerJSON)
        let swapped = try PreparationTokenizer(byteLevelBPE: directory.path)
        XCTAssertNotEqual(original.fingerprint, swapped.fingerprint)
        XCTAssertEqual(original.fingerprint.count, 64)
    }

    func testTokenizerWithoutEndOfTextIsRefusedNamingTheFile() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        var root = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Foundation.Data(contentsOf: URL(fileURLWithPath: Self.tokenizerJSON))) as? [String: Any])
        var model = try XCTUnwrap(root["model"] as? [String: Any])
        var vocabulary = try XCTUnwrap(model["vocab"] as? [String: Any])
        vocabulary["<|other|>"] = vocabulary.removeValue(forKey: "<|endoftext|>")
        model["vocab"] = vocabulary
        root["model"] = model
        root["added_tokens"] = [Any]()
        let path = directory.appendingPathComponent("tokenizer.json").path
        try JSONSerialization.data(withJSONObject: root).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try PreparationTokenizer(byteLevelBPE: path)) { error in
            XCTAssertTrue("\(error)".contains(path) && "\(error)".contains("no <|endoftext|>"), "\(error)")
        }
        XCTAssertThrowsError(try PreparationTokenizer(byteLevelBPE: directory.path)) { error in
            XCTAssertTrue("\(error)".contains(path), "a directory's tokenizer.json is named: \(error)")
        }
        XCTAssertThrowsError(try PreparationTokenizer(byteLevelBPE: Self.bpe.appendingPathComponent("vocab.json").path)) { error in
            XCTAssertTrue("\(error)".contains("give the directory"), "\(error)")
        }
    }

    func testFailedPreparationLeavesNothingBehind() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let empty = directory.appendingPathComponent("empty.txt").path
        try "\n\n  \n".write(toFile: empty, atomically: true, encoding: .utf8)
        let out = directory.appendingPathComponent("data")
        XCTAssertThrowsError(try Preparer(settings: settings([empty], out: out, T: 16), tokenizer: PreparationTokenizer(byteLevelBPE: Self.tokenizerJSON)).run()) {
            XCTAssertEqual($0 as? DataError, .emptyCorpus(paths: [empty]))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["empty.txt"])
    }

    /// The documents format keeps a file's text as is for a causal LM; a document cut at
    /// `maxDocumentBytes` comes back in pieces that concatenate to it, the later ones marked.
    func testReaderKeepsTheTextAndMarksThePiecesOfACutDocument() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let documents = directory.appendingPathComponent("documents")
        try FileManager.default.createDirectory(at: documents, withIntermediateDirectories: true)
        let lines = (0..<40).map { "  line \($0) of the first document\t" }
        let first = lines[0..<20].joined(separator: "\n") + "\n\n\n" + lines[20...].joined(separator: "\r\n")
        try first.write(to: documents.appendingPathComponent("a.txt"), atomically: true, encoding: .utf8)
        try "second\n".write(to: documents.appendingPathComponent("b.txt"), atomically: true, encoding: .utf8)

        let whole = try CorpusReader(inputs: [documents.path], format: .auto, keepsText: true)
        XCTAssertEqual(try whole.next()?.wholeText, first.replacingOccurrences(of: "\r\n", with: "\n"))
        XCTAssertEqual(try whole.next()?.wholeText, "second\n")

        let cut = try CorpusReader(inputs: [documents.path], format: .auto, maxDocumentBytes: 300, keepsText: true)
        var pieces: [RawDocument] = []
        while let document = try cut.next() { pieces.append(document) }
        XCTAssertGreaterThan(pieces.count, 3)
        XCTAssertEqual(pieces.dropLast().map(\.wholeText).joined(), first.replacingOccurrences(of: "\r\n", with: "\n"))
        XCTAssertEqual(pieces.map(\.continuesPrevious), [false] + Array(repeating: true, count: pieces.count - 2) + [false])

        // Google format: the lines of a cut document continue across the cut; a blank line ends it.
        let google = directory.appendingPathComponent("google.txt")
        try (lines.joined(separator: "\n") + "\n\nnext document\n").write(to: google, atomically: true, encoding: .utf8)
        let reader = try CorpusReader(inputs: [google.path], format: .google, maxDocumentBytes: 300, keepsText: true)
        var googlePieces: [RawDocument] = []
        while let document = try reader.next() { googlePieces.append(document) }
        XCTAssertEqual(googlePieces.last?.texts, ["next document"])
        XCTAssertEqual(googlePieces.last?.continuesPrevious, false)
        XCTAssertEqual(googlePieces.dropLast().map(\.continuesPrevious), [false] + Array(repeating: true, count: googlePieces.count - 2))
        XCTAssertEqual(googlePieces.dropLast().map(\.wholeText).joined(),
                       lines.map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: "\n"))
    }

    func testManifestWithoutObjectiveOpensAsMLM() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let (input, _) = try kjvExcerpt(chapters: 12, in: directory)
        let out = directory.appendingPathComponent("data")
        var s = PrepareSettings(inputs: [input], outputDirectory: out.path)
        s.instances = InstanceSettings(maxSequenceLength: 64, shortSequenceProbability: 0.1, nextSentenceMode: .binary)
        s.dupeFactor = 1
        s.validationFraction = 0
        try Preparer(settings: s, tokenizer: PreparationTokenizer(vocabularyFile: TestPaths.vocabulary)).run()
        let path = out.appendingPathComponent("manifest.json")
        var root = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: path)) as? [String: Any])
        XCTAssertEqual(root["objective"] as? String, "mlm")
        XCTAssertNil((root["vocabulary"] as? [String: Any])?["eos_id"], "MLM data has no end-of-text id")

        root["objective"] = nil
        try JSONSerialization.data(withJSONObject: root).write(to: path)
        let dataset = try PretrainingDataset(directory: out.path, split: .train)
        XCTAssertEqual(dataset.manifest.objective, .mlm)
        XCTAssertNoThrow(try dataset.batch(sampleIndices: [0, 1], epoch: 0, seed: 1))

        root["objective"] = "gpt"
        try JSONSerialization.data(withJSONObject: root).write(to: path)
        XCTAssertThrowsError(try DatasetManifest.load(directory: out.path)) {
            XCTAssertTrue("\($0)".contains("objective") && "\($0)".contains("causal_lm"), "\($0)")
        }
        // causal_lm needs an end-of-text id and no NSP.
        root["objective"] = "causal_lm"
        try JSONSerialization.data(withJSONObject: root).write(to: path)
        XCTAssertThrowsError(try DatasetManifest.load(directory: out.path)) {
            XCTAssertTrue("\($0)".contains("vocabulary.eos_id is missing"), "\($0)")
        }
    }
}
