import ArgumentParser
import Data
import Foundation

/// `swiftbert tokenize`: BERT WordPiece tokenization of standard input, one output line per input line.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tokenize lines of standard input with a BERT vocabulary (ids or WordPieces).",
        discussion: """
            Every line ("\\n"-terminated; a final line without "\\n" counts) is tokenized on its own and \
            gives one output line: ids or WordPieces separated by spaces, empty for a line without \
            tokens. The tokenization is Hugging Face's BertTokenizer (pure Python) exactly; special \
            tokens written in the text ([MASK], [CLS], ...) stay whole, as there. Input is UTF-8; \
            invalid bytes become U+FFFD, which the tokenizer drops.
            """)

    enum Output: String, EnumerableFlag {
        case ids, tokens

        static func help(for value: Output) -> ArgumentHelp? {
            switch value {
            case .ids: return "Write token ids (default)."
            case .tokens: return "Write WordPieces."
            }
        }
    }

    @Option(help: "BERT vocab.txt.")
    var vocab: String?

    @Option(help: ArgumentHelp(
        "Hugging Face model or tokenizer directory, instead of --vocab.",
        discussion: "Its vocab.txt, else its tokenizer.json, with the settings of tokenizer_config.json."))
    var model: String?

    @Flag(help: "Keep case and accents (for cased vocabularies); the default lowercases and strips accents.")
    var cased = false

    func validate() throws {
        guard (vocab == nil) != (model == nil) else {
            throw ValidationError("pass either --vocab FILE or --model DIR")
        }
        if model != nil && cased {
            throw ValidationError("--cased goes with --vocab; a --model directory's tokenizer_config.json sets the casing")
        }
    }

    @Flag(exclusivity: .exclusive)
    var output: Output = .ids

    @Flag(help: "Put [CLS] before and [SEP] after every line.")
    var specialTokens = false

    func run() throws {
        let tokenizer = try model.map { try PretrainedTokenizer.load(directory: $0).tokenizer }
            ?? BertTokenizer(vocabulary: Vocabulary(contentsOfFile: vocab!), lowercase: !cased)
        let vocabulary = tokenizer.vocabulary
        // Tokens as UTF-8 bytes, looked up by id when writing WordPieces.
        // Read once: the property wrappers' getters are not free in a per-line loop.
        let writeTokens = output == .tokens
        let addSpecialTokens = specialTokens
        let tokenBytes = writeTokens ? vocabulary.tokens.map { Array($0.utf8) } : []
        let (classifierID, separatorID) = (vocabulary.classifierID, vocabulary.separatorID)
        var ids: [Int32] = []
        var out: [UInt8] = []
        out.reserveCapacity(1 << 20)

        func emit(_ line: UnsafeBufferPointer<UInt8>) {
            ids.removeAll(keepingCapacity: true)
            if addSpecialTokens { ids.append(classifierID) }
            tokenizer.encode(String(decoding: line, as: UTF8.self), into: &ids)
            if addSpecialTokens { ids.append(separatorID) }
            for (index, id) in ids.enumerated() {
                if index > 0 { out.append(UInt8(ascii: " ")) }
                if writeTokens {
                    out.append(contentsOf: tokenBytes[Int(id)])
                } else {
                    appendDecimal(id, to: &out)
                }
            }
            out.append(UInt8(ascii: "\n"))
            if out.count >= 1 << 20 { flush() }
        }
        func flush() {
            out.withUnsafeBufferPointer { _ = fwrite($0.baseAddress, 1, $0.count, stdout) }
            out.removeAll(keepingCapacity: true)
        }

        // Stream standard input in blocks; a line may straddle two blocks.
        var pending: [UInt8] = []
        let blockSize = 1 << 20
        let block = UnsafeMutablePointer<UInt8>.allocate(capacity: blockSize)
        defer { block.deallocate() }
        while true {
            let count = fread(block, 1, blockSize, stdin)
            if count <= 0 { break }
            pending.append(contentsOf: UnsafeBufferPointer(start: block, count: count))
            var lineStart = 0
            pending.withUnsafeBufferPointer { buffer in
                for index in 0..<buffer.count where buffer[index] == UInt8(ascii: "\n") {
                    emit(UnsafeBufferPointer(rebasing: buffer[lineStart..<index]))
                    lineStart = index + 1
                }
            }
            pending.removeSubrange(0..<lineStart)
        }
        if ferror(stdin) != 0 { throw TokenizeError.unreadableInput }
        if !pending.isEmpty { pending.withUnsafeBufferPointer { emit($0) } }
        flush()
        fflush(stdout)
    }

    private func appendDecimal(_ value: Int32, to out: inout [UInt8]) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var rest = UInt32(value)
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            } while rest > 0
            for index in stride(from: count - 1, through: 0, by: -1) { out.append(buffer[index]) }
        }
    }
}

enum TokenizeError: Error, CustomStringConvertible {
    case unreadableInput

    var description: String { "cannot read standard input" }
}
