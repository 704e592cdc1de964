import Crypto
import Foundation

/// A BERT WordPiece vocabulary (`vocab.txt`): one token a line, the line number is the id.
///
/// Tokens are compared scalar by scalar, as Python compares strings (Swift's `String` equality would
/// treat "é" and "e\u{301}" as the same token; the reference does not). When a token appears twice
/// the later id wins, as in the reference `load_vocab`. The five special tokens must be present.
public final class Vocabulary: Sendable {
    /// The special tokens BERT uses, in the order of `bert-base-uncased`'s ids.
    public static let specialTokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

    /// Every token, indexed by id.
    public let tokens: [String]
    public let padID: Int32
    public let unknownID: Int32
    public let classifierID: Int32
    public let separatorID: Int32
    public let maskID: Int32
    /// SHA-256 (hex) of the tokens joined by "\n": identifies the vocabulary in shards and checkpoints.
    public let fingerprint: String
    let trie: TokenTrie

    /// Reads a BERT `vocab.txt` (UTF-8). Lines end with "\n", "\r\n" or "\r", as Python's text mode
    /// reads them.
    public convenience init(contentsOfFile path: String) throws {
        let data: Foundation.Data
        do {
            data = try Foundation.Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw VocabularyError.unreadable(path: path, reason: error.localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw VocabularyError.notUTF8(path: path)
        }
        try self.init(tokens: Self.lines(of: text), source: path)
    }

    /// A vocabulary from its tokens in id order.
    public convenience init(tokens: [String]) throws {
        try self.init(tokens: tokens, source: nil)
    }

    private init(tokens: [String], source: String?) throws {
        guard !tokens.isEmpty else { throw VocabularyError.empty(path: source) }
        guard tokens.count <= Int(Int32.max) else { throw VocabularyError.tooLarge(path: source, count: tokens.count) }
        self.tokens = tokens
        trie = TokenTrie(tokens: tokens)
        var ids: [Int32] = []
        for special in Self.specialTokens {
            guard let id = trie.id(of: special) else {
                throw VocabularyError.missingSpecialToken(path: source, token: special)
            }
            ids.append(id)
        }
        (padID, unknownID, classifierID, separatorID, maskID) = (ids[0], ids[1], ids[2], ids[3], ids[4])
        fingerprint = SHA256.hash(data: Array(tokens.joined(separator: "\n").utf8))
            .map { String(format: "%02x", $0) }.joined()
    }

    /// Splits like Python's `readlines()` in text mode: a final line break does not start a new line.
    private static func lines(of text: String) -> [String] {
        var lines: [String] = []
        var current: [Unicode.Scalar] = []
        var previousWasCR = false
        func finish() {
            var line = ""
            line.unicodeScalars.append(contentsOf: current)
            lines.append(line)
            current.removeAll(keepingCapacity: true)
        }
        for scalar in text.unicodeScalars {
            if scalar == "\n" {
                if !previousWasCR { finish() }
                previousWasCR = false
            } else if scalar == "\r" {
                finish()
                previousWasCR = true
            } else {
                current.append(scalar)
                previousWasCR = false
            }
        }
        if !current.isEmpty { finish() }
        return lines
    }

    public var count: Int { tokens.count }

    /// The id of `token`, compared scalar by scalar; nil when it is not in the vocabulary.
    public func id(for token: String) -> Int32? { trie.id(of: token) }

    /// The token with id `id` (precondition: `0 <= id < count`).
    public func token(for id: Int32) -> String { tokens[Int(id)] }

    /// Writes the tokens one a line, as `vocab.txt`.
    public func write(toFile path: String) throws {
        let text = tokens.joined(separator: "\n") + "\n"
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw VocabularyError.unwritable(path: path, reason: error.localizedDescription)
        }
    }
}

/// Why a vocabulary could not be read or built.
public enum VocabularyError: Error, LocalizedError, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case unwritable(path: String, reason: String)
    case notUTF8(path: String)
    case empty(path: String?)
    case tooLarge(path: String?, count: Int)
    case missingSpecialToken(path: String?, token: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "cannot read vocabulary file '\(path)' (\(reason)); pass an existing BERT vocab.txt."
        case .unwritable(let path, let reason):
            return "cannot write vocabulary file '\(path)' (\(reason)); check the directory exists and is writable."
        case .notUTF8(let path):
            return "vocabulary file '\(path)' is not valid UTF-8; a BERT vocab.txt is UTF-8, one token a line."
        case .empty(let path):
            return "vocabulary\(Self.origin(path)) has no tokens; a BERT vocab.txt has one token a line."
        case .tooLarge(let path, let count):
            return "vocabulary\(Self.origin(path)) has \(count) tokens; ids must fit in Int32."
        case .missingSpecialToken(let path, let token):
            return "vocabulary\(Self.origin(path)) has no \(token) token; BERT needs "
                + Vocabulary.specialTokens.joined(separator: " ") + " (add the missing line)."
        }
    }

    public var errorDescription: String? { description }

    private static func origin(_ path: String?) -> String { path.map { " '\($0)'" } ?? "" }
}

/// A trie over the scalars of every token, for greedy longest-match WordPiece lookups without
/// building strings: children are found in one open-addressing hash table keyed by (node, scalar).
/// Immutable after `init`; raw storage keeps lookups in the tokenizer's inner loop free of
/// reference counting.
final class TokenTrie: @unchecked Sendable {
    static let root: Int32 = 0
    private static let empty = UInt64.max
    /// Per node: the id of the token ending there, or -1.
    let tokenIDs: UnsafeMutablePointer<Int32>
    private let keys: UnsafeMutablePointer<UInt64>
    private let children: UnsafeMutablePointer<Int32>
    private let nodeCount: Int
    private let mask: Int
    private let shift: UInt64

    init(tokens: [String]) {
        var edges: [UInt64: Int32] = [:]
        var ids: [Int32] = [-1]
        for (id, token) in tokens.enumerated() {
            var node = Self.root
            for scalar in token.unicodeScalars {
                let key = Self.key(node, scalar.value)
                if let child = edges[key] {
                    node = child
                } else {
                    let child = Int32(ids.count)
                    ids.append(-1)
                    edges[key] = child
                    node = child
                }
            }
            if node != Self.root { ids[Int(node)] = Int32(id) }
        }
        nodeCount = ids.count
        tokenIDs = .allocate(capacity: ids.count)
        tokenIDs.initialize(from: ids, count: ids.count)
        var bits: UInt64 = 4
        while (1 << bits) < edges.count * 2 { bits += 1 }
        shift = 64 - bits
        mask = (1 << bits) - 1
        keys = .allocate(capacity: 1 << bits)
        keys.initialize(repeating: Self.empty, count: 1 << bits)
        children = .allocate(capacity: 1 << bits)
        children.initialize(repeating: -1, count: 1 << bits)
        // Sorted so that the table's layout does not depend on dictionary order.
        for (key, child) in edges.sorted(by: { $0.key < $1.key }) {
            var slot = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
            while keys[slot] != Self.empty { slot = (slot + 1) & mask }
            keys[slot] = key
            children[slot] = child
        }
    }

    deinit {
        tokenIDs.deallocate()
        keys.deallocate()
        children.deallocate()
    }

    @inline(__always)
    private static func key(_ node: Int32, _ scalar: UInt32) -> UInt64 { UInt64(node) << 21 | UInt64(scalar) }

    /// The child of `node` along `scalar`, or -1.
    @inline(__always)
    func child(_ node: Int32, _ scalar: UInt32) -> Int32 {
        let key = Self.key(node, scalar)
        var slot = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
        while true {
            let found = keys[slot]
            if found == key { return children[slot] }
            if found == Self.empty { return -1 }
            slot = (slot + 1) & mask
        }
    }

    /// The node reached from the root along `text`, or -1.
    func node(for text: String) -> Int32 {
        var node = Self.root
        for scalar in text.unicodeScalars {
            node = child(node, scalar.value)
            if node < 0 { return -1 }
        }
        return node
    }

    func id(of token: String) -> Int32? {
        let node = node(for: token)
        guard node > Self.root, tokenIDs[Int(node)] >= 0 else { return nil }
        return tokenIDs[Int(node)]
    }
}
