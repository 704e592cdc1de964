import Data
import Foundation
import XCTest

final class PrepareTests: XCTestCase {
    /// The first `chapters` chapters of the KJV (Google format) in `directory`.
    func kjvExcerpt(chapters: Int, in directory: URL, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let text = try String(contentsOfFile: TestPaths.kjv, encoding: .utf8)
        let all = text.components(separatedBy: "\n\n")
        XCTAssertGreaterThanOrEqual(all.count, chapters, "chapters in \(TestPaths.kjv)", file: file, line: line)
        let excerpt = all.prefix(chapters).joined(separator: "\n\n")
        let path = directory.appendingPathComponent("kjv-excerpt.txt").path
        try excerpt.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func tokenizer() throws -> PreparationTokenizer {
        try PreparationTokenizer(vocabularyFile: TestPaths.vocabulary)
    }

    func settings(_ inputs: [String], out: URL) -> PrepareSettings {
        var settings = PrepareSettings(inputs: inputs, outputDirectory: out.path)
        settings.instances = InstanceSettings(maxSequenceLength: 64, shortSequenceProbability: 0.1, nextSentenceMode: .binary)
        settings.dupeFactor = 2
        settings.validationFraction = 0.1
        return settings
    }

    /// Files left in `directory` (temporary output directories included).
    func contents(_ directory: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).sorted()
    }

    func testPreparedShardsLoadAsMaskedBatches() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let input = try kjvExcerpt(chapters: 60, in: directory)
        let out = directory.appendingPathComponent("data")
        let manifest = try Preparer(settings: settings([input], out: out), tokenizer: tokenizer()).run()
        XCTAssertEqual(manifest.corpus.documents, 60)
        XCTAssertGreaterThan(manifest.validation.documents, 0)
        XCTAssertEqual(manifest.train.documents + manifest.validation.documents, 60)
        XCTAssertEqual(contents(directory), ["data", "kjv-excerpt.txt"], "no temporary directory left behind")

        let vocabulary = try Vocabulary(contentsOfFile: TestPaths.vocabulary)
        let dataset = try PretrainingDataset(directory: out.path, split: .train, expectedVocabularyFingerprint: vocabulary.fingerprint)
        XCTAssertEqual(dataset.count, manifest.train.instances)
        XCTAssertNoThrow(try dataset.verifyChecksums())
        let random = manifest.train.nspLabelCounts[1]
        assertShare(random, of: dataset.count, near: 0.5, slack: 0.05, "random-next share")

        let indices = Array(stride(from: 0, to: dataset.count, by: max(1, dataset.count / 50)))
        let batch = try dataset.batch(sampleIndices: indices, epoch: 0, seed: 1)
        let T = 64
        XCTAssertEqual(batch.sequenceCount, indices.count)
        XCTAssertEqual(batch.sequenceLength, T)
        XCTAssertEqual(batch.inputIDs.count, indices.count * T)
        XCTAssertEqual(batch.maskedPositions.count, batch.maskedLabels.count)
        let masked = Set(batch.maskedPositions.map(Int.init))
        for (b, index) in indices.enumerated() {
            let (shard, local) = dataset.location(of: index)
            let stored = shard.tokens(of: local).map { Int32(bitPattern: $0 & ShardFormat.tokenIDMask) }
            let a = Int(shard.segmentALengths[local])
            let row = b * T
            XCTAssertEqual(batch.inputIDs[row], vocabulary.classifierID)
            XCTAssertEqual(batch.inputIDs[row + a + 1], vocabulary.separatorID)
            XCTAssertEqual(Array(batch.attentionMask[row..<(row + T)]), Array(repeating: 1, count: stored.count) + Array(repeating: 0, count: T - stored.count))
            XCTAssertEqual(Array(batch.tokenTypeIDs[row..<(row + T)]),
                           Array(repeating: 0, count: a + 2) + Array(repeating: 1, count: stored.count - a - 2) + Array(repeating: 0, count: T - stored.count))
            XCTAssertTrue(batch.inputIDs[(row + stored.count)..<(row + T)].allSatisfy { $0 == vocabulary.padID })
            for t in 0..<stored.count where !masked.contains(row + t) {
                XCTAssertEqual(batch.inputIDs[row + t], stored[t])
            }
            XCTAssertEqual(batch.nspLabels[b], Int32(shard.nspLabels[local]))
        }
        for (position, label) in zip(batch.maskedPositions, batch.maskedLabels) {
            let b = Int(position) / T
            let (shard, local) = dataset.location(of: indices[b])
            XCTAssertEqual(label, Int32(bitPattern: shard.tokens(of: local)[Int(position) % T] & ShardFormat.tokenIDMask))
        }

        // A sample is masked the same way whatever batch (rank, micro-batch) it lands in.
        let alone = try dataset.batch(sampleIndices: [indices[3]], epoch: 0, seed: 1)
        XCTAssertEqual(alone.inputIDs, Array(batch.inputIDs[(3 * T)..<(4 * T)]))
        XCTAssertEqual(alone.maskedPositions.map { $0 + Int32(3 * T) },
                       batch.maskedPositions.filter { Int($0) / T == 3 })

        let validation = try PretrainingDataset(directory: out.path, split: .validation)
        XCTAssertEqual(validation.count, manifest.validation.instances)
        XCTAssertGreaterThan(validation.count, 0)
    }

    func testOutputDoesNotDependOnThreadCountAcrossChunks() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let input = try kjvExcerpt(chapters: 336, in: directory)
        let inputBytes = try FileManager.default.attributesOfItem(atPath: input)[.size] as? Int ?? 0
        var shardHashes: [[String]] = []
        for threads in [1, 2, 3] {
            var s = settings([input], out: directory.appendingPathComponent("data-\(threads)"))
            s.workerCount = threads
            s.memoryLimitBytes = 8 << 20   // 1 MB chunks: several chunks, the random-next pool spans two
            s.shardBytes = 256 << 10       // several shards
            XCTAssertGreaterThan(inputBytes, s.chunkBytes, "the input spans more than one chunk")
            let manifest = try Preparer(settings: s, tokenizer: tokenizer()).run()
            XCTAssertGreaterThan(manifest.train.shards.count, 1)
            shardHashes.append((manifest.train.shards + manifest.validation.shards).map(\.sha256))
        }
        XCTAssertEqual(shardHashes[0], shardHashes[1])
        XCTAssertEqual(shardHashes[0], shardHashes[2])
    }

    func testDirectoryOfPlainDocumentsIncludingChinese() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        // 20 pages of the handbook: a directory of documents, mixed Chinese and English.
        let input = directory.appendingPathComponent("zh")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: false)
        let pages = try FileManager.default.contentsOfDirectory(atPath: TestPaths.zhHandbook).sorted().prefix(20)
        for page in pages {
            try FileManager.default.copyItem(atPath: (TestPaths.zhHandbook as NSString).appendingPathComponent(page),
                                             toPath: input.appendingPathComponent(page).path)
        }
        let out = directory.appendingPathComponent("data")
        var s = settings([input.path], out: out)
        s.instances.nextSentenceMode = .threeWay
        s.masking.wholeWordMasking = true
        let manifest = try Preparer(settings: s, tokenizer: tokenizer()).run()
        XCTAssertEqual(manifest.corpus.files, 20)
        XCTAssertEqual(manifest.train.nspLabelCounts.count, 3)
        for count in manifest.train.nspLabelCounts {
            assertShare(count, of: manifest.train.instances, near: 1.0 / 3.0, slack: 0.05, "three-way share")
        }
        let dataset = try PretrainingDataset(directory: out.path)
        let stats = try DatasetStatistics(dataset: dataset, seed: 3)
        XCTAssertEqual(stats.instances, manifest.train.instances)
        XCTAssertEqual(stats.tokens, manifest.train.tokens)
        // Whole-word groups that do not fit are skipped, so the rate may fall a little short of 15%.
        XCTAssertEqual(stats.maskRate, 0.15, accuracy: 0.01)

        // Real WordPieces: a word ("##" continuations after their start) is masked whole or not at all.
        let T = dataset.sequenceLength
        let indices = Array(0..<min(dataset.count, 500))
        let batch = try dataset.batch(sampleIndices: indices, epoch: 2, seed: 5)
        let masked = Set(batch.maskedPositions.map(Int.init))
        var splitWords = 0, maskedMultiPieceWords = 0
        for (b, index) in indices.enumerated() {
            let (shard, local) = dataset.location(of: index)
            let tokens = shard.tokens(of: local)
            let separator = Int(shard.segmentALengths[local]) + 1
            var t = 1
            while t < tokens.count - 1 {
                if t == separator { t += 1; continue }
                var end = t + 1
                while end < tokens.count - 1 && end != separator && tokens[end] & ShardFormat.continuationBit != 0 { end += 1 }
                let inWord = (t..<end).filter { masked.contains(b * T + $0) }.count
                if inWord != 0 && inWord != end - t { splitWords += 1 }
                if inWord > 1 { maskedMultiPieceWords += 1 }
                t = end
            }
        }
        XCTAssertEqual(splitWords, 0)
        XCTAssertGreaterThan(maskedMultiPieceWords, 10)
    }

    // MARK: - Bad input

    func assertFails(_ settings: PrepareSettings, in directory: URL, expectedFiles: [String],
                     file: StaticString = #filePath, line: UInt = #line, _ check: (Error) -> Void) throws {
        let tokenizer = try tokenizer()
        XCTAssertThrowsError(try Preparer(settings: settings, tokenizer: tokenizer).run(), file: file, line: line, check)
        XCTAssertEqual(contents(directory), expectedFiles, "no output or temporary directory left behind", file: file, line: line)
    }

    func testEmptyCorpusFails() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let input = directory.appendingPathComponent("empty.txt")
        try "\n  \n\n".write(to: input, atomically: true, encoding: .utf8)
        try assertFails(settings([input.path], out: directory.appendingPathComponent("data")),
                        in: directory, expectedFiles: ["empty.txt"]) { error in
            XCTAssertEqual(error as? DataError, .emptyCorpus(paths: [input.path]))
            XCTAssertTrue("\(error)".contains(input.path))
        }
    }

    func testSingleDocumentWithOneSentence() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let input = directory.appendingPathComponent("one.txt")
        try "In the beginning God created the heaven and the earth.\n".write(to: input, atomically: true, encoding: .utf8)
        try assertFails(settings([input.path], out: directory.appendingPathComponent("data")),
                        in: directory, expectedFiles: ["one.txt"]) { error in
            XCTAssertEqual(error as? DataError, .tooFewDocuments(paths: [input.path], documentCount: 1))
            XCTAssertTrue("\(error)".contains("--nsp none"))
        }
        // Without NSP the one sentence is one instance.
        var s = settings([input.path], out: directory.appendingPathComponent("data"))
        s.instances.nextSentenceMode = .none
        s.validationFraction = 0
        let manifest = try Preparer(settings: s, tokenizer: tokenizer()).run()
        XCTAssertEqual(manifest.train.instances, s.dupeFactor, "one instance per duplicate")
    }

    func testNonUTF8InputFailsNamingFileAndLine() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let input = directory.appendingPathComponent("latin1.txt")
        var bytes = Data("First sentence.\nSecond.\n\nOther document.\n".utf8)
        bytes.append(contentsOf: [0x43, 0x61, 0x66, 0xE9, 0x0A])   // "Café" in Latin-1, line 5
        try bytes.write(to: input)
        try assertFails(settings([input.path], out: directory.appendingPathComponent("data")),
                        in: directory, expectedFiles: ["latin1.txt"]) { error in
            XCTAssertEqual(error as? DataError, .invalidUTF8(path: input.path, line: 5))
        }
    }

    func testMissingVocabularyFailsNamingTheFile() throws {
        XCTAssertThrowsError(try PreparationTokenizer(vocabularyFile: "/nonexistent/vocab.txt")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/vocab.txt"), "\(error)")
        }
    }

    func testExistingOutputIsNotOverwrittenWithoutPermission() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let input = try kjvExcerpt(chapters: 5, in: directory)
        let out = directory.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: false)
        try "keep".write(to: out.appendingPathComponent("precious.txt"), atomically: true, encoding: .utf8)
        try assertFails(settings([input], out: out), in: directory, expectedFiles: ["data", "kjv-excerpt.txt"]) { error in
            XCTAssertTrue("\(error)".contains("--overwrite"))
        }
        XCTAssertEqual(contents(out), ["precious.txt"])
        var s = settings([input], out: out)
        s.overwrite = true
        try Preparer(settings: s, tokenizer: tokenizer()).run()
        XCTAssertTrue(contents(out).contains("manifest.json"))
        XCTAssertEqual(contents(directory), ["data", "kjv-excerpt.txt"])
    }

    func testDatasetRejectsTruncatedShardAndOtherVocabulary() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let input = try kjvExcerpt(chapters: 10, in: directory)
        let out = directory.appendingPathComponent("data")
        let manifest = try Preparer(settings: settings([input], out: out), tokenizer: tokenizer()).run()

        let otherVocabulary = try Vocabulary(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the"])
        XCTAssertThrowsError(try PretrainingDataset(directory: out.path, expectedVocabularyFingerprint: otherVocabulary.fingerprint)) { error in
            guard case .vocabularyMismatch(let path, _, _)? = error as? DataError else { return XCTFail("\(error)") }
            XCTAssertTrue(path.hasPrefix(out.path))
        }

        let shardPath = out.appendingPathComponent(manifest.train.shards[0].file).path
        let bytes = try Data(contentsOf: URL(fileURLWithPath: shardPath))
        try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: shardPath))
        XCTAssertThrowsError(try PretrainingDataset(directory: out.path)) { error in
            XCTAssertTrue("\(error)".contains(shardPath), "\(error)")
            XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
        }
        try FileManager.default.removeItem(atPath: out.appendingPathComponent("manifest.json").path)
        XCTAssertThrowsError(try PretrainingDataset(directory: out.path)) { error in
            XCTAssertTrue("\(error)".contains("manifest.json"), "\(error)")
        }
    }
}
