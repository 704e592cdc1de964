import Data
import Foundation
import XCTest

final class SentenceSplitterTests: XCTestCase {
    let splitter = SentenceSplitter()

    func testEnglishAbbreviationsDecimalsAndInitials() {
        XCTAssertEqual(
            splitter.split("Mr. Smith paid $3.50 for it. Dr. J. R. Jones agreed, e.g. with tea. Then it rained!"),
            ["Mr. Smith paid $3.50 for it.", "Dr. J. R. Jones agreed, e.g. with tea.", "Then it rained!"])
        XCTAssertEqual(splitter.split("Use os.path.join() here. It is 3.14 times faster."),
                       ["Use os.path.join() here.", "It is 3.14 times faster."])
        XCTAssertEqual(splitter.split("He said \"Stop.\" She did not? \"Why?\" Nobody knew."),
                       ["He said \"Stop.\"", "She did not?", "\"Why?\"", "Nobody knew."])
        XCTAssertEqual(splitter.split("See Fig. 3 and the U.S. Army. The end"),
                       ["See Fig. 3 and the U.S. Army.", "The end"])
    }

    func testLowercaseAfterPeriodDoesNotSplitAndLineBreaksAreSpaces() {
        XCTAssertEqual(splitter.split("The value is\nreturned, i.e. the\n  result is kept."),
                       ["The value is returned, i.e. the result is kept."])
        XCTAssertEqual(splitter.split("version 2. then"), ["version 2. then"])
    }

    func testChinesePunctuation() {
        XCTAssertEqual(splitter.split("今天天气很好。我们去公园吧！你去吗？我去；他不去……好吧。"),
                       ["今天天气很好。", "我们去公园吧！", "你去吗？", "我去；", "他不去……", "好吧。"])
        XCTAssertEqual(splitter.split("他说：“你好。”然后走了。"), ["他说：“你好。”", "然后走了。"])
        XCTAssertEqual(splitter.split("运行 apt-get update。Then run it. 完成。"),
                       ["运行 apt-get update。", "Then run it.", "完成。"])
    }

    func testEmptyAndWhitespace() {
        XCTAssertEqual(splitter.split(""), [])
        XCTAssertEqual(splitter.split("   \n "), [])
        XCTAssertEqual(splitter.split("No terminator"), ["No terminator"])
    }
}

final class CorpusReaderTests: XCTestCase {
    func write(_ text: String, _ name: String, in directory: URL) throws -> String {
        let url = directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func readAll(_ reader: CorpusReader) throws -> [RawDocument] {
        var documents: [RawDocument] = []
        while let document = try reader.next() { documents.append(document) }
        return documents
    }

    func testGoogleFormatDocumentsAreSeparatedByBlankLines() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let path = try write("\u{FEFF}First one.\r\nSecond one.\r\n\r\n\n  \nThird.\nFourth.\n\nFifth.", "g.txt", in: directory)
        let documents = try readAll(CorpusReader(inputs: [path], format: .google))
        XCTAssertEqual(documents.map(\.texts), [["First one.", "Second one."], ["Third.", "Fourth."], ["Fifth."]])
        XCTAssertEqual(documents.map(\.line), [1, 6, 9])
        XCTAssertFalse(documents[0].needsSplitting)
    }

    func testDirectoryOfDocumentsIsSortedAndSplitIntoSentences() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        _ = try write("Beta text. It has\ntwo sentences.\n\nA new paragraph", "b.txt", in: directory)
        _ = try write("Alpha.", "a.txt", in: directory)
        _ = try write("hidden.", ".hidden.txt", in: directory)
        _ = try write("Nested doc.", "sub/c.txt", in: directory)
        let documents = try readAll(CorpusReader(inputs: [directory.path], format: .auto))
        XCTAssertEqual(documents.map { ($0.path as NSString).lastPathComponent }, ["a.txt", "b.txt", "c.txt"])
        XCTAssertEqual(documents[1].sentences(splitter: SentenceSplitter()),
                       ["Beta text.", "It has two sentences.", "A new paragraph"])
    }

    func testInvalidUTF8IsReportedWithFileAndLine() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let url = directory.appendingPathComponent("bad.txt")
        var bytes = Data("good line\nanother\n".utf8)
        bytes.append(contentsOf: [0x66, 0xC3, 0x28, 0x0A])   // invalid 2-byte sequence on line 3
        bytes.append(contentsOf: Data("fine\n".utf8))
        try bytes.write(to: url)
        let reader = try CorpusReader(inputs: [url.path], format: .google)
        XCTAssertThrowsError(try readAll(reader)) { error in
            XCTAssertEqual(error as? DataError, .invalidUTF8(path: url.path, line: 3))
            XCTAssertTrue("\(error)".contains("\(url.path):3"))
        }
    }

    func testMissingInputIsAnError() {
        XCTAssertThrowsError(try CorpusReader(inputs: ["/nonexistent/corpus.txt"], format: .auto)) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/corpus.txt"))
        }
    }

    func testLongDocumentsAreCutAtTheBound() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let line = String(repeating: "x", count: 99) + "\n"
        let path = try write(String(repeating: line, count: 100), "long.txt", in: directory)
        let documents = try readAll(CorpusReader(inputs: [path], format: .google, maxDocumentBytes: 1000))
        XCTAssertEqual(documents.count, 10)
        XCTAssertEqual(documents.map(\.texts.count).reduce(0, +), 100)
    }
}
