import Data
import Foundation
import XCTest

final class VocabularyBuilderTests: XCTestCase {
    private static let kjvPath = TestPaths.kjv
    private static let zhDirectory = URL(fileURLWithPath: TestPaths.zhHandbook)

    /// Fewer tokens than the corpus has distinct words (about 6,800 in the bundled excerpt), so that the
    /// builder has to choose.
    private static let kjvVocabularySize = 4000

    /// The KJV learned to `kjvVocabularySize` tokens once, shared by the tests that only read it.
    private static let kjvVocabulary: Result<(Vocabulary, TimeInterval), Error> = Result {
        let start = Date()
        var builder = VocabularyBuilder()
        try builder.add(contentsOfFile: kjvPath)
        let vocabulary = try builder.build(size: kjvVocabularySize)
        return (vocabulary, Date().timeIntervalSince(start))
    }

    private func zhFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: Self.zhDirectory.path).sorted()
            .map { Self.zhDirectory.appendingPathComponent($0).path }
    }

    func testReservedTokensHaveBertBaseUncasedIDs() throws {
        let (vocabulary, seconds) = try Self.kjvVocabulary.get()
        print("learned \(Self.kjvVocabularySize) tokens from the KJV in \(String(format: "%.1f", seconds)) s")
        let bert = try TokenizerFixtures.bertVocabulary()
        XCTAssertEqual(Array(vocabulary.tokens.prefix(104)), Array(bert.tokens.prefix(104)))
        XCTAssertEqual([vocabulary.padID, vocabulary.unknownID, vocabulary.classifierID, vocabulary.separatorID,
                        vocabulary.maskID], [bert.padID, bert.unknownID, bert.classifierID, bert.separatorID,
                                             bert.maskID])
    }

    func testSizeIsRespectedAndTokensAreDistinct() throws {
        let (vocabulary, _) = try Self.kjvVocabulary.get()
        XCTAssertEqual(vocabulary.count, Self.kjvVocabularySize)
        XCTAssertEqual(Set(vocabulary.tokens.map { $0.unicodeScalars.map(\.value) }).count, Self.kjvVocabularySize)
        // The commonest words of the KJV are whole tokens.
        for word in ["the", "and", "lord", "god", "israel", "said", "unto"] {
            XCTAssertNotNil(vocabulary.id(for: word), word)
        }
    }

    func testLearnedVocabularyCoversItsCorpusWithoutUnknowns() throws {
        let (vocabulary, _) = try Self.kjvVocabulary.get()
        let tokenizer = BertTokenizer(vocabulary: vocabulary)
        let text = try String(contentsOfFile: Self.kjvPath, encoding: .utf8)
        var ids: [Int32] = []
        var words = 0
        for line in text.split(separator: "\n") {
            tokenizer.encode(String(line), into: &ids)
            words += tokenizer.basicTokenize(String(line)).count
        }
        let unknowns = ids.filter { $0 == vocabulary.unknownID }.count
        XCTAssertEqual(unknowns, 0)
        // With 4000 tokens for about 6,800 distinct words, most words (and punctuation) are one token.
        print("KJV with its own \(Self.kjvVocabularySize)-token vocabulary: \(Double(ids.count) / Double(words)) tokens per word")
        XCTAssertLessThan(Double(ids.count) / Double(words), 1.1)
    }

    func testSameInputGivesSameVocabularyWhateverTheFileOrder() throws {
        let files = Array(try zhFiles().prefix(12))
        var forward = VocabularyBuilder()
        for file in files { try forward.add(contentsOfFile: file) }
        var backward = VocabularyBuilder()
        for file in files.reversed() { try backward.add(contentsOfFile: file) }
        let size = forward.minimumSize + 500
        let first = try forward.build(size: size)
        XCTAssertEqual(first.count, size)
        XCTAssertEqual(try forward.build(size: size).fingerprint, first.fingerprint)
        XCTAssertEqual(try backward.build(size: size).tokens, first.tokens)
        // A smaller vocabulary is a prefix of a larger one: the merges come in the same order.
        XCTAssertEqual(try forward.build(size: size - 200).tokens, Array(first.tokens.prefix(size - 200)))
    }

    func testChineseCharactersBecomeSingleTokens() throws {
        var builder = VocabularyBuilder()
        var corpusCharacters = Set<UInt32>()
        for file in try zhFiles() {
            try builder.add(contentsOfFile: file)
            for scalar in try String(contentsOfFile: file, encoding: .utf8).unicodeScalars
            where (0x4E00...0x9FFF).contains(scalar.value) {
                corpusCharacters.insert(scalar.value)
            }
        }
        XCTAssertGreaterThan(corpusCharacters.count, 1000)
        let vocabulary = try builder.build(size: builder.minimumSize + 2000)
        for character in corpusCharacters {
            XCTAssertNotNil(vocabulary.id(for: String(Unicode.Scalar(character)!)), "U+\(String(character, radix: 16))")
        }
        for token in vocabulary.tokens where token.unicodeScalars.count > 1 {
            XCTAssertFalse(token.unicodeScalars.contains { (0x4E00...0x9FFF).contains($0.value) }, token)
        }
        let tokenizer = BertTokenizer(vocabulary: vocabulary)
        XCTAssertEqual(tokenizer.tokenize("\u{4E2D}\u{6587}apt"), ["\u{4E2D}", "\u{6587}", "apt"])
    }

    func testEmptyCorpusIsAnError() throws {
        var builder = VocabularyBuilder()
        builder.add(text: " \n\t\u{0}\n")
        XCTAssertThrowsError(try builder.build(size: 1000)) { error in
            XCTAssertEqual(error as? VocabularyBuilderError, .emptyCorpus)
        }
    }

    func testTooSmallSizeNamesTheMinimum() throws {
        var builder = VocabularyBuilder()
        builder.add(text: "abc bca cab")  // alphabet: a b c ##a ##b ##c
        XCTAssertEqual(builder.minimumSize, 110)
        XCTAssertThrowsError(try builder.build(size: 109)) { error in
            XCTAssertEqual(error as? VocabularyBuilderError, .sizeTooSmall(size: 109, reserved: 104, alphabet: 6))
            XCTAssertTrue("\(error)".contains("at least 110"), "\(error)")
        }
        XCTAssertEqual(try builder.build(size: 110).tokens.suffix(6), ["a", "b", "c", "##a", "##b", "##c"])
    }

    func testUnreadableFileNamesTheFile() {
        var builder = VocabularyBuilder()
        XCTAssertThrowsError(try builder.add(contentsOfFile: "/nonexistent/corpus.txt")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/corpus.txt"), "\(error)")
        }
    }

    func testMergesFollowPairFrequency() throws {
        // a+##b is seen 3 times, ##b+##c once: the one merge is a+##b; after it, ab+##c is seen once,
        // below the minimum frequency.
        var builder = VocabularyBuilder(minimumPairFrequency: 2)
        builder.add(text: "ab ab abc")
        let vocabulary = try builder.build(size: 200)
        XCTAssertEqual(Array(vocabulary.tokens.dropFirst(104)), ["a", "##b", "##c", "ab"])
    }
}
