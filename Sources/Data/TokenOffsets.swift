/// A text's WordPiece ids with where each token came from, as Hugging Face's fast BERT tokenizer
/// reports them (`return_offsets_mapping=True`, `word_ids()`), for mapping predicted tokens back to
/// the original text (question answering, token classification).
public struct TokenizedText: Equatable, Sendable {
    /// token ids, no [CLS]/[SEP], [tokens]
    public var ids: [Int32]
    /// The original text's Unicode scalars each token came from (Python `str` indices), [tokens].
    public var offsets: [Range<Int>]
    /// The index of each token's word, [tokens]: a word is a basic token (whitespace and punctuation
    /// split, a CJK ideograph, a special token), so WordPieces of one word share it.
    public var words: [Int]

    public init(ids: [Int32] = [], offsets: [Range<Int>] = [], words: [Int] = []) {
        self.ids = ids
        self.offsets = offsets
        self.words = words
    }
}

extension BertTokenizer {
    /// The tokens of `text` (the same ids as `encode`) with their offsets into `text` and their words.
    ///
    /// A token's offsets cover every original character it was normalised from: lower-casing, accent
    /// stripping and dropped characters inside a word map back to the characters they came from, as
    /// the fast tokenizer's alignments do. Where the two reference tokenizers differ (the pure-Python
    /// one, whose ids this follows, applies NFC per word, lower-cases a final capital sigma to ς and
    /// treats U+0085/U+2028/U+2029 as non-separating), the ids follow the pure-Python one; where NFC
    /// changes a word's length (decomposed input, cased vocabularies only) its tokens get the whole
    /// word's range.
    public func encodeWithOffsets(_ text: String) -> TokenizedText {
        var result = TokenizedText()
        var buffers = RunBuffers()
        let scalars = Array(text.unicodeScalars)
        let flags = UnicodeCharacterData.shared.flags
        let whitespace = UnicodeCharacterData.Flags.whitespace.rawValue
        // Words never span whitespace or a CJK ideograph, so each run between them is tokenized on its
        // own exactly as inside the whole text.
        var runStart = -1
        for (index, scalar) in scalars.enumerated() {
            let scalarFlags = flags[Int(scalar.value)]
            if scalarFlags & (whitespace | engine.cjkSeparates) != 0 {
                if runStart >= 0 { appendRun(scalars, runStart..<index, &buffers, to: &result) }
                runStart = -1
                if scalarFlags & engine.cjkSeparates != 0 { appendRun(scalars, index..<(index + 1), &buffers, to: &result) }
            } else if runStart < 0 {
                runStart = index
            }
        }
        if runStart >= 0 { appendRun(scalars, runStart..<scalars.count, &buffers, to: &result) }
        return result
    }

    /// Buffers reused from run to run (most runs are one short word).
    private struct RunBuffers {
        var workspace = TokenizerEngine.Workspace()
        /// owner[p]: the original scalar that normalised scalar p came from.
        var owner: [Int] = []
        /// Per token of the run, its normalised scalars.
        var spans: [Range<Int>] = []
    }

    /// Tokenizes `scalars[run]` and maps each token's span of the normalised run back to `run`.
    private func appendRun(
        _ scalars: [Unicode.Scalar], _ run: Range<Int>, _ buffers: inout RunBuffers, to result: inout TokenizedText
    ) {
        buffers.owner.removeAll(keepingCapacity: true)
        // Taken out of `buffers` while the engine holds its workspace, and put back for the next run.
        var spans: [Range<Int>] = []
        swap(&spans, &buffers.spans)
        spans.removeAll(keepingCapacity: true)
        defer { buffers.spans = spans }
        for index in run {
            buffers.owner.append(contentsOf: repeatElement(index, count: normalizedLength(of: scalars[index])))
        }
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars[run])
        let firstToken = result.ids.count
        var position = 0
        var word = (result.words.last ?? -1) + 1
        engine.forEachBasicToken(text, &buffers.workspace) { special, piece in
            if special >= 0 {
                let length = vocabulary.token(for: special).unicodeScalars.count
                result.ids.append(special)
                spans.append(position..<(position + length))
                result.words.append(word)
                position += length
            } else {
                let pieceStart = result.ids.count
                engine.appendWordPieceIDs(piece, to: &result.ids)
                var start = position
                for id in result.ids[pieceStart...] {
                    // A word WordPiece cannot cover is one [UNK] for all of it.
                    let length = id == vocabulary.unknownID
                        ? piece.count
                        : vocabulary.token(for: id).unicodeScalars.count - (start == position ? 0 : 2)
                    spans.append(start..<(start + length))
                    result.words.append(word)
                    start += length
                }
                position += piece.count
            }
            word += 1
        }
        let owner = buffers.owner
        if position != owner.count {
            result.offsets.append(contentsOf: repeatElement(run, count: result.ids.count - firstToken))
            return
        }
        for span in spans {
            result.offsets.append(owner[span.lowerBound]..<(owner[span.upperBound - 1] + 1))
        }
    }

    /// How many scalars `scalar` becomes in a word: none when cleaning drops it, else its lower case
    /// and, when accents are stripped, its canonical decomposition without nonspacing marks.
    private func normalizedLength(of scalar: Unicode.Scalar) -> Int {
        typealias Flags = UnicodeCharacterData.Flags
        let unicode = UnicodeCharacterData.shared
        let scalarFlags = unicode.flags[Int(scalar.value)]
        if scalarFlags & Flags.dropped.rawValue != 0 { return 0 }
        if scalarFlags & (Flags.hasLowercase.rawValue | Flags.normalizationSensitive.rawValue
                          | Flags.nonspacingMark.rawValue) == 0 { return 1 }
        var text: [UInt32] = [scalar.value]
        if engine.lowercase {
            var lowered: [UInt32] = []
            text.withUnsafeBufferPointer { unicode.appendLowercase(of: $0, to: &lowered) }
            text = lowered
        }
        guard engine.stripsAccents else { return text.count }
        var decomposed: [UInt32] = []
        text.withUnsafeBufferPointer { unicode.appendDecomposition(of: $0, to: &decomposed) }
        return decomposed.filter { unicode.flags[Int($0)] & Flags.nonspacingMark.rawValue == 0 }.count
    }
}
