// Character classes, canonical normalisation (NFD, NFC) and lower-casing exactly as the reference BERT
// tokenizer gets them from Python (see UnicodeTables.swift). Everything works on buffers of scalar
// values (`[UInt32]`) so that the tokenizer never builds a `String` per character or per word.

/// Per-code-point properties, unpacked from `UnicodeTables` once per process.
final class UnicodeCharacterData: @unchecked Sendable {
    /// Bits of `flags`.
    struct Flags: OptionSet {
        let rawValue: UInt16
        /// NUL, U+FFFD and categories C*: `_clean_text` drops them (they do not separate words).
        static let dropped = Flags(rawValue: 1 << 0)
        /// `_clean_text`'s whitespace and `str.split()`'s: separates words.
        static let whitespace = Flags(rawValue: 1 << 1)
        /// ASCII symbols and categories P*: a piece of its own.
        static let punctuation = Flags(rawValue: 1 << 2)
        /// `_is_chinese_char`: a word of its own.
        static let cjk = Flags(rawValue: 1 << 3)
        /// Category Mn: removed by accent stripping (after NFD).
        static let nonspacingMark = Flags(rawValue: 1 << 4)
        /// NFC or NFD may change a text containing it.
        static let normalizationSensitive = Flags(rawValue: 1 << 5)
        /// `str.lower()` changes it.
        static let hasLowercase = Flags(rawValue: 1 << 6)
        /// Cased and not case-ignorable (final-sigma rule).
        static let casedNotIgnorable = Flags(rawValue: 1 << 7)
        /// Case-ignorable (final-sigma rule).
        static let caseIgnorable = Flags(rawValue: 1 << 8)
    }

    static let shared = UnicodeCharacterData()

    /// Flags of every code point, indexed by scalar value (0...0x10FFFF).
    let flags: UnsafeMutablePointer<UInt16>
    /// Canonical combining class of every code point.
    let combiningClass: UnsafeMutablePointer<UInt8>
    private let decompositionRanges: [UInt32: Range<Int>]
    private let decompositionStorage: [UInt32]
    private let lowercaseRanges: [UInt32: Range<Int>]
    private let lowercaseStorage: [UInt32]
    private let compositions: [UInt64: UInt32]

    static let codePointCount = 0x110000

    private init() {
        flags = .allocate(capacity: Self.codePointCount)
        combiningClass = .allocate(capacity: Self.codePointCount)
        combiningClass.initialize(repeating: 0, count: Self.codePointCount)

        let runs = Self.entries(UnicodeTables.flagRuns)
        for (index, run) in runs.enumerated() {
            let first = Int(run.key[0])
            let end = index + 1 < runs.count ? Int(runs[index + 1].key[0]) : Self.codePointCount
            (flags + first).initialize(repeating: Self.unpack(UInt8(run.value[0])), count: end - first)
        }
        for entry in Self.entries(UnicodeTables.combiningClasses) {
            combiningClass[Int(entry.key[0])] = UInt8(entry.value[0])
        }
        (decompositionRanges, decompositionStorage) = Self.mappings(UnicodeTables.decompositions)
        (lowercaseRanges, lowercaseStorage) = Self.mappings(UnicodeTables.lowercaseMappings)
        var compositions: [UInt64: UInt32] = [:]
        for entry in Self.entries(UnicodeTables.compositions) {
            compositions[UInt64(entry.key[0]) << 32 | UInt64(entry.key[1])] = entry.value[0]
        }
        self.compositions = compositions
    }

    /// Converts the generator's bit layout (kind in bits 0-2, then Mn, normalisation, lower-case,
    /// cased, case-ignorable) into `Flags`.
    private static func unpack(_ packed: UInt8) -> UInt16 {
        var result: Flags = []
        switch packed & 7 {
        case 1: result.insert(.dropped)
        case 2: result.insert(.whitespace)
        case 3: result.insert(.punctuation)
        case 4: result.insert(.cjk)
        default: break
        }
        if packed & 8 != 0 { result.insert(.nonspacingMark) }
        if packed & 16 != 0 { result.insert(.normalizationSensitive) }
        if packed & 32 != 0 { result.insert(.hasLowercase) }
        if packed & 64 != 0 { result.insert(.casedNotIgnorable) }
        if packed & 128 != 0 { result.insert(.caseIgnorable) }
        return result.rawValue
    }

    /// Parses "k k:v v,..." entries of hexadecimal numbers.
    private static func entries(_ table: String) -> [(key: [UInt32], value: [UInt32])] {
        var result: [(key: [UInt32], value: [UInt32])] = []
        var key: [UInt32] = []
        var value: [UInt32] = []
        var number: UInt32 = 0
        var inNumber = false
        var inValue = false
        func endNumber() {
            if inNumber {
                if inValue { value.append(number) } else { key.append(number) }
            }
            number = 0
            inNumber = false
        }
        for byte in table.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                number = number << 4 | UInt32(byte - UInt8(ascii: "0")); inNumber = true
            case UInt8(ascii: "a")...UInt8(ascii: "f"):
                number = number << 4 | UInt32(byte - UInt8(ascii: "a") + 10); inNumber = true
            case UInt8(ascii: ":"):
                endNumber(); inValue = true
            case UInt8(ascii: ","):
                endNumber()
                result.append((key, value))
                key = []; value = []; inValue = false
            default:
                endNumber()
            }
        }
        endNumber()
        if !key.isEmpty { result.append((key, value)) }
        return result
    }

    private static func mappings(_ table: String) -> ([UInt32: Range<Int>], [UInt32]) {
        var ranges: [UInt32: Range<Int>] = [:]
        var storage: [UInt32] = []
        for entry in entries(table) {
            ranges[entry.key[0]] = storage.count..<(storage.count + entry.value.count)
            storage += entry.value
        }
        return (ranges, storage)
    }

    // MARK: - Normalisation

    private static let hangulFirst: UInt32 = 0xAC00, hangulLast: UInt32 = 0xD7A3
    private static let leadingFirst: UInt32 = 0x1100, vowelFirst: UInt32 = 0x1161, trailingBase: UInt32 = 0x11A7
    private static let vowelCount: UInt32 = 21, trailingCount: UInt32 = 28

    /// Appends the canonical decomposition (NFD) of `input` to `output`.
    func appendDecomposition(of input: UnsafeBufferPointer<UInt32>, to output: inout [UInt32]) {
        let start = output.count
        for scalar in input {
            if scalar >= Self.hangulFirst && scalar <= Self.hangulLast {
                let index = scalar - Self.hangulFirst
                output.append(Self.leadingFirst + index / (Self.vowelCount * Self.trailingCount))
                output.append(Self.vowelFirst + (index % (Self.vowelCount * Self.trailingCount)) / Self.trailingCount)
                if index % Self.trailingCount != 0 { output.append(Self.trailingBase + index % Self.trailingCount) }
            } else if flags[Int(scalar)] & Flags.normalizationSensitive.rawValue != 0,
                      let range = decompositionRanges[scalar] {
                output.append(contentsOf: decompositionStorage[range])
            } else {
                output.append(scalar)
            }
        }
        // Canonical ordering: a stable sort of every run of non-starters by combining class.
        var i = start + 1
        while i < output.count {
            let scalarClass = combiningClass[Int(output[i])]
            if scalarClass != 0 {
                var j = i
                while j > start && combiningClass[Int(output[j - 1])] > scalarClass {
                    output.swapAt(j, j - 1)
                    j -= 1
                }
            }
            i += 1
        }
    }

    /// Canonical composition of a decomposed buffer, in place (NFC = this after `appendDecomposition`).
    func compose(_ text: inout [UInt32]) {
        guard text.count > 1 else { return }
        var starterIndex = 0
        var lastClass = Int(combiningClass[Int(text[0])])
        if lastClass != 0 { lastClass = 256 }  // no starter yet: nothing may compose
        var written = 1
        for i in 1..<text.count {
            let scalar = text[i]
            let scalarClass = Int(combiningClass[Int(scalar)])
            if lastClass < scalarClass || lastClass == 0,
               let composite = composePair(text[starterIndex], scalar) {
                text[starterIndex] = composite
                continue
            }
            if scalarClass == 0 { starterIndex = written }
            lastClass = scalarClass
            text[written] = scalar
            written += 1
        }
        text.removeLast(text.count - written)
    }

    private func composePair(_ first: UInt32, _ second: UInt32) -> UInt32? {
        if first >= Self.leadingFirst && first < Self.leadingFirst + 19
            && second >= Self.vowelFirst && second < Self.vowelFirst + Self.vowelCount {
            return Self.hangulFirst + ((first - Self.leadingFirst) * Self.vowelCount + second - Self.vowelFirst)
                * Self.trailingCount
        }
        if first >= Self.hangulFirst && first <= Self.hangulLast && (first - Self.hangulFirst) % Self.trailingCount == 0
            && second > Self.trailingBase && second < Self.trailingBase + Self.trailingCount {
            return first + second - Self.trailingBase
        }
        if flags[Int(second)] & Flags.normalizationSensitive.rawValue == 0 { return nil }
        return compositions[UInt64(first) << 32 | UInt64(second)]
    }

    // MARK: - Lower-casing

    /// Appends `str.lower()` of `input` to `output`: full lower-case mappings, and U+03A3 becomes
    /// final sigma when it ends a cased word (Unicode's Final_Sigma condition, as CPython applies it).
    func appendLowercase(of input: UnsafeBufferPointer<UInt32>, to output: inout [UInt32]) {
        for (index, scalar) in input.enumerated() {
            if scalar == 0x3A3 {
                output.append(isFinalSigma(input, at: index) ? 0x3C2 : 0x3C3)
            } else if flags[Int(scalar)] & Flags.hasLowercase.rawValue != 0, let range = lowercaseRanges[scalar] {
                output.append(contentsOf: lowercaseStorage[range])
            } else {
                output.append(scalar)
            }
        }
    }

    private func isFinalSigma(_ text: UnsafeBufferPointer<UInt32>, at index: Int) -> Bool {
        let ignorable = Flags.caseIgnorable.rawValue
        let cased = Flags.casedNotIgnorable.rawValue
        var j = index - 1
        while j >= 0 && flags[Int(text[j])] & ignorable != 0 { j -= 1 }
        guard j >= 0 && flags[Int(text[j])] & cased != 0 else { return false }
        j = index + 1
        while j < text.count && flags[Int(text[j])] & ignorable != 0 { j += 1 }
        return j == text.count || flags[Int(text[j])] & cased == 0
    }
}
