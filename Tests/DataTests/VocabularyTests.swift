import Crypto
import Data
import Foundation
import XCTest

final class VocabularyTests: XCTestCase {
    private func temporaryFile(_ contents: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vocab-\(UUID().uuidString).txt")
        try Foundation.Data(contents.utf8).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    private let specials = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"

    func testBertBaseUncasedSpecialTokensAndCount() throws {
        let vocabulary = try TokenizerFixtures.bertVocabulary()
        XCTAssertEqual(vocabulary.count, 30522)
        XCTAssertEqual([vocabulary.padID, vocabulary.unknownID, vocabulary.classifierID, vocabulary.separatorID,
                        vocabulary.maskID], [0, 100, 101, 102, 103])
        XCTAssertEqual(vocabulary.token(for: 1), "[unused0]")
        XCTAssertEqual(vocabulary.id(for: "the"), 1996)
        XCTAssertEqual(vocabulary.id(for: "##ing"), 2075)
        XCTAssertNil(vocabulary.id(for: "the quick"))
        XCTAssertNil(vocabulary.id(for: ""))
    }

    func testFingerprintIsSHA256OfTheFileLines() throws {
        let vocabulary = try TokenizerFixtures.bertVocabulary()
        // The file is the tokens joined by "\n" plus a final "\n".
        var bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: TestPaths.vocabulary))
        XCTAssertEqual(bytes.last, UInt8(ascii: "\n"))
        bytes.removeLast()
        let expected = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(vocabulary.fingerprint, expected)
    }

    func testLinesEndLikePythonTextMode() throws {
        let path = try temporaryFile("[PAD]\r\n[UNK]\r[CLS]\n\n[SEP]\r\n[MASK]\nlast")
        let vocabulary = try Vocabulary(contentsOfFile: path)
        XCTAssertEqual(vocabulary.tokens, ["[PAD]", "[UNK]", "[CLS]", "", "[SEP]", "[MASK]", "last"])
        XCTAssertEqual(vocabulary.separatorID, 4)
    }

    func testTokensAreComparedScalarByScalar() throws {
        let vocabulary = try Vocabulary(tokens: Vocabulary.specialTokens + ["caf\u{E9}", "cafe\u{301}"])
        XCTAssertEqual(vocabulary.id(for: "caf\u{E9}"), 5)
        XCTAssertEqual(vocabulary.id(for: "cafe\u{301}"), 6)
    }

    func testLaterDuplicateWinsLikeReference() throws {
        let vocabulary = try Vocabulary(tokens: Vocabulary.specialTokens + ["a", "b", "a"])
        XCTAssertEqual(vocabulary.id(for: "a"), 7)
        XCTAssertEqual(vocabulary.token(for: 5), "a")
    }

    func testMissingFileErrorNamesTheFile() {
        let path = "/nonexistent/dir/vocab.txt"
        XCTAssertThrowsError(try Vocabulary(contentsOfFile: path)) { error in
            XCTAssertTrue("\(error)".contains(path), "\(error)")
            XCTAssertTrue(error.localizedDescription.contains(path), error.localizedDescription)
        }
    }

    func testMissingSpecialTokenIsAnError() throws {
        let path = try temporaryFile("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
        XCTAssertThrowsError(try Vocabulary(contentsOfFile: path)) { error in
            XCTAssertEqual(error as? VocabularyError, .missingSpecialToken(path: path, token: "[MASK]"))
            XCTAssertTrue("\(error)".contains("[MASK]") && "\(error)".contains(path), "\(error)")
        }
        XCTAssertThrowsError(try Vocabulary(tokens: [])) { error in
            XCTAssertEqual(error as? VocabularyError, .empty(path: nil))
        }
    }

    func testInvalidUTF8IsAnError() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vocab-\(UUID().uuidString).txt")
        try Foundation.Data(specials.utf8 + [0xFF, 0xFE, 0x0A]).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        XCTAssertThrowsError(try Vocabulary(contentsOfFile: url.path)) { error in
            XCTAssertEqual(error as? VocabularyError, .notUTF8(path: url.path))
        }
    }

    func testWriteThenReadRoundTrips() throws {
        let original = try Vocabulary(tokens: Vocabulary.specialTokens + ["x", "##y", "\u{4E2D}"])
        let path = try temporaryFile("")
        try original.write(toFile: path)
        let reread = try Vocabulary(contentsOfFile: path)
        XCTAssertEqual(reread.tokens, original.tokens)
        XCTAssertEqual(reread.fingerprint, original.fingerprint)
    }
}
