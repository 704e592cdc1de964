import Crypto
import Data
import Foundation
import XCTest

/// The tokenizer fixtures and the corpora their digests cover.
enum TokenizerFixtures {
    static let directory = TestPaths.repositoryRoot.appendingPathComponent("Tests/DataTests/Fixtures/tokenizer")

    static func bertVocabulary() throws -> Vocabulary {
        try Vocabulary(contentsOfFile: TestPaths.vocabulary)
    }

    /// Corpus files and the digests of the reference tokenizer's output over them.
    struct Corpora {
        let digests: URL
        /// The directory the digests' paths are relative to.
        let root: URL
        /// Every file the digests must cover, relative to `root`.
        let files: [String]
    }

    /// The repository's own corpora: the default, what a fresh clone tests.
    static func repositoryCorpora() throws -> Corpora {
        let excerpts = "Tests/DataTests/Fixtures/corpora"
        return Corpora(
            digests: directory.appendingPathComponent("corpus-digests.json"), root: TestPaths.repositoryRoot,
            files: ["corpus/kjv.txt"] + (try files(in: ["\(excerpts)/python-docs", "\(excerpts)/zh-handbook"],
                                                    under: TestPaths.repositoryRoot)))
    }

    /// Set by `.ci/run` where the whole corpora exist (`../shared/corpora`): the same check over all of them.
    static let sharedCorporaVariable = "SWIFTBERT_SHARED_CORPORA"

    /// The whole corpora named by `SWIFTBERT_SHARED_CORPORA`, or nil when it is not set.
    static func sharedCorpora() throws -> Corpora? {
        guard let path = ProcessInfo.processInfo.environment[sharedCorporaVariable] else { return nil }
        let root = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CorpusFixtureError(
                "\(sharedCorporaVariable)=\(path) is not a directory: point it at ../shared/corpora or unset it")
        }
        return Corpora(
            digests: directory.appendingPathComponent("shared-corpus-digests.json"), root: root,
            files: ["kjv/kjv-chapters.txt"] + (try files(in: ["python-docs", "zh-handbook"], under: root)))
    }

    private static func files(in folders: [String], under root: URL) throws -> [String] {
        try folders.flatMap { folder in
            try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(folder).path)
                .filter { $0.hasSuffix(".txt") }.sorted().map { "\(folder)/\($0)" }
        }
    }
}

struct CorpusFixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Compares the tokenizer with Hugging Face's pure-Python BERT tokenizer, through fixtures written by
/// scripts/make_tokenizer_fixtures.py.
final class TokenizerReferenceTests: XCTestCase {
    private struct HardCases: Decodable {
        struct Expected: Decodable {
            let basic: [String]
            let tokens: [String]
            let ids: [Int32]
        }
        struct Case: Decodable {
            let text: String
            let uncased: Expected
            let cased: Expected
        }
        let cases: [Case]
    }

    private struct CorpusDigests: Decodable {
        struct File: Decodable {
            let path: String
            let sha256: String
            let lines: Int
            /// Per block: uncased ids, cased ids, cased basic tokens.
            let blocks: [[String]]
        }
        let blockLines: Int
        let files: [File]
    }

    /// Strings compared scalar by scalar (Swift's `==` would equate canonically equivalent strings).
    private func scalars(_ strings: [String]) -> [[UInt32]] {
        strings.map { $0.unicodeScalars.map(\.value) }
    }

    private func describe(_ text: String) -> String {
        text.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 ? String($0) : String(format: "\\u{%X}", $0.value) }
            .joined()
    }

    func testHardCasesMatchReferenceTokenizer() throws {
        let data = try Foundation.Data(contentsOf: TokenizerFixtures.directory.appendingPathComponent("hard-cases.json"))
        let fixture = try JSONDecoder().decode(HardCases.self, from: data)
        XCTAssertGreaterThan(fixture.cases.count, 50)
        let vocabulary = try TokenizerFixtures.bertVocabulary()
        for (lowercase, name) in [(true, "uncased"), (false, "cased")] {
            let tokenizer = BertTokenizer(vocabulary: vocabulary, lowercase: lowercase)
            for testCase in fixture.cases {
                let expected = lowercase ? testCase.uncased : testCase.cased
                let text = describe(testCase.text)
                XCTAssertEqual(scalars(tokenizer.basicTokenize(testCase.text)), scalars(expected.basic),
                               "\(name) basic tokens of \"\(text)\": \(tokenizer.basicTokenize(testCase.text))")
                XCTAssertEqual(scalars(tokenizer.tokenize(testCase.text)), scalars(expected.tokens),
                               "\(name) WordPieces of \"\(text)\"")
                XCTAssertEqual(tokenizer.encode(testCase.text), expected.ids, "\(name) ids of \"\(text)\"")
            }
        }
    }

    private struct RandomCases: Decodable {
        struct Case: Decodable {
            let text: String
            let uncased: [Int32]
            let cased: [Int32]
            let casedBasic: [String]
        }
        let cases: [Case]
    }

    /// Random strings of characters the tokenizer treats specially, and of any code point.
    func testRandomTextsMatchReferenceTokenizer() throws {
        let data = try Foundation.Data(
            contentsOf: TokenizerFixtures.directory.appendingPathComponent("random-cases.json"))
        let fixture = try JSONDecoder().decode(RandomCases.self, from: data)
        XCTAssertGreaterThan(fixture.cases.count, 1000)
        let vocabulary = try TokenizerFixtures.bertVocabulary()
        let uncased = BertTokenizer(vocabulary: vocabulary, lowercase: true)
        let cased = BertTokenizer(vocabulary: vocabulary, lowercase: false)
        var failures: [String] = []
        for testCase in fixture.cases {
            if uncased.encode(testCase.text) != testCase.uncased { failures.append("uncased \"\(describe(testCase.text))\"") }
            if cased.encode(testCase.text) != testCase.cased { failures.append("cased \"\(describe(testCase.text))\"") }
            if scalars(cased.basicTokenize(testCase.text)) != scalars(testCase.casedBasic) {
                failures.append("cased basic tokens \"\(describe(testCase.text))\"")
            }
        }
        XCTAssertEqual(failures, [], "\(failures.count) mismatches, first: \(failures.prefix(10))")
    }

    /// Every line of every corpus file, uncased and cased, against per-block digests of the reference:
    /// the repository's corpora (English and Chinese), or with `SWIFTBERT_SHARED_CORPORA` the whole
    /// corpora of `../shared` (`.ci/run` adds that run where they exist).
    func testCorporaMatchReferenceTokenizer() throws {
        let corpora = try TokenizerFixtures.sharedCorpora() ?? TokenizerFixtures.repositoryCorpora()
        print("corpora: \(corpora.files.count) files under \(corpora.root.path), digests \(corpora.digests.lastPathComponent)")
        let data = try Foundation.Data(contentsOf: corpora.digests)
        let fixture = try JSONDecoder().decode(CorpusDigests.self, from: data)
        // Every corpus file has digests, and no digests are left without their file.
        XCTAssertEqual(fixture.files.map(\.path), corpora.files,
                       "regenerate with scripts/make_tokenizer_fixtures.py --fixtures (or --shared-digests)")
        XCTAssertTrue(corpora.files.contains { $0.contains("zh-handbook/") }, "the corpora include Chinese text")
        let vocabulary = try TokenizerFixtures.bertVocabulary()
        let uncased = BertTokenizer(vocabulary: vocabulary, lowercase: true)
        let cased = BertTokenizer(vocabulary: vocabulary, lowercase: false)
        var failures: [String] = []
        var lineCount = 0
        var byteCount = 0
        let start = Date()
        for file in fixture.files {
            let url = corpora.root.appendingPathComponent(file.path)
            let bytes = try Foundation.Data(contentsOf: url)
            let digest = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
            guard digest == file.sha256 else {
                failures.append("\(file.path) differs from the file the fixtures were made from: "
                    + "run scripts/make_tokenizer_fixtures.py --fixtures (or --shared-digests)")
                continue
            }
            byteCount += bytes.count
            let lines = String(decoding: bytes, as: UTF8.self)
                .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            XCTAssertEqual(lines.count, file.lines, "line count of \(file.path)")
            lineCount += lines.count
            var uncasedIDs: [Int32] = []
            var casedIDs: [Int32] = []
            for (blockIndex, expected) in file.blocks.enumerated() {
                let first = blockIndex * fixture.blockLines
                let block = lines[first..<min(lines.count, first + fixture.blockLines)]
                var uncasedHash = SHA256()
                var casedHash = SHA256()
                var basicHash = SHA256()
                for line in block {
                    uncasedIDs.removeAll(keepingCapacity: true)
                    uncased.encode(line, into: &uncasedIDs)
                    uncasedIDs.append(-1)
                    uncasedIDs.withUnsafeBytes { uncasedHash.update(bufferPointer: $0) }
                    casedIDs.removeAll(keepingCapacity: true)
                    cased.encode(line, into: &casedIDs)
                    casedIDs.append(-1)
                    casedIDs.withUnsafeBytes { casedHash.update(bufferPointer: $0) }
                    basicHash.update(data: Array((cased.basicTokenize(line).joined(separator: " ") + "\n").utf8))
                }
                let found = [uncasedHash, casedHash, basicHash].map {
                    $0.finalize().map { String(format: "%02x", $0) }.joined()
                }
                for (kind, name) in ["uncased ids", "cased ids", "cased basic tokens"].enumerated()
                where found[kind] != expected[kind] {
                    failures.append("\(file.path) lines \(first + 1)-\(first + block.count): \(name) differ")
                }
            }
        }
        let seconds = Date().timeIntervalSince(start)
        print("tokenized \(lineCount) lines, \(byteCount) bytes, twice (uncased, cased) in "
            + String(format: "%.2f s", seconds))
        XCTAssertEqual(failures, [], "\(failures.count) mismatches, first: \(failures.prefix(10))")
    }
}
