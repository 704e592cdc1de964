/// BERT's tokenizer: basic tokenization, then greedy longest-match-first WordPiece.
///
/// Gives the same tokens as the reference (Hugging Face's pure-Python `BertTokenizer`, now
/// `BertTokenizerLegacy`, which follows Google's `tokenization.py`) for every input, in these steps:
///
/// 1. The special tokens `[PAD] [UNK] [CLS] [SEP] [MASK]` written literally in the text are split out
///    first and kept whole (the reference splits added tokens out before anything else).
/// 2. Cleaning: NUL, U+FFFD and characters of categories C* are dropped; whitespace separates words.
/// 3. Every CJK ideograph (the reference's ranges, compatibility ideographs included) is a word.
/// 4. Each word is put in NFC (a step Hugging Face added to Google's original); a word that is then
///    exactly a special token is kept whole.
/// 5. Uncased: `str.lower()` (full mappings, final sigma); then, when accents are stripped (by
///    default when uncased), NFD and removal of category Mn.
/// 6. Punctuation (ASCII symbols and categories P*) splits words into pieces of their own.
/// 7. WordPiece: longest vocabulary prefix first, then "##" continuations; a piece longer than
///    `maxCharactersPerWord` (100) scalars or that cannot be covered becomes `[UNK]`.
///
/// Character data comes from `UnicodeTables` (Python's Unicode 14.0), so results do not depend on
/// the Unicode version of the Swift runtime. Lines are not special: "\n" and "\r" are whitespace.
public struct BertTokenizer: Sendable {
    public let vocabulary: Vocabulary
    public let settings: BertTokenizerSettings
    /// Uncased mode: lower-case (and strip accents unless the settings say otherwise).
    public var lowercase: Bool { settings.lowercase }

    /// The state and the loops, in a class so that the hot path never copies this struct.
    let engine: TokenizerEngine

    public init(vocabulary: Vocabulary, settings: BertTokenizerSettings) {
        self.vocabulary = vocabulary
        self.settings = settings
        engine = TokenizerEngine(vocabulary: vocabulary, settings: settings)
    }

    /// bert-base-uncased's settings when `lowercase`, bert-base-cased's otherwise.
    public init(vocabulary: Vocabulary, lowercase: Bool = true) {
        self.init(vocabulary: vocabulary, settings: BertTokenizerSettings(lowercase: lowercase))
    }

    /// The words WordPiece receives: cleaned, CJK split, normalised, cased or not, punctuation split.
    public func basicTokenize(_ text: String) -> [String] {
        var words: [String] = []
        engine.forEachBasicToken(text) { special, piece in
            if special >= 0 {
                words.append(vocabulary.token(for: special))
            } else {
                var word = ""
                word.unicodeScalars.append(contentsOf: piece.lazy.map { Unicode.Scalar($0)! })
                words.append(word)
            }
        }
        return words
    }

    /// The WordPieces of `text` (no [CLS]/[SEP]).
    public func tokenize(_ text: String) -> [String] {
        encode(text).map { vocabulary.token(for: $0) }
    }

    /// The token ids of `text` (no [CLS]/[SEP]).
    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        encode(text, into: &ids)
        return ids
    }

    /// Appends the token ids of `text` to `ids` (no [CLS]/[SEP]); for tokenizing many lines without
    /// allocating an array per line.
    public func encode(_ text: String, into ids: inout [Int32]) {
        engine.encode(text, into: &ids)
    }

    /// Calls `body` with the scalars of each basic token, skipping special tokens written in the
    /// text (for the vocabulary builder, which counts words).
    func forEachWord(_ text: String, _ body: (UnsafeBufferPointer<UInt32>) -> Void) {
        engine.forEachBasicToken(text) { special, piece in
            if special >= 0 { return }
            body(piece)
        }
    }
}

/// The settings of BERT's tokenizer, named as Hugging Face's `tokenizer_config.json` /
/// `BertNormalizer` and `WordPiece` in `tokenizer.json` name them.
public struct BertTokenizerSettings: Equatable, Sendable {
    /// `do_lower_case` / `lowercase`.
    public var lowercase: Bool
    /// `strip_accents`: NFD, then drop category Mn; nil strips exactly when `lowercase`, as BERT does.
    public var stripAccents: Bool?
    /// `tokenize_chinese_chars` / `handle_chinese_chars`: every CJK ideograph is a word of its own.
    public var splitsChineseCharacters: Bool
    /// `max_input_chars_per_word`: longer pieces become `[UNK]`.
    public var maxCharactersPerWord: Int

    public init(
        lowercase: Bool = true, stripAccents: Bool? = nil, splitsChineseCharacters: Bool = true,
        maxCharactersPerWord: Int = 100
    ) {
        self.lowercase = lowercase
        self.stripAccents = stripAccents
        self.splitsChineseCharacters = splitsChineseCharacters
        self.maxCharactersPerWord = maxCharactersPerWord
    }

    /// Whether accents are stripped, with `stripAccents` nil resolved.
    public var stripsAccents: Bool { stripAccents ?? lowercase }
}

// MARK: - Engine

/// The loops of `BertTokenizer`: basic tokenization over UTF-8 bytes and scalar buffers, and
/// WordPiece over the vocabulary's trie.
final class TokenizerEngine: @unchecked Sendable {
    let lowercase: Bool
    let stripsAccents: Bool
    /// `UnicodeCharacterData.Flags.cjk` when CJK ideographs are words of their own, else 0.
    let cjkSeparates: UInt16
    private let maxCharactersPerWord: Int
    private let unicode = UnicodeCharacterData.shared
    private let trie: TokenTrie
    private let unknownID: Int32
    /// The special tokens' UTF-8 bytes and ids.
    private let specials: [SpecialToken]
    /// The trie node of "##", where continuation pieces start, or -1.
    private let continuationNode: Int32

    private struct SpecialToken {
        let bytes: [UInt8]
        let id: Int32
    }

    init(vocabulary: Vocabulary, settings: BertTokenizerSettings) {
        lowercase = settings.lowercase
        stripsAccents = settings.stripsAccents
        cjkSeparates = settings.splitsChineseCharacters ? UnicodeCharacterData.Flags.cjk.rawValue : 0
        maxCharactersPerWord = settings.maxCharactersPerWord
        specials = Vocabulary.specialTokens.map { SpecialToken(bytes: Array($0.utf8), id: vocabulary.id(for: $0)!) }
        trie = vocabulary.trie
        unknownID = vocabulary.unknownID
        continuationNode = vocabulary.trie.node(for: "##")
    }

    func encode(_ text: String, into ids: inout [Int32]) {
        forEachBasicToken(text) { special, piece in
            if special >= 0 {
                ids.append(special)
            } else {
                appendWordPieceIDs(piece, to: &ids)
            }
        }
    }

    /// Calls `body(specialID, [])` for each special token and `body(-1, piece)` for each basic token.
    func forEachBasicToken(_ text: String, _ body: (Int32, UnsafeBufferPointer<UInt32>) -> Void) {
        var workspace = Workspace()
        forEachBasicToken(text, &workspace, body)
    }

    // MARK: - WordPiece

    /// Greedy longest-match-first: at each position the longest vocabulary entry that is a prefix of
    /// the rest ("##"-prefixed after the first piece); all of `word` becomes [UNK] if some position has
    /// none.
    func appendWordPieceIDs(_ word: UnsafeBufferPointer<UInt32>, to ids: inout [Int32]) {
        if word.count > maxCharactersPerWord {
            ids.append(unknownID)
            return
        }
        let firstID = ids.count
        var start = 0
        while start < word.count {
            var node = start == 0 ? TokenTrie.root : continuationNode
            var matchEnd = -1
            var matchID: Int32 = -1
            var position = start
            while node >= 0 && position < word.count {
                node = trie.child(node, word[position])
                position += 1
                if node >= 0 {
                    let id = trie.tokenIDs[Int(node)]
                    if id >= 0 { matchEnd = position; matchID = id }
                }
            }
            if matchEnd < 0 {
                ids.removeSubrange(firstID...)
                ids.append(unknownID)
                return
            }
            ids.append(matchID)
            start = matchEnd
        }
    }

    // MARK: - Basic tokenization

    /// Reusable buffers of one tokenization call.
    struct Workspace {
        var word: [UInt32] = []
        var normalized: [UInt32] = []
        var scratch: [UInt32] = []
        init() {
            word.reserveCapacity(64)
            normalized.reserveCapacity(64)
            scratch.reserveCapacity(64)
        }
    }

    func forEachBasicToken(
        _ text: String, _ workspace: inout Workspace,
        _ body: (Int32, UnsafeBufferPointer<UInt32>) -> Void
    ) {
        let scan = { (bytes: UnsafeBufferPointer<UInt8>) in
            self.scan(bytes, &workspace, body)
        }
        if text.utf8.withContiguousStorageIfAvailable(scan) == nil {
            Array(text.utf8).withUnsafeBufferPointer(scan)
        }
    }

    private func scan(
        _ bytes: UnsafeBufferPointer<UInt8>, _ workspace: inout Workspace,
        _ body: (Int32, UnsafeBufferPointer<UInt32>) -> Void
    ) {
        let flags = unicode.flags
        let dropped = UnicodeCharacterData.Flags.dropped.rawValue
        let whitespace = UnicodeCharacterData.Flags.whitespace.rawValue
        let cjk = cjkSeparates
        var wordFlags: UInt16 = 0
        var i = 0
        let count = bytes.count
        while i < count {
            let lead = bytes[i]
            if lead == UInt8(ascii: "["), let special = specialToken(in: bytes, at: i) {
                finishWord(&workspace, wordFlags, body)
                wordFlags = 0
                body(special.id, UnsafeBufferPointer(start: nil, count: 0))
                i += special.bytes.count
                continue
            }
            // Decode one scalar (Swift strings hold valid UTF-8).
            var scalar: UInt32
            if lead < 0x80 {
                scalar = UInt32(lead); i += 1
            } else if lead < 0xE0 {
                scalar = UInt32(lead & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F); i += 2
            } else if lead < 0xF0 {
                scalar = UInt32(lead & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6 | UInt32(bytes[i + 2] & 0x3F)
                i += 3
            } else {
                scalar = UInt32(lead & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12
                    | UInt32(bytes[i + 2] & 0x3F) << 6 | UInt32(bytes[i + 3] & 0x3F)
                i += 4
            }
            let scalarFlags = flags[Int(scalar)]
            if scalarFlags & (dropped | whitespace | cjk) == 0 {
                workspace.word.append(scalar)
                wordFlags |= scalarFlags
            } else if scalarFlags & whitespace != 0 {
                finishWord(&workspace, wordFlags, body)
                wordFlags = 0
            } else if scalarFlags & cjk != 0 {
                finishWord(&workspace, wordFlags, body)
                workspace.word.append(scalar)
                finishWord(&workspace, scalarFlags, body)
                wordFlags = 0
            }
            // Dropped characters vanish without separating words.
        }
        finishWord(&workspace, wordFlags, body)
    }

    @inline(__always)
    private func specialToken(in bytes: UnsafeBufferPointer<UInt8>, at start: Int) -> SpecialToken? {
        for special in specials where start + special.bytes.count <= bytes.count {
            var matches = true
            for offset in 0..<special.bytes.count where bytes[start + offset] != special.bytes[offset] {
                matches = false
                break
            }
            if matches { return special }
        }
        return nil
    }

    /// Normalises, cases and punctuation-splits the word in `workspace.word`, then empties it.
    /// The word moves between the workspace's buffers without copying (`inNormalized` says where it is).
    private func finishWord(
        _ workspace: inout Workspace, _ wordFlags: UInt16, _ body: (Int32, UnsafeBufferPointer<UInt32>) -> Void
    ) {
        if workspace.word.isEmpty { return }
        typealias Flags = UnicodeCharacterData.Flags
        var flagsSeen = wordFlags
        var inNormalized = false
        if flagsSeen & Flags.normalizationSensitive.rawValue != 0 {
            workspace.normalized.removeAll(keepingCapacity: true)
            workspace.word.withUnsafeBufferPointer {
                unicode.appendDecomposition(of: $0, to: &workspace.normalized)
            }
            unicode.compose(&workspace.normalized)
            inNormalized = true
            flagsSeen = flagsOf(workspace.normalized)
        }
        // After NFC, a word that spells a special token stays whole (the reference's never_split).
        let special = inNormalized ? wholeSpecialToken(workspace.normalized) : wholeSpecialToken(workspace.word)
        if special >= 0 {
            body(special, UnsafeBufferPointer(start: nil, count: 0))
            workspace.word.removeAll(keepingCapacity: true)
            return
        }
        if lowercase, flagsSeen & Flags.hasLowercase.rawValue != 0 {
            workspace.scratch.removeAll(keepingCapacity: true)
            if inNormalized {
                workspace.normalized.withUnsafeBufferPointer { unicode.appendLowercase(of: $0, to: &workspace.scratch) }
            } else {
                workspace.word.withUnsafeBufferPointer { unicode.appendLowercase(of: $0, to: &workspace.scratch) }
            }
            swap(&workspace.scratch, &workspace.normalized)
            inNormalized = true
            flagsSeen = flagsOf(workspace.normalized)
        }
        if stripsAccents {
            // Accent stripping: NFD, then drop category Mn.
            if flagsSeen & Flags.normalizationSensitive.rawValue != 0 {
                workspace.scratch.removeAll(keepingCapacity: true)
                if inNormalized {
                    workspace.normalized.withUnsafeBufferPointer { unicode.appendDecomposition(of: $0, to: &workspace.scratch) }
                } else {
                    workspace.word.withUnsafeBufferPointer { unicode.appendDecomposition(of: $0, to: &workspace.scratch) }
                }
                swap(&workspace.scratch, &workspace.normalized)
                inNormalized = true
                flagsSeen = flagsOf(workspace.normalized)
            }
            if flagsSeen & Flags.nonspacingMark.rawValue != 0 {
                if !inNormalized {
                    swap(&workspace.word, &workspace.normalized)
                    inNormalized = true
                }
                let marks = Flags.nonspacingMark.rawValue
                let flags = unicode.flags
                workspace.normalized.removeAll { flags[Int($0)] & marks != 0 }
            }
        }
        let splitsOnPunctuation = flagsSeen & Flags.punctuation.rawValue != 0
        if inNormalized {
            workspace.normalized.withUnsafeBufferPointer { emitPieces($0, splitsOnPunctuation, body) }
        } else {
            workspace.word.withUnsafeBufferPointer { emitPieces($0, splitsOnPunctuation, body) }
        }
        workspace.word.removeAll(keepingCapacity: true)
    }

    /// Punctuation splitting: every punctuation character is a piece of its own.
    @inline(__always)
    private func emitPieces(
        _ word: UnsafeBufferPointer<UInt32>, _ splitsOnPunctuation: Bool,
        _ body: (Int32, UnsafeBufferPointer<UInt32>) -> Void
    ) {
        guard splitsOnPunctuation else {
            if !word.isEmpty { body(-1, word) }
            return
        }
        let punctuation = UnicodeCharacterData.Flags.punctuation.rawValue
        let flags = unicode.flags
        var pieceStart = 0
        for index in 0..<word.count where flags[Int(word[index])] & punctuation != 0 {
            if pieceStart < index { body(-1, UnsafeBufferPointer(rebasing: word[pieceStart..<index])) }
            body(-1, UnsafeBufferPointer(rebasing: word[index..<(index + 1)]))
            pieceStart = index + 1
        }
        if pieceStart < word.count { body(-1, UnsafeBufferPointer(rebasing: word[pieceStart...])) }
    }

    private func flagsOf(_ text: [UInt32]) -> UInt16 {
        var result: UInt16 = 0
        let flags = unicode.flags
        for scalar in text { result |= flags[Int(scalar)] }
        return result
    }

    /// The id of the special token `word` spells exactly, or -1.
    private func wholeSpecialToken(_ word: [UInt32]) -> Int32 {
        guard word.count == 5 || word.count == 6, word[0] == UInt32(UInt8(ascii: "[")) else { return -1 }
        for special in specials where special.bytes.count == word.count {
            var matches = true
            for offset in 0..<word.count where UInt32(special.bytes[offset]) != word[offset] {
                matches = false
                break
            }
            if matches { return special.id }
        }
        return -1
    }
}
