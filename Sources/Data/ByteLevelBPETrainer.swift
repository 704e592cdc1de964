import Foundation

/// Learns a byte-level BPE tokenizer (GPT-2's kind) from a corpus, merge for merge as the Hugging Face
/// `tokenizers` library's `BpeTrainer` learns one for `ByteLevelBPETokenizer.train(files)`.
///
/// Words are the pre-tokens of GPT-2's pattern (`ByteLevelPreTokenizer`), as byte strings, counted
/// line by line: tokenizers feeds a file one line at a time, the line break kept, so a run of
/// whitespace never spans two lines. The vocabulary starts with the special tokens, then the 256
/// byte tokens in the order of the characters that spell them; then the most frequent adjacent pair
/// is merged, again and again, until the vocabulary has the requested size or no pair is seen
/// `minimumPairFrequency` times. Equal counts go to the smaller pair of ids.
///
/// The merge loop keeps `BpeTrainer`'s bookkeeping where it shapes the result: a queue entry carries
/// the words it was made from and merges only in those; a merged pair's own count is not lowered;
/// and a pair merged twice keeps the rank of its last merge.
public struct ByteLevelBPETrainer {
    /// Tokens placed first in the vocabulary, in this order, and never learned from the text.
    public let specialTokens: [String]
    /// Pairs seen fewer times than this are never merged.
    public let minimumPairFrequency: Int
    /// Threads that count words; the counts, and so the result, do not depend on it.
    public let threadCount: Int
    private var wordCounts: [[UInt8]: Int] = [:]

    public init(
        specialTokens: [String] = [ByteLevelBPE.endOfText], minimumPairFrequency: Int = 2,
        threadCount: Int = ProcessInfo.processInfo.activeProcessorCount
    ) {
        self.specialTokens = specialTokens
        self.minimumPairFrequency = max(1, minimumPairFrequency)
        self.threadCount = max(1, threadCount)
    }

    /// Distinct words counted so far.
    public var distinctWordCount: Int { wordCounts.count }

    /// The count of each distinct word (its UTF-8 bytes) so far.
    public var words: [[UInt8]: Int] { wordCounts }

    /// Counts the words of `text`, one line at a time.
    public mutating func add(text: String) {
        Self.countWords(in: Substring(text), into: &wordCounts)
    }

    /// Counts the words of UTF-8 text files on `threadCount` threads, each file cut into chunks at
    /// line breaks. `progress` gets the bytes counted so far and the total, from any thread.
    public mutating func add(contentsOfFiles paths: [String], progress: ((_ bytes: Int, _ total: Int) -> Void)? = nil) throws {
        var files: [Foundation.Data] = []
        for path in paths {
            do {
                files.append(try Foundation.Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped))
            } catch {
                throw ByteLevelBPETrainerError.unreadable(path: path, reason: error.localizedDescription)
            }
        }
        var chunks: [(file: Int, range: Range<Int>)] = []
        for (index, data) in files.enumerated() {
            data.withUnsafeBytes { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                var start = 0
                while start < bytes.count {
                    var end = min(bytes.count, start + Self.chunkBytes)
                    while end < bytes.count && bytes[end - 1] != UInt8(ascii: "\n") { end += 1 }
                    chunks.append((index, start..<end))
                    start = end
                }
            }
        }
        let total = chunks.reduce(0) { $0 + $1.range.count }
        let workers = min(threadCount, max(1, chunks.count))
        var counts = Array(repeating: [[UInt8]: Int](), count: workers)
        var failures: [Int: Int] = [:]  // chunk -> file, for chunks that are not UTF-8
        var done = 0
        let lock = NSLock()
        counts.withUnsafeMutableBufferPointer { counts in
            forEachDynamically(chunks.count, workers: workers) { worker, c in
                let chunk = chunks[c]
                let text = files[chunk.file][chunk.range].withUnsafeBytes { raw in
                    String(validatingUTF8Bytes: raw.bindMemory(to: UInt8.self))
                }
                if let text {
                    Self.countWords(in: Substring(text), into: &counts[worker])
                }
                lock.lock()
                if text == nil { failures[c] = chunk.file }
                done += chunk.range.count
                let bytesDone = done
                lock.unlock()
                progress?(bytesDone, total)
            }
        }
        if let first = failures.keys.min() {
            throw ByteLevelBPETrainerError.notUTF8(path: paths[failures[first]!])
        }
        for local in counts {
            for (word, count) in local { wordCounts[word, default: 0] += count }
        }
    }

    /// Chunks of about this size (up to the next line break) keep every thread busy to the end.
    private static let chunkBytes = 1 << 20

    /// The pre-tokens of each line of `text`, its line break included, counted.
    private static func countWords(in text: Substring, into counts: inout [[UInt8]: Int]) {
        let utf8 = text.utf8
        var lineStart = utf8.startIndex
        var position = utf8.startIndex
        while position < utf8.endIndex {
            let byte = utf8[position]
            position = utf8.index(after: position)
            if byte == UInt8(ascii: "\n") {
                ByteLevelPreTokenizer.forEachPreToken(in: text[lineStart..<position]) { counts[$0, default: 0] += 1 }
                lineStart = position
            }
        }
        if lineStart < utf8.endIndex {
            ByteLevelPreTokenizer.forEachPreToken(in: text[lineStart...]) { counts[$0, default: 0] += 1 }
        }
    }

    // MARK: - Merges

    /// Learns a tokenizer of at most `vocabularySize` tokens (fewer when no pair is frequent enough).
    /// `progress` gets the number of merges done.
    public func learn(vocabularySize: Int, progress: ((_ merges: Int) -> Void)? = nil) throws -> ByteLevelBPEModel {
        let minimum = Set(specialTokens).count + 256
        guard vocabularySize > minimum else {
            throw ByteLevelBPETrainerError.sizeTooSmall(size: vocabularySize, specialTokens: Set(specialTokens).count)
        }
        guard !wordCounts.isEmpty else { throw ByteLevelBPETrainerError.emptyCorpus }

        // Token strings are compared as tokenizers compares them, by their spelling: a special token
        // spelled like a byte or a learned token is that token.
        var tokens: [String] = []
        var tokenBytes: [[UInt8]] = []
        var ids: [String: Int32] = [:]
        func add(_ spelling: String, bytes: [UInt8]) -> Int32 {
            if let id = ids[spelling] { return id }
            let id = Int32(tokens.count)
            tokens.append(spelling)
            tokenBytes.append(bytes)
            ids[spelling] = id
            return id
        }
        for token in specialTokens { _ = add(token, bytes: Array(token.utf8)) }
        let alphabet = (0...255).sorted { ByteLevelBPE.byteToCharacter[$0].unicodeScalars.first!.value
            < ByteLevelBPE.byteToCharacter[$1].unicodeScalars.first!.value }
        var byteIDs = [Int32](repeating: 0, count: 256)
        for byte in alphabet { byteIDs[byte] = add(String(ByteLevelBPE.byteToCharacter[byte]), bytes: [UInt8(byte)]) }

        // Distinct words in byte order, so that everything below is the same from run to run.
        let sortedWords = wordCounts.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        var words: [[Int32]] = sortedWords.map { $0.key.map { byteIDs[Int($0)] } }
        let counts = sortedWords.map(\.value)

        var pairCounts: [UInt64: Int] = [:]
        var pairWords: [UInt64: [Int32]] = [:]
        for (w, word) in words.enumerated() where word.count > 1 {
            for i in 0..<(word.count - 1) {
                let pair = Self.pair(word[i], word[i + 1])
                pairCounts[pair, default: 0] += counts[w]
                if pairWords[pair]?.last != Int32(w) { pairWords[pair, default: []].append(Int32(w)) }
            }
        }
        var queue = MergeQueue()
        for pair in pairWords.keys.sorted() where pairCounts[pair]! > 0 {
            queue.push(count: pairCounts[pair]!, pair: pair, words: pairWords[pair]!)
        }
        pairWords.removeAll()

        var merges: [(pair: UInt64, merged: Int32)] = []
        var changes: [(pair: UInt64, change: Int)] = []
        while tokens.count < vocabularySize, var top = queue.pop() {
            let current = pairCounts[top.pair]!
            if top.count != current {
                // Stale: back in the queue at its count now, with the same words.
                top.count = current
                queue.push(top)
                continue
            }
            if top.count < minimumPairFrequency { break }
            let (left, right) = (Int32(truncatingIfNeeded: top.pair >> 32), Int32(truncatingIfNeeded: top.pair))
            let merged = add(tokens[Int(left)] + tokens[Int(right)], bytes: tokenBytes[Int(left)] + tokenBytes[Int(right)])
            merges.append((top.pair, merged))

            for w in queue.words(of: top) {
                changes.removeAll(keepingCapacity: true)
                Self.merge(left, right, into: merged, in: &words[Int(w)], changes: &changes)
                for (pair, change) in changes {
                    pairCounts[pair, default: 0] += change * counts[Int(w)]
                    if change > 0, pairWords[pair]?.last != w { pairWords[pair, default: []].append(w) }
                }
            }
            queue.release(top)
            for pair in pairWords.keys.sorted() where pairCounts[pair]! > 0 {
                queue.push(count: pairCounts[pair]!, pair: pair, words: pairWords[pair]!)
            }
            pairWords.removeAll(keepingCapacity: true)
            progress?(merges.count)
        }

        // A pair merged twice (a later queue entry with other words) keeps its last rank.
        var lastRank: [UInt64: Int] = [:]
        for (rank, merge) in merges.enumerated() { lastRank[merge.pair] = rank }
        let ranked = merges.enumerated().filter { lastRank[$0.element.pair] == $0.offset }.map(\.element.pair)
        return ByteLevelBPEModel(
            tokens: tokens,
            merges: ranked.map { (tokens[Int($0 >> 32)], tokens[Int(UInt32(truncatingIfNeeded: $0))]) },
            specialTokens: specialTokens.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } })
    }

    /// Replaces each `left right` in `word`, left to right, by `merged`, and records how the counts of
    /// the pairs around it change (the merged pair's own count is left as it was, as tokenizers does).
    private static func merge(_ left: Int32, _ right: Int32, into merged: Int32, in word: inout [Int32], changes: inout [(pair: UInt64, change: Int)]) {
        var i = 0
        while i < word.count {
            if word[i] == left && i + 1 < word.count && word[i + 1] == right {
                if i > 0 {
                    changes.append((pair(word[i - 1], left), -1))
                    changes.append((pair(word[i - 1], merged), 1))
                }
                word[i] = merged
                word.remove(at: i + 1)
                if i < word.count - 1 {
                    changes.append((pair(right, word[i + 1]), -1))
                    changes.append((pair(merged, word[i + 1]), 1))
                }
            }
            i += 1
        }
    }

    @inline(__always)
    private static func pair(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }
}

/// A max-heap of candidate merges: the highest count first, then the smaller pair (as ids), then the
/// entry pushed first. Each entry holds the words (indices) it merges in.
private struct MergeQueue {
    struct Entry {
        var count: Int
        var pair: UInt64
        var order: Int
        var words: Int
    }

    private var entries = BinaryHeap<Entry> { a, b in
        if a.count != b.count { return a.count > b.count }
        if a.pair != b.pair { return a.pair < b.pair }
        return a.order < b.order
    }
    private var wordLists: [[Int32]] = []
    private var freeLists: [Int] = []
    private var pushes = 0

    func words(of entry: Entry) -> [Int32] { wordLists[entry.words] }

    /// Frees the word list of an entry that has been merged.
    mutating func release(_ entry: Entry) {
        wordLists[entry.words] = []
        freeLists.append(entry.words)
    }

    mutating func push(count: Int, pair: UInt64, words: [Int32]) {
        let list: Int
        if let free = freeLists.popLast() {
            list = free
            wordLists[free] = words
        } else {
            list = wordLists.count
            wordLists.append(words)
        }
        push(Entry(count: count, pair: pair, order: 0, words: list))
    }

    mutating func push(_ entry: Entry) {
        var entry = entry
        entry.order = pushes
        pushes += 1
        entries.push(entry)
    }

    mutating func pop() -> Entry? { entries.pop() }
}

/// A byte-level BPE tokenizer as its files hold it.
public struct ByteLevelBPEModel: Equatable {
    /// Each id's token: special tokens as their text, the others spelled in the byte alphabet
    /// (`ByteLevelBPE.spelling(of:)`).
    public var tokens: [String]
    /// The merges in rank order, as pairs of spelled tokens.
    public var merges: [(String, String)]
    /// Tokens matched whole in text before pre-tokenization (`<|endoftext|>`), each in `tokens`.
    public var specialTokens: [String]

    public init(tokens: [String], merges: [(String, String)], specialTokens: [String]) {
        self.tokens = tokens
        self.merges = merges
        self.specialTokens = specialTokens
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.tokens == b.tokens && a.specialTokens == b.specialTokens && a.merges.count == b.merges.count
            && zip(a.merges, b.merges).allSatisfy { $0 == $1 }
    }
}

/// Why a byte-level BPE tokenizer could not be learned.
public enum ByteLevelBPETrainerError: Error, LocalizedError, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case notUTF8(path: String)
    case emptyCorpus
    case sizeTooSmall(size: Int, specialTokens: Int)

    public var description: String {
        switch self {
        case let .unreadable(path, reason):
            return "cannot read corpus file '\(path)' (\(reason)); check the --input paths."
        case let .notUTF8(path):
            return "corpus file '\(path)' is not valid UTF-8; convert it to UTF-8 first."
        case .emptyCorpus:
            return "the corpus has no words: give files that contain text."
        case let .sizeTooSmall(size, specialTokens):
            return "a byte-level BPE vocabulary of \(size) tokens holds no merge beside the \(specialTokens) special "
                + "tokens and the 256 byte tokens; ask for at least \(specialTokens + 257) (GPT-2 has 50257)."
        }
    }

    public var errorDescription: String? { description }
}

extension String {
    /// The text of `bytes` if they are valid UTF-8, else nil.
    init?(validatingUTF8Bytes bytes: UnsafeBufferPointer<UInt8>) {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        loop: while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: break loop
            case .error: return nil
            }
        }
        self.init(decoding: bytes, as: UTF8.self)
    }
}
