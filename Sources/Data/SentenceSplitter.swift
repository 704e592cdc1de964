/// Splits running text into sentences, for corpora that are not already one sentence a line.
///
/// English: a sentence ends at `.`, `!` or `?` (plus any closing quotes or brackets) followed by
/// white space and a capital letter, digit, opening quote or bracket, or a CJK character. A period
/// does not end a sentence after a known abbreviation ("Mr.", "e.g.", "Fig."), after a single letter
/// (initials, "J. Smith") or inside a word ("3.14", "os.path", "U.S.A."), because it is not followed
/// by white space there.
/// Chinese: `。！？；…` end a sentence wherever they stand (Chinese puts no space after them),
/// together with the closing quotes/brackets and repeated marks that follow ("……", "？！”").
public struct SentenceSplitter: Sendable {
    /// Lowercased words (without the period) after which a period does not end a sentence.
    public var abbreviations: Set<String>

    public static let englishAbbreviations: Set<String> = [
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "rev", "gen", "gov", "sen", "rep", "col", "capt",
        "lt", "sgt", "vs", "e.g", "i.e", "cf", "al", "fig", "figs", "eq", "eqs", "no", "nos", "vol", "vols", "pp",
        "p", "ch", "sec", "inc", "ltd", "co", "corp", "dept", "univ", "approx", "est", "ca", "viz", "jan", "feb",
        "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "a.m", "p.m", "ed",
        "eds", "op", "cit", "ibid",
    ]

    public init(abbreviations: Set<String> = SentenceSplitter.englishAbbreviations) {
        self.abbreviations = abbreviations
    }

    /// The sentences of `text`, trimmed, without empty ones. Line breaks count as spaces.
    ///
    /// Works on the UTF-8 bytes: the marks that end sentences and the spaces that follow them are
    /// ASCII or a few known scalars, so most bytes are passed over with one comparison.
    public func split(_ text: String) -> [String] {
        var text = text
        return text.withUTF8 { split(utf8: $0) }
    }

    private func split(utf8 bytes: UnsafeBufferPointer<UInt8>) -> [String] {
        var sentences: [String] = []
        let n = bytes.count
        var start = 0
        var i = 0
        while i < n {
            let b = bytes[i]
            if b < 0x80 && b != UInt8(ascii: ".") && b != UInt8(ascii: "!") && b != UInt8(ascii: "?") {
                i += 1
                continue
            }
            let (c, length) = SentenceSplitter.scalar(bytes, at: i)
            if SentenceSplitter.isCJKTerminator(c) {
                var end = i + length
                while end < n {
                    let (next, nextLength) = SentenceSplitter.scalar(bytes, at: end)
                    guard SentenceSplitter.isCJKTerminator(next) || SentenceSplitter.isTerminator(next)
                        || SentenceSplitter.isClosing(next) else { break }
                    end += nextLength
                }
                append(bytes, start..<end, to: &sentences)
                start = end
                i = end
                continue
            }
            if SentenceSplitter.isTerminator(c) {
                var end = i + 1
                while end < n {
                    let (next, nextLength) = SentenceSplitter.scalar(bytes, at: end)
                    guard SentenceSplitter.isTerminator(next) || SentenceSplitter.isClosing(next) else { break }
                    end += nextLength
                }
                var next = end
                while next < n {
                    let (space, spaceLength) = SentenceSplitter.scalar(bytes, at: next)
                    guard SentenceSplitter.isSpace(space) else { break }
                    next += spaceLength
                }
                let followedBySpace = next > end
                if end == n || (followedBySpace && next < n
                    && SentenceSplitter.canStartSentence(SentenceSplitter.scalar(bytes, at: next).value)
                    && !(c == 0x2E && isAbbreviation(bytes, before: i, from: start))) {
                    append(bytes, start..<end, to: &sentences)
                    start = end
                    i = next
                    continue
                }
                i = end
                continue
            }
            i += length
        }
        append(bytes, start..<n, to: &sentences)
        return sentences
    }

    /// The scalar starting at byte `i` of valid UTF-8, and its length in bytes.
    @inline(__always)
    static func scalar(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> (value: UInt32, length: Int) {
        let b0 = UInt32(bytes[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(bytes[i + 1]) & 0x3F, 2) }
        if b0 < 0xF0 {
            return ((b0 & 0x0F) << 12 | (UInt32(bytes[i + 1]) & 0x3F) << 6 | UInt32(bytes[i + 2]) & 0x3F, 3)
        }
        return ((b0 & 0x07) << 18 | (UInt32(bytes[i + 1]) & 0x3F) << 12 | (UInt32(bytes[i + 2]) & 0x3F) << 6
                | UInt32(bytes[i + 3]) & 0x3F, 4)
    }

    /// Appends `bytes[range]` trimmed, with runs of white space made one space.
    private func append(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, to sentences: inout [String]) {
        var low = range.lowerBound, high = range.upperBound
        while low < high {
            let (c, length) = SentenceSplitter.scalar(bytes, at: low)
            guard SentenceSplitter.isSpace(c) else { break }
            low += length
        }
        while high > low {
            var start = high - 1
            while start > low && bytes[start] & 0xC0 == 0x80 { start -= 1 }
            guard SentenceSplitter.isSpace(SentenceSplitter.scalar(bytes, at: start).value) else { break }
            high = start
        }
        guard low < high else { return }
        // Paragraphs from the corpus reader have single spaces already; only others need the copy.
        var needsCollapsing = false
        var previousWasSpace = false
        for k in low..<high {
            let b = bytes[k]
            let space = b == 0x20
            if b == 0x0A || b == 0x09 || b == 0x0D || (space && previousWasSpace) {
                needsCollapsing = true
                break
            }
            previousWasSpace = space
        }
        if !needsCollapsing {
            sentences.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[low..<high]), as: UTF8.self))
            return
        }
        var collapsed: [UInt8] = []
        collapsed.reserveCapacity(high - low)
        var lastWasSpace = false
        for k in low..<high {
            let b = bytes[k]
            let space = b == 0x20 || b == 0x0A || b == 0x09 || b == 0x0D
            if space && lastWasSpace { continue }
            collapsed.append(space ? 0x20 : b)
            lastWasSpace = space
        }
        sentences.append(String(decoding: collapsed, as: UTF8.self))
    }

    /// Whether the word ending just before the period at `end` is an abbreviation or an initial.
    private func isAbbreviation(_ bytes: UnsafeBufferPointer<UInt8>, before end: Int, from start: Int) -> Bool {
        var wordStart = end
        while wordStart > start {
            let b = bytes[wordStart - 1]
            // Abbreviations and initials are ASCII; a word with other letters is none of them.
            if b >= 0x80 || b == 0x20 || b == 0x0A || b == 0x09 || b == 0x0D || b == UInt8(ascii: "(")
                || b == UInt8(ascii: "\"") || b == UInt8(ascii: "'") || b == UInt8(ascii: "[") { break }
            wordStart -= 1
        }
        let length = end - wordStart
        if length == 0 { return false }
        if length == 1 {
            let b = bytes[wordStart] | 0x20
            if b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z") { return true }
        }
        if length > 8 { return false }
        var lowered = [UInt8]()
        lowered.reserveCapacity(length)
        for k in wordStart..<end {
            let b = bytes[k]
            lowered.append(b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") ? b | 0x20 : b)
        }
        return abbreviations.contains(String(decoding: lowered, as: UTF8.self))
    }

    static func isTerminator(_ c: UInt32) -> Bool { c == 0x2E || c == 0x21 || c == 0x3F }  // . ! ?

    static func isCJKTerminator(_ c: UInt32) -> Bool {
        switch c {
        case 0x3002, 0xFF01, 0xFF1F, 0xFF1B, 0x2026, 0xFF61: return true  // 。！？；… ｡
        default: return false
        }
    }

    static func isClosing(_ c: UInt32) -> Bool {
        switch c {
        case 0x22, 0x27, 0x29, 0x5D, 0x7D,                    // " ' ) ] }
             0x2019, 0x201D, 0x300D, 0x300F, 0xFF09, 0x300B, 0x3009, 0x3011, 0xFF3D:  // ’ ” 」 』 ） 》 〉 】 ］
            return true
        default: return false
        }
    }

    static func isSpace(_ c: UInt32) -> Bool {
        if c < 0x80 { return c == 0x20 || (c >= 0x09 && c <= 0x0D) }
        return c == 0xA0 || c == 0x3000 || (Unicode.Scalar(c)?.properties.isWhitespace ?? false)
    }

    static func canStartSentence(_ c: UInt32) -> Bool {
        if c < 0x80 {
            // A-Z, 0-9, " ' ( [
            return (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39) || c == 0x22 || c == 0x27 || c == 0x28 || c == 0x5B
        }
        switch c {
        case 0x2018, 0x201C, 0x300C, 0x300E, 0xFF08: return true  // ‘ “ 「 『 （
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x3040...0x30FF, 0xAC00...0xD7AF: return true  // CJK, kana, hangul
        default:
            guard let scalar = Unicode.Scalar(c) else { return false }
            return scalar.properties.isUppercase || scalar.properties.numericType != nil
        }
    }
}
