import Crypto
import Data
import Foundation
import XCTest

/// GPT-2's byte-level BPE against the `tokenizers` library, on the fixtures of
/// scripts/make_bpe_fixtures.py (a tokenizer it trained on the repository's corpora, and what the
/// library makes of hard cases and of every corpus line).
final class ByteLevelBPETests: XCTestCase {
    static let directory = TestPaths.repositoryRoot.appendingPathComponent("Tests/DataTests/Fixtures/bpe")

    struct Cases: Decodable {
        struct Case: Decodable {
            let text: String
            let ids: [Int32]
            let decoded: String
            let pre_tokens: [String]
        }
        struct ByteToken: Decodable {
            let byte: Int
            let id: Int32
            let decoded: [UInt8]
        }
        let cases: [Case]
        let bytes: [ByteToken]
    }

    func cases() throws -> Cases {
        try JSONDecoder().decode(Cases.self, from: Foundation.Data(contentsOf: Self.directory.appendingPathComponent("cases.json")))
    }

    func tokenizer() throws -> ByteLevelBPE {
        try ByteLevelBPE.load(tokenizerJSON: Self.directory.appendingPathComponent("tokenizer.json").path)
    }

    /// Ids, decoded text and GPT-2's pre-tokens of each hard case: contractions, runs of whitespace,
    /// other scripts, emoji, the special token inside text, every code point 0-255, U+FFFD from
    /// invalid UTF-8.
    func testHardCasesMatchTokenizers() throws {
        let tokenizer = try tokenizer()
        let fixture = try cases()
        XCTAssertGreaterThan(fixture.cases.count, 50)
        for c in fixture.cases {
            XCTAssertEqual(tokenizer.encode(c.text), c.ids, "ids of \(c.text.debugDescription)")
            XCTAssertEqual(tokenizer.decode(c.ids), c.decoded, "decode of \(c.text.debugDescription)")
            var pieces: [String] = []
            ByteLevelPreTokenizer.forEachPreToken(in: Substring(c.text)) { pieces.append(ByteLevelBPE.spelling(of: $0)) }
            // tokenizers splits on the added token first; compare where the text has none.
            if !c.text.contains("<|endoftext|>") {
                XCTAssertEqual(pieces, c.pre_tokens, "pre-tokens of \(c.text.debugDescription)")
            }
        }
    }

    /// Every byte has a token that decodes to it (a lone byte of a multi-byte character to U+FFFD, as
    /// the library decodes).
    func testEveryByteValue() throws {
        let tokenizer = try tokenizer()
        let fixture = try cases()
        XCTAssertEqual(fixture.bytes.map(\.byte), Array(0...255))
        for token in fixture.bytes {
            XCTAssertEqual(tokenizer.id(ofSpelled: ByteLevelBPE.spelling(of: [UInt8(token.byte)])), token.id, "byte \(token.byte)")
            XCTAssertEqual(tokenizer.bytes(of: [token.id]), [UInt8(token.byte)])
            XCTAssertEqual(Array(tokenizer.decode([token.id]).utf8), token.decoded, "decode of byte \(token.byte)")
        }
        // Any byte string round-trips through the byte tokens.
        let all = (0...255).map { UInt8($0) }
        XCTAssertEqual(tokenizer.bytes(of: all.map { tokenizer.id(ofSpelled: ByteLevelBPE.spelling(of: [$0]))! }), all)
    }

    /// GPT-2's own file pair, vocab.json and merges.txt, is the same tokenizer.
    func testVocabularyAndMergesFilesGiveTheSameIds() throws {
        let pair = try ByteLevelBPE.load(
            vocabularyJSON: Self.directory.appendingPathComponent("vocab.json").path,
            merges: Self.directory.appendingPathComponent("merges.txt").path)
        for c in try cases().cases {
            XCTAssertEqual(pair.encode(c.text), c.ids, "ids of \(c.text.debugDescription)")
        }
    }

    /// Every line of every corpus file against per-block digests of the library's ids: the
    /// repository's corpora, or with `SWIFTBERT_SHARED_CORPORA` the whole of `../shared/corpora`.
    func testCorporaMatchTokenizers() throws {
        let shared = try TokenizerFixtures.sharedCorpora()
        let corpora = try shared ?? TokenizerFixtures.repositoryCorpora()
        let digests = Self.directory.appendingPathComponent(shared == nil ? "corpus-digests.json" : "shared-corpus-digests.json")
        struct Digests: Decodable {
            struct File: Decodable {
                let path: String
                let sha256: String
                let lines: Int
                let blocks: [String]
            }
            let blockLines: Int
            let files: [File]
        }
        let fixture = try JSONDecoder().decode(Digests.self, from: Foundation.Data(contentsOf: digests))
        XCTAssertEqual(fixture.files.map(\.path), corpora.files, "regenerate with scripts/make_bpe_fixtures.py")
        let tokenizer = try tokenizer()
        var failures: [String] = []
        var lineCount = 0
        let start = Date()
        for file in fixture.files {
            let bytes = try Foundation.Data(contentsOf: corpora.root.appendingPathComponent(file.path))
            guard SHA256.hash(data: bytes).map({ String(format: "%02x", $0) }).joined() == file.sha256 else {
                failures.append("\(file.path) differs from the file the fixtures were made from: run scripts/make_bpe_fixtures.py")
                continue
            }
            let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            XCTAssertEqual(lines.count, file.lines, file.path)
            lineCount += lines.count
            for (blockIndex, expected) in file.blocks.enumerated() {
                let first = blockIndex * fixture.blockLines
                var hash = SHA256()
                for line in lines[first..<min(lines.count, first + fixture.blockLines)] {
                    let ids = tokenizer.encode(String(line)) + [-1]
                    ids.withUnsafeBytes { hash.update(bufferPointer: $0) }
                }
                if hash.finalize().map({ String(format: "%02x", $0) }).joined() != expected {
                    failures.append("\(file.path) lines \(first + 1)-\(first + fixture.blockLines)")
                }
            }
        }
        print("byte-level BPE: \(lineCount) lines in " + String(format: "%.2f s", Date().timeIntervalSince(start)))
        XCTAssertEqual(failures, [], "\(failures.count) blocks differ, first: \(failures.prefix(10))")
    }

    /// Broken files: one error naming the file and what is wrong.
    func testBadFilesNameTheProblem() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("bpe-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let vocabulary = scratch.appendingPathComponent("vocab.json").path
        let merges = scratch.appendingPathComponent("merges.txt").path
        let bytes = (0...255).map { "\"\(ByteLevelBPE.spelling(of: [UInt8($0)]).unicodeScalars.map { String(format: "\\u%04x", $0.value) }.joined())\": \($0)" }
        try ("{" + bytes.joined(separator: ", ") + "}").write(toFile: vocabulary, atomically: true, encoding: .utf8)
        try "#version: 0.2\nt h\n".write(toFile: merges, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ByteLevelBPE.load(vocabularyJSON: vocabulary, merges: merges)) { error in
            XCTAssertTrue("\(error)".contains("merges.txt: merge 1 (t h) names a token the vocabulary lacks"), "\(error)")
        }
        try "#version: 0.2\nth\n".write(toFile: merges, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ByteLevelBPE.load(vocabularyJSON: vocabulary, merges: merges)) { error in
            XCTAssertTrue("\(error)".contains("line 2 \"th\" is not two tokens"), "\(error)")
        }
        try "{\"a\": 0}".write(toFile: vocabulary, atomically: true, encoding: .utf8)
        try "".write(toFile: merges, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ByteLevelBPE.load(vocabularyJSON: vocabulary, merges: merges)) { error in
            XCTAssertTrue("\(error)".contains("vocab.json: no token for the byte 0"), "\(error)")
        }
        var json = try String(contentsOf: Self.directory.appendingPathComponent("tokenizer.json"), encoding: .utf8)
        json = json.replacingOccurrences(of: "\"normalizer\": null", with: "\"normalizer\": {\"type\": \"NFC\"}")
        let edited = scratch.appendingPathComponent("tokenizer.json").path
        try json.write(toFile: edited, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ByteLevelBPE.load(tokenizerJSON: edited)) { error in
            XCTAssertTrue("\(error)".contains("\"normalizer\" is {\"type\":\"NFC\"}"), "\(error)")
        }
    }
}
