import Foundation

/// Learns a WordPiece vocabulary from a corpus.
///
/// Words are what `BertTokenizer.basicTokenize` gives (so CJK ideographs are words of one character
/// and punctuation is split off), counted over the corpus. Every word starts as its characters, the
/// first as itself and the others with the "##" continuation prefix; the most frequent adjacent pair
/// of symbols is merged into one new symbol, again and again, until the vocabulary has the requested
/// size (this is how Hugging Face `tokenizers`' WordPiece trainer learns). Ties go to the pair of
/// older symbols, so the result depends only on the corpus and the options.
///
/// The layout mirrors `bert-base-uncased`: [PAD] at 0, [unused0] ... [unused98] at 1-99, [UNK] [CLS]
/// [SEP] [MASK] at 100-103; then the alphabet (word-initial characters, then "##" characters, each in
/// scalar order), then the merged symbols in the order they were learned.
public struct VocabularyBuilder {
    /// Ids 0...103: [PAD], [unused0]...[unused98], [UNK], [CLS], [SEP], [MASK].
    public static let reservedTokens: [String] =
        ["[PAD]"] + (0..<99).map { "[unused\($0)]" } + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]

    public let lowercase: Bool
    /// Pairs seen fewer times than this are never merged.
    public let minimumPairFrequency: Int
    private let tokenizer: BertTokenizer
    private var wordCounts: [[UInt32]: Int] = [:]

    /// - Parameters:
    ///   - lowercase: count words as the uncased tokenizer sees them (lower-cased, accents stripped).
    ///   - minimumPairFrequency: stop merging when no pair is seen this often.
    public init(lowercase: Bool = true, minimumPairFrequency: Int = 2) {
        self.lowercase = lowercase
        self.minimumPairFrequency = max(1, minimumPairFrequency)
        // Basic tokenization does not depend on the vocabulary beyond the special tokens.
        let specialsOnly = try! Vocabulary(tokens: Vocabulary.specialTokens)
        tokenizer = BertTokenizer(vocabulary: specialsOnly, lowercase: lowercase)
    }

    /// Distinct words counted so far.
    public var distinctWordCount: Int { wordCounts.count }

    /// Counts the words of `text` (line breaks are whitespace, so lines need no splitting).
    public mutating func add(text: String) {
        tokenizer.forEachWord(text) { word in
            wordCounts[Array(word), default: 0] += 1
        }
    }

    /// Counts the words of a UTF-8 text file.
    public mutating func add(contentsOfFile path: String) throws {
        let data: Foundation.Data
        do {
            data = try Foundation.Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw VocabularyBuilderError.unreadable(path: path, reason: error.localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw VocabularyBuilderError.notUTF8(path: path)
        }
        add(text: text)
    }

    /// The characters of the corpus as symbols: word-initial ones, then continuation ones.
    private func alphabet() -> [Symbol] {
        var initial = Set<UInt32>()
        var continuation = Set<UInt32>()
        for word in wordCounts.keys {
            initial.insert(word[0])
            for scalar in word.dropFirst() { continuation.insert(scalar) }
        }
        return initial.sorted().map { Symbol(scalars: [$0], isContinuation: false) }
            + continuation.sorted().map { Symbol(scalars: [$0], isContinuation: true) }
    }

    /// The smallest size `build(size:)` accepts for the words counted so far.
    public var minimumSize: Int { Self.reservedTokens.count + alphabet().count }

    /// Learns a vocabulary of at most `size` tokens (fewer when no pair is frequent enough to merge).
    public func build(size: Int) throws -> Vocabulary {
        guard !wordCounts.isEmpty else { throw VocabularyBuilderError.emptyCorpus }
        var symbols = alphabet()
        let required = Self.reservedTokens.count + symbols.count
        guard size >= required else {
            throw VocabularyBuilderError.sizeTooSmall(size: size, reserved: Self.reservedTokens.count,
                                                      alphabet: symbols.count)
        }
        var symbolIDs: [Symbol: Int32] = [:]
        for (id, symbol) in symbols.enumerated() { symbolIDs[symbol] = Int32(id) }

        // Distinct words in scalar order, each as a sequence of symbol ids.
        let sortedWords = wordCounts.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        var words: [[Int32]] = sortedWords.map { entry in
            entry.key.enumerated().map { index, scalar in
                symbolIDs[Symbol(scalars: [scalar], isContinuation: index > 0)]!
            }
        }
        let frequencies = sortedWords.map(\.value)

        var pairCounts: [UInt64: Int] = [:]
        var pairWords: [UInt64: [Int32]] = [:]
        for (wordIndex, word) in words.enumerated() where word.count > 1 {
            for i in 0..<(word.count - 1) {
                let pair = Self.pair(word[i], word[i + 1])
                pairCounts[pair, default: 0] += frequencies[wordIndex]
                pairWords[pair, default: []].append(Int32(wordIndex))
            }
        }
        var heap = PairHeap()
        for (pair, count) in pairCounts { heap.push(count: count, pair: pair) }

        var learned: [Symbol] = []
        var lastVisit = [Int](repeating: -1, count: words.count)
        var changed = Set<UInt64>()
        var mergeIndex = 0
        while required + learned.count < size, let top = heap.pop() {
            guard pairCounts[top.pair] == top.count else { continue }  // stale entry
            if top.count < minimumPairFrequency { break }
            let (left, right) = (Int32(truncatingIfNeeded: top.pair >> 32), Int32(truncatingIfNeeded: top.pair))
            let merged = Symbol(scalars: symbols[Int(left)].scalars + symbols[Int(right)].scalars,
                                isContinuation: symbols[Int(left)].isContinuation)
            let mergedID: Int32
            if let existing = symbolIDs[merged] {
                mergedID = existing  // the same string learned through another split
            } else {
                mergedID = Int32(symbols.count)
                symbols.append(merged)
                symbolIDs[merged] = mergedID
                learned.append(merged)
            }
            changed.removeAll(keepingCapacity: true)
            for wordIndex in pairWords[top.pair] ?? [] where lastVisit[Int(wordIndex)] != mergeIndex {
                lastVisit[Int(wordIndex)] = mergeIndex
                let word = words[Int(wordIndex)]
                let frequency = frequencies[Int(wordIndex)]
                var rewritten: [Int32] = []
                rewritten.reserveCapacity(word.count)
                var i = 0
                while i < word.count {
                    if i + 1 < word.count && word[i] == left && word[i + 1] == right {
                        rewritten.append(mergedID)
                        i += 2
                    } else {
                        rewritten.append(word[i])
                        i += 1
                    }
                }
                for i in 0..<(word.count - 1) {
                    let pair = Self.pair(word[i], word[i + 1])
                    pairCounts[pair]! -= frequency
                    changed.insert(pair)
                }
                for i in 0..<max(0, rewritten.count - 1) {
                    let pair = Self.pair(rewritten[i], rewritten[i + 1])
                    pairCounts[pair, default: 0] += frequency
                    changed.insert(pair)
                    pairWords[pair, default: []].append(wordIndex)
                }
                words[Int(wordIndex)] = rewritten
            }
            pairWords[top.pair] = nil
            for pair in changed {
                let count = pairCounts[pair]!
                if count > 0 { heap.push(count: count, pair: pair) } else { pairCounts[pair] = nil }
            }
            mergeIndex += 1
        }
        return try Vocabulary(tokens: Self.reservedTokens + symbols.map(\.token))
    }

    @inline(__always)
    private static func pair(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }
}

/// A vocabulary entry being learned: its characters, and whether it continues a word ("##").
private struct Symbol: Hashable {
    var scalars: [UInt32]
    var isContinuation: Bool

    var token: String {
        var text = isContinuation ? "##" : ""
        text.unicodeScalars.append(contentsOf: scalars.map { Unicode.Scalar($0)! })
        return text
    }
}

/// A max-heap of (count, pair); equal counts pop the smaller pair (older symbols) first.
private struct PairHeap {
    private var heap = BinaryHeap<(count: Int, pair: UInt64)> { a, b in a.count != b.count ? a.count > b.count : a.pair < b.pair }

    mutating func push(count: Int, pair: UInt64) { heap.push((count, pair)) }

    mutating func pop() -> (count: Int, pair: UInt64)? { heap.pop() }
}

/// Why a vocabulary could not be learned.
public enum VocabularyBuilderError: Error, LocalizedError, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case notUTF8(path: String)
    case emptyCorpus
    case sizeTooSmall(size: Int, reserved: Int, alphabet: Int)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "cannot read corpus file '\(path)' (\(reason)); check the --input paths."
        case .notUTF8(let path):
            return "corpus file '\(path)' is not valid UTF-8; convert it to UTF-8 first."
        case .emptyCorpus:
            return "the corpus has no words: give files that contain text."
        case .sizeTooSmall(let size, let reserved, let alphabet):
            return "a vocabulary of \(size) tokens cannot hold the \(reserved) reserved tokens and the "
                + "\(alphabet) characters of this corpus; ask for at least \(reserved + alphabet)."
        }
    }

    public var errorDescription: String? { description }
}
