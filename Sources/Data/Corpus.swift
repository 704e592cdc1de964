import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How corpus files are laid out.
public enum CorpusFormat: String, CaseIterable, Codable, Sendable {
    /// Google's BERT input: one sentence a line, a blank line between documents.
    case google
    /// One document a file (a directory is a set of documents); running text, split into sentences.
    case documents
    /// `documents` for the files found in a directory, `google` for a file named directly.
    case auto
}

/// A document as read, before tokenization: sentences, or paragraphs still to be split.
public struct RawDocument: Sendable {
    /// File the document comes from and the line it starts on (for messages).
    public var path: String
    public var line: Int
    /// Google format: sentences. Documents format: paragraphs (lines joined by spaces).
    public var texts: [String]
    /// Whether `texts` are paragraphs that still go through the sentence splitter.
    public var needsSplitting: Bool
    /// UTF-8 bytes read for this document.
    public var byteCount: Int
    /// The documents format's text as the file has it (line breaks and white space kept, CRLF read
    /// as LF, a BOM dropped), when the reader keeps text; nil otherwise.
    public var rawText: String?
    /// This document is the rest of the previous one, which was cut at `maxDocumentBytes`.
    public var continuesPrevious = false

    /// The text a causal LM reads: the documents format's text as is (with `keepsText`), the google
    /// format's sentences joined by "\n". The pieces of a cut document concatenate to its text.
    public var wholeText: String {
        if let rawText { return rawText }
        let joined = texts.joined(separator: "\n")
        return continuesPrevious ? "\n" + joined : joined
    }

    /// The sentences of the document.
    public func sentences(splitter: SentenceSplitter) -> [String] {
        needsSplitting ? texts.flatMap { splitter.split($0) } : texts
    }
}

/// Streams documents from corpus files, one at a time, never holding a whole file: memory is
/// bounded by the longest document, and a document longer than `maxDocumentBytes` is cut into
/// pieces of about that size at line boundaries (`continuesPrevious` marks the pieces after the first).
///
/// Lines must be UTF-8 (a BOM at the start of a file is skipped, CRLF accepted); an invalid line
/// is an error that names the file and line, never silently dropped.
public final class CorpusReader {
    public let files: [(path: String, format: CorpusFormat)]
    public let maxDocumentBytes: Int
    /// Whether documents-format documents carry their `rawText`.
    public let keepsText: Bool
    private var fileIndex = 0
    private var lines: LineReader?
    /// The last document returned was cut, so the text that follows in its file continues it.
    private var cutDocumentOpen = false

    /// Expands directories (recursively, sorted, hidden files skipped) into files.
    public init(inputs: [String], format: CorpusFormat, maxDocumentBytes: Int = 64 << 20, keepsText: Bool = false) throws {
        var files: [(String, CorpusFormat)] = []
        let manager = FileManager.default
        for input in inputs {
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: input, isDirectory: &isDirectory) else {
                throw DataError.unreadableInput(path: input, reason: "no such file or directory")
            }
            if isDirectory.boolValue {
                guard let enumerator = manager.enumerator(atPath: input) else {
                    throw DataError.unreadableInput(path: input, reason: "cannot list the directory")
                }
                var found: [String] = []
                while let relative = enumerator.nextObject() as? String {
                    let name = (relative as NSString).lastPathComponent
                    if name.hasPrefix(".") {
                        enumerator.skipDescendants()
                        continue
                    }
                    let path = (input as NSString).appendingPathComponent(relative)
                    var sub: ObjCBool = false
                    if manager.fileExists(atPath: path, isDirectory: &sub), !sub.boolValue { found.append(path) }
                }
                for path in found.sorted() { files.append((path, format == .auto ? .documents : format)) }
            } else {
                files.append((input, format == .auto ? .google : format))
            }
        }
        self.files = files
        self.maxDocumentBytes = maxDocumentBytes
        self.keepsText = keepsText
    }

    /// The next non-empty document, or nil at the end of the corpus.
    public func next() throws -> RawDocument? {
        while fileIndex < files.count {
            let (path, format) = files[fileIndex]
            if lines == nil { lines = try LineReader(path: path, keepsRawLines: keepsText && format == .documents) }
            if let document = try readDocument(path: path, format: format) { return document }
            lines = nil
            fileIndex += 1
        }
        return nil
    }

    /// Reads the next document of the current file; nil when the file has no more text.
    private func readDocument(path: String, format: CorpusFormat) throws -> RawDocument? {
        guard let reader = lines else { return nil }
        var document = RawDocument(path: path, line: reader.lineNumber + 1, texts: [], needsSplitting: format == .documents,
                                   byteCount: 0, continuesPrevious: cutDocumentOpen)
        if reader.keepsRawLines { document.rawText = "" }
        var paragraph = ""
        func endParagraph() {
            if !paragraph.isEmpty {
                document.texts.append(paragraph)
                paragraph = ""
            }
        }
        func cut() -> RawDocument {
            cutDocumentOpen = true
            return document
        }
        while let text = try reader.next() {
            document.byteCount += text.utf8.count + 1
            if reader.keepsRawLines { document.rawText! += reader.rawLine + (reader.lineTerminated ? "\n" : "") }
            if text.isEmpty {
                if format == .google {
                    cutDocumentOpen = false
                    if !document.texts.isEmpty { return document }
                    document.line = reader.lineNumber + 1
                    document.continuesPrevious = false
                } else {
                    endParagraph()
                    if document.byteCount >= maxDocumentBytes && !document.texts.isEmpty { return cut() }
                }
                continue
            }
            if format == .google {
                document.texts.append(text)
                if document.byteCount >= maxDocumentBytes { return cut() }
            } else {
                if !paragraph.isEmpty { paragraph += " " }
                paragraph += text
                if document.byteCount >= maxDocumentBytes {
                    endParagraph()
                    return cut()
                }
            }
        }
        endParagraph()
        cutDocumentOpen = false
        return document.texts.isEmpty ? nil : document
    }
}

/// Reads a file line by line through a 1 MB buffer, validating each line as UTF-8.
final class LineReader {
    let path: String
    /// Whether `rawLine` is kept.
    let keepsRawLines: Bool
    private let file: UnsafeMutablePointer<FILE>
    private var buffer: [UInt8] = []
    private var position = 0
    private var atEnd = false
    private(set) var lineNumber = 0
    /// The line `next()` returned last, untrimmed but for the CR of a CRLF (with `keepsRawLines`).
    private(set) var rawLine = ""
    /// Whether that line ended with a line break (the last line of a file may not).
    private(set) var lineTerminated = false

    init(path: String, keepsRawLines: Bool = false) throws {
        guard let file = fopen(path, "rb") else {
            throw DataError.unreadableInput(path: path, reason: String(cString: strerror(errno)))
        }
        self.file = file
        self.path = path
        self.keepsRawLines = keepsRawLines
    }

    deinit { fclose(file) }

    /// The next line without its terminator and surrounding white space, or nil at the end of the file.
    func next() throws -> String? {
        while true {
            if let newline = buffer[position...].firstIndex(of: UInt8(ascii: "\n")) {
                lineTerminated = true
                let line = try decode(position..<newline)
                position = newline + 1
                return line
            }
            if atEnd {
                guard position < buffer.count else { return nil }
                lineTerminated = false
                let line = try decode(position..<buffer.count)
                position = buffer.count
                return line
            }
            try refill()
        }
    }

    private func refill() throws {
        buffer.removeSubrange(0..<position)
        position = 0
        let chunk = 1 << 20
        let old = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: chunk))
        let read = buffer.withUnsafeMutableBytes { fread($0.baseAddress! + old, 1, chunk, file) }
        buffer.removeLast(chunk - read)
        if read < chunk {
            if ferror(file) != 0 {
                throw DataError.unreadableInput(path: path, reason: "read error: \(String(cString: strerror(errno)))")
            }
            atEnd = true
        }
    }

    private func decode(_ range: Range<Int>) throws -> String {
        lineNumber += 1
        var bytes = buffer[range]
        if lineNumber == 1 && bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        if keepsRawLines {
            let raw = bytes.last == 0x0D ? bytes.dropLast() : bytes
            guard let line = String(validating: raw, as: UTF8.self) else {
                throw DataError.invalidUTF8(path: path, line: lineNumber)
            }
            rawLine = line
        }
        // ASCII white space (CR of CRLF included) is trimmed on the bytes; other white space, rare,
        // by Foundation after decoding.
        func isASCIISpace(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0D) }
        while let first = bytes.first, isASCIISpace(first) { bytes = bytes.dropFirst() }
        while let last = bytes.last, isASCIISpace(last) { bytes = bytes.dropLast() }
        guard let line = String(validating: bytes, as: UTF8.self) else {
            throw DataError.invalidUTF8(path: path, line: lineNumber)
        }
        if let first = bytes.first, let last = bytes.last, first >= 0x80 || last >= 0x80 {
            return line.trimmingCharacters(in: .whitespaces)
        }
        return line
    }
}
