import Crypto
import Foundation

/// GPT-2's tokenizer: byte-level byte-pair encoding, as OpenAI's encoder and the `tokenizers`
/// library (`ByteLevel` pre-tokenizer and decoder, `BPE` model) define it.
///
/// Text is split into pre-tokens by GPT-2's pattern (`ByteLevelPreTokenizer`); each pre-token's
/// UTF-8 bytes start as one symbol each, and the adjacent pair with the lowest merge rank is merged
/// until no pair has a rank. Tokens are byte strings: the vocabulary and merges files spell each byte
/// as a printable character (`ByteLevelBPE.byteToCharacter`), so any text, and any bytes, round-trip.
/// Added tokens (`<|endoftext|>`) are matched in the raw text first and never split.
public final class ByteLevelBPE: @unchecked Sendable {
    /// Each token's bytes, indexed by id.
    public let tokenBytes: [[UInt8]]
    private let idsByBytes: [[UInt8]: Int32]
    /// (left id, right id) -> (rank, merged id).
    private let merges: [UInt64: (rank: Int32, merged: Int32)]
    /// The id of each single byte.
    private let byteIDs: [Int32]
    /// Tokens matched whole in the raw text before pre-tokenization, longest first.
    public let addedTokens: [(content: String, id: Int32)]
    /// tokenizers' `ignore_merges`: a pre-token that is itself in the vocabulary is taken whole.
    private let ignoreMerges: Bool
    private var cache: [[UInt8]: [Int32]] = [:]
    private let cacheLock = NSLock()

    /// A tokenizer from its vocabulary (token text as the files spell it -> id), its merges in rank
    /// order (pairs of token texts) and its added tokens. Throws when a byte has no token or a merge
    /// names a token the vocabulary lacks, naming `source` (or `mergesSource` for the merges).
    public init(
        vocabulary: [String: Int32], merges pairs: [(String, String)], addedTokens: [(content: String, id: Int32)] = [],
        ignoreMerges: Bool = false, source: String, mergesSource: String? = nil
    ) throws {
        let count = (vocabulary.values.max().map { Int($0) + 1 } ?? 0)
        var tokenBytes = Array(repeating: [UInt8](), count: max(count, (addedTokens.map { Int($0.id) + 1 }.max() ?? 0)))
        var idsByBytes: [[UInt8]: Int32] = [:]
        for (text, id) in vocabulary {
            guard id >= 0 else { throw ByteLevelBPEError.invalid(path: source, reason: "token \(text) has a negative id \(id)") }
            guard let bytes = Self.bytes(ofSpelled: text) else {
                throw ByteLevelBPEError.invalid(
                    path: source, reason: "token \(text) (id \(id)) has a character that spells no byte; a byte-level vocabulary "
                        + "spells every byte as one of 256 printable characters")
            }
            tokenBytes[Int(id)] = bytes
            idsByBytes[bytes] = id
        }
        for (content, id) in addedTokens { tokenBytes[Int(id)] = Array(content.utf8) }
        var byteIDs: [Int32] = []
        for byte in 0...255 {
            guard let id = idsByBytes[[UInt8(byte)]] else {
                throw ByteLevelBPEError.invalid(
                    path: source, reason: "no token for the byte \(byte) (\(Self.byteToCharacter[byte])); a byte-level "
                        + "vocabulary starts with all 256")
            }
            byteIDs.append(id)
        }
        var merges: [UInt64: (rank: Int32, merged: Int32)] = [:]
        for (rank, (left, right)) in pairs.enumerated() {
            guard let leftBytes = Self.bytes(ofSpelled: left), let rightBytes = Self.bytes(ofSpelled: right),
                let l = idsByBytes[leftBytes], let r = idsByBytes[rightBytes], let merged = idsByBytes[leftBytes + rightBytes]
            else {
                throw ByteLevelBPEError.invalid(
                    path: mergesSource ?? source, reason: "merge \(rank + 1) (\(left) \(right)) names a token the vocabulary lacks")
            }
            let key = Self.pairKey(l, r)
            if merges[key] == nil { merges[key] = (Int32(rank), merged) }
        }
        self.tokenBytes = tokenBytes
        self.idsByBytes = idsByBytes
        self.merges = merges
        self.byteIDs = byteIDs
        self.addedTokens = addedTokens.sorted { $0.content.utf8.count > $1.content.utf8.count }
        self.ignoreMerges = ignoreMerges
    }

    /// The ids of `text`.
    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        for piece in splitOnAddedTokens(text) {
            switch piece {
            case let .added(id): ids.append(id)
            case let .text(part):
                ByteLevelPreTokenizer.forEachPreToken(in: part) { bytes in ids += encodeWord(bytes) }
            }
        }
        return ids
    }

    /// The text of `ids`: their bytes, decoded as UTF-8 with U+FFFD for what is not (as the
    /// `tokenizers` ByteLevel decoder does). Ids outside the vocabulary are skipped.
    public func decode(_ ids: [Int32]) -> String {
        String(decoding: bytes(of: ids), as: UTF8.self)
    }

    /// The bytes of `ids`, concatenated.
    public func bytes(of ids: [Int32]) -> [UInt8] {
        var bytes: [UInt8] = []
        for id in ids where id >= 0 && Int(id) < tokenBytes.count { bytes += tokenBytes[Int(id)] }
        return bytes
    }

    /// The id of a token given as the files spell it, or nil.
    public func id(ofSpelled token: String) -> Int32? {
        if let added = addedTokens.first(where: { $0.content == token }) { return added.id }
        return Self.bytes(ofSpelled: token).flatMap { idsByBytes[$0] }
    }

    /// Number of ids: vocabulary and added tokens (the embedding rows a model needs).
    public var idCount: Int { tokenBytes.count }

    /// SHA-256 hex of a canonical description of what the tokenizer does, so the same tokenizer read
    /// from tokenizer.json or from vocab.json + merges.txt has the same fingerprint. The described
    /// text is, line by line: "swiftbert-byte-level-bpe 1"; "vocab N", then "id hex" for each entry in
    /// id order (hex: the token's bytes); "merges M", then "left-id right-id" in rank order; "added K",
    /// then "id hex" for each added token in id order (hex: its UTF-8); "ignore_merges 0" or "1".
    public var fingerprint: String {
        var lines = ["swiftbert-byte-level-bpe 1", "vocab \(idsByBytes.count)"]
        for (bytes, id) in idsByBytes.sorted(by: { $0.value < $1.value }) { lines.append("\(id) \(hexString(bytes))") }
        let ranked = merges.sorted { $0.value.rank < $1.value.rank }
        lines.append("merges \(ranked.count)")
        for (key, _) in ranked { lines.append("\(Int32(bitPattern: UInt32(key >> 32))) \(Int32(bitPattern: UInt32(key & 0xFFFF_FFFF)))") }
        let added = addedTokens.sorted { $0.id < $1.id }
        lines.append("added \(added.count)")
        for (content, id) in added { lines.append("\(id) \(hexString(content.utf8))") }
        lines.append("ignore_merges \(ignoreMerges ? 1 : 0)")
        return hexString(SHA256.hash(data: Array((lines.joined(separator: "\n") + "\n").utf8)))
    }

    // MARK: - BPE

    /// The ids of one pre-token's bytes: merges by rank, lowest first, leftmost among equals.
    func encodeWord(_ bytes: [UInt8]) -> [Int32] {
        cacheLock.lock()
        let cached = cache[bytes]
        cacheLock.unlock()
        if let cached { return cached }
        var symbols: [Int32]
        if ignoreMerges, let whole = idsByBytes[bytes] {
            symbols = [whole]
        } else {
            symbols = bytes.map { byteIDs[Int($0)] }
            while symbols.count > 1 {
                var best: (rank: Int32, index: Int, merged: Int32)? = nil
                for i in 0..<(symbols.count - 1) {
                    if let merge = merges[Self.pairKey(symbols[i], symbols[i + 1])], merge.rank < (best?.rank ?? .max) {
                        best = (merge.rank, i, merge.merged)
                    }
                }
                guard let best else { break }
                // Every occurrence of the pair, left to right, as tokenizers merges a word.
                let (left, right) = (symbols[best.index], symbols[best.index + 1])
                var merged: [Int32] = []
                merged.reserveCapacity(symbols.count)
                var i = 0
                while i < symbols.count {
                    if i + 1 < symbols.count && symbols[i] == left && symbols[i + 1] == right {
                        merged.append(best.merged)
                        i += 2
                    } else {
                        merged.append(symbols[i])
                        i += 1
                    }
                }
                symbols = merged
            }
        }
        if bytes.count <= 64 {
            cacheLock.lock()
            cache[bytes] = symbols
            cacheLock.unlock()
        }
        return symbols
    }

    private static func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    enum Piece {
        case text(Substring)
        case added(Int32)
    }

    /// The text cut at every occurrence of an added token (the longest at each position), compared
    /// scalar by scalar as tokenizers compares bytes (String comparison would join a following
    /// combining mark to the token's last character).
    func splitOnAddedTokens(_ text: String) -> [Piece] {
        guard !addedTokens.isEmpty else { return [.text(Substring(text))] }
        let scalars = text.unicodeScalars
        var pieces: [Piece] = []
        var start = scalars.startIndex, position = scalars.startIndex
        while position < scalars.endIndex {
            if let match = addedTokens.first(where: { !$0.content.isEmpty && scalars[position...].starts(with: $0.content.unicodeScalars) }) {
                if start < position { pieces.append(.text(Substring(scalars[start..<position]))) }
                pieces.append(.added(match.id))
                position = scalars.index(position, offsetBy: match.content.unicodeScalars.count)
                start = position
            } else {
                position = scalars.index(after: position)
            }
        }
        if start < scalars.endIndex { pieces.append(.text(Substring(scalars[start...]))) }
        return pieces
    }

    // MARK: - The byte alphabet

    /// GPT-2's `bytes_to_unicode`: the printable bytes ('!'...'~', '¡'...'¬', '®'...'ÿ') stand for
    /// themselves, the other 68 for U+0100, U+0101, ... in byte order.
    public static let byteToCharacter: [Character] = {
        var printable = Set<Int>(33...126)
        printable.formUnion(161...172)
        printable.formUnion(174...255)
        var next = 256
        return (0...255).map { byte in
            if printable.contains(byte) { return Character(Unicode.Scalar(UInt32(byte))!) }
            defer { next += 1 }
            return Character(Unicode.Scalar(UInt32(next))!)
        }
    }()

    private static let characterToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (byte, character) in byteToCharacter.enumerated() { map[character.unicodeScalars.first!.value] = UInt8(byte) }
        return map
    }()

    /// The bytes a token spelled in the byte alphabet stands for; nil if a character is not in it.
    public static func bytes(ofSpelled token: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            guard let byte = characterToByte[scalar.value] else { return nil }
            bytes.append(byte)
        }
        return bytes
    }

    /// `bytes` spelled in the byte alphabet, as the vocabulary and merges files write tokens.
    public static func spelling(of bytes: [UInt8]) -> String {
        String(bytes.map { byteToCharacter[Int($0)] })
    }
}

/// GPT-2's pre-tokenization pattern,
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, matched by hand over
/// Unicode scalars (the alternatives in order at each position, as a backtracking engine tries them):
/// \p{L} the letters (general category L*), \p{N} the numbers (N*), \s the White_Space characters.
public enum ByteLevelPreTokenizer {
    /// Calls `body` with the UTF-8 bytes of each pre-token of `text`, in order.
    public static func forEachPreToken(in text: Substring, _ body: ([UInt8]) -> Void) {
        let scalars = Array(text.unicodeScalars)
        let n = scalars.count
        var i = 0
        func emit(_ range: Range<Int>) {
            var bytes: [UInt8] = []
            for scalar in scalars[range] { bytes += UTF8.encode(scalar)! }
            body(bytes)
        }
        func run(from start: Int, while predicate: (Unicode.Scalar) -> Bool) -> Int {
            var j = start
            while j < n && predicate(scalars[j]) { j += 1 }
            return j
        }
        while i < n {
            let c = scalars[i]
            // 's 't 're 've 'm 'll 'd
            if c == "'" && i + 1 < n {
                let next = scalars[i + 1]
                if next == "s" || next == "t" || next == "m" || next == "d" {
                    emit(i..<(i + 2))
                    i += 2
                    continue
                }
                if i + 2 < n {
                    let pair = (next, scalars[i + 2])
                    if pair == ("r", "e") || pair == ("v", "e") || pair == ("l", "l") {
                        emit(i..<(i + 3))
                        i += 3
                        continue
                    }
                }
            }
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: a space can only lead, so the run starts after it.
            let runStart = c == " " ? i + 1 : i
            if runStart < n {
                let lead = scalars[runStart]
                let predicate: ((Unicode.Scalar) -> Bool)? =
                    isLetter(lead) ? isLetter : isNumber(lead) ? isNumber : isWhitespace(lead) ? nil : isOther
                if let predicate {
                    let end = run(from: runStart, while: predicate)
                    emit(i..<end)
                    i = end
                    continue
                }
            }
            // \s+(?!\S): the whitespace run, less its last character when a non-space follows; a run
            // of one before a non-space is \s+.
            let end = run(from: i, while: isWhitespace)
            if end < n && end - i > 1 {
                emit(i..<(end - 1))
                i = end - 1
            } else {
                emit(i..<end)
                i = end
            }
        }
    }

    static func isLetter(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    static func isNumber(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    static func isWhitespace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }

    static func isOther(_ c: Unicode.Scalar) -> Bool { !isWhitespace(c) && !isLetter(c) && !isNumber(c) }
}

public enum ByteLevelBPEError: Error, LocalizedError, CustomStringConvertible, Equatable {
    case invalid(path: String, reason: String)

    public var description: String {
        switch self {
        case let .invalid(path, reason): return "\(path): \(reason)"
        }
    }

    public var errorDescription: String? { description }
}
