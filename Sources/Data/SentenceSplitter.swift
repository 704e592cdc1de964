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
    public func split(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var sentences: [String] = []
        var start = 0
        var i = 0
        let n = scalars.count
        while i < n {
            let c = scalars[i]
            if SentenceSplitter.isCJKTerminator(c) {
                var end = i + 1
                while end < n && (SentenceSplitter.isCJKTerminator(scalars[end]) || SentenceSplitter.isTerminator(scalars[end])
                    || SentenceSplitter.isClosing(scalars[end])) { end += 1 }
                append(scalars[start..<end], to: &sentences)
                start = end
                i = end
                continue
            }
            if SentenceSplitter.isTerminator(c) {
                var end = i + 1
                while end < n && (SentenceSplitter.isTerminator(scalars[end]) || SentenceSplitter.isClosing(scalars[end])) {
                    end += 1
                }
                var next = end
                while next < n && SentenceSplitter.isSpace(scalars[next]) { next += 1 }
                let followedBySpace = next > end
                if end == n || (followedBySpace && next < n && SentenceSplitter.canStartSentence(scalars[next])
                    && !(c == "." && isAbbreviation(scalars[start..<i]))) {
                    append(scalars[start..<end], to: &sentences)
                    start = end
                    i = next
                    continue
                }
                i = end
                continue
            }
            i += 1
        }
        append(scalars[start..<n], to: &sentences)
        return sentences
    }

    private func append(_ slice: ArraySlice<Unicode.Scalar>, to sentences: inout [String]) {
        var low = slice.startIndex, high = slice.endIndex
        while low < high && SentenceSplitter.isSpace(slice[low]) { low += 1 }
        while high > low && SentenceSplitter.isSpace(slice[high - 1]) { high -= 1 }
        guard low < high else { return }
        var view = String.UnicodeScalarView()
        var lastWasSpace = false
        for s in slice[low..<high] {
            // Line breaks inside a paragraph are just spaces; runs of white space become one.
            let space = SentenceSplitter.isSpace(s)
            if space && lastWasSpace { continue }
            view.append(space ? " " : s)
            lastWasSpace = space
        }
        sentences.append(String(view))
    }

    /// Whether the word ending just before a period is an abbreviation or an initial.
    private func isAbbreviation(_ before: ArraySlice<Unicode.Scalar>) -> Bool {
        var wordStart = before.endIndex
        while wordStart > before.startIndex {
            let s = before[wordStart - 1]
            if SentenceSplitter.isSpace(s) || s == "(" || s == "\"" || s == "'" || s == "[" { break }
            wordStart -= 1
        }
        let word = before[wordStart..<before.endIndex]
        if word.isEmpty { return false }
        if word.count == 1, let only = word.first, only.properties.isAlphabetic { return true }
        var lowered = ""
        for s in word { lowered.unicodeScalars.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars) }
        return abbreviations.contains(lowered)
    }

    static func isTerminator(_ c: Unicode.Scalar) -> Bool { c == "." || c == "!" || c == "?" }

    static func isCJKTerminator(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x3002, 0xFF01, 0xFF1F, 0xFF1B, 0x2026, 0xFF61: return true  // 。！？；… ｡
        default: return false
        }
    }

    static func isClosing(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x22, 0x27, 0x29, 0x5D, 0x7D,                    // " ' ) ] }
             0x2019, 0x201D, 0x300D, 0x300F, 0xFF09, 0x300B, 0x3009, 0x3011, 0xFF3D:  // ’ ” 」 』 ） 》 〉 】 ］
            return true
        default: return false
        }
    }

    static func isSpace(_ c: Unicode.Scalar) -> Bool {
        c == " " || c == "\n" || c == "\t" || c == "\r" || c.value == 0xA0 || c.value == 0x3000
            || (c.value > 0x7F && c.properties.isWhitespace)
    }

    static func canStartSentence(_ c: Unicode.Scalar) -> Bool {
        if c.properties.isUppercase || c.properties.numericType != nil { return true }
        switch c.value {
        case 0x22, 0x27, 0x28, 0x5B, 0x2018, 0x201C, 0x300C, 0x300E, 0xFF08: return true  // " ' ( [ ‘ “ 「 『 （
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x3040...0x30FF, 0xAC00...0xD7AF: return true  // CJK, kana, hangul
        default: return false
        }
    }
}
