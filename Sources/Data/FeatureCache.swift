import Crypto
import Foundation

// Tokenized fine-tuning data cached beside the data file, so that a run, its evaluation and its
// restarts tokenize a file once.
//
// The cache file is `<data file>.<key>.features`, where the key is a digest of everything the
// features depend on: the data file's bytes, the vocabulary's fingerprint, the tokenizer settings,
// the maximum length, the task kind and every reader option (fields, label kind, label list,
// separator, format). Another key is another file: a change of any of these never reads an old
// cache. The file is written under a temporary name and renamed into place, and it holds a SHA-256
// of its content: a damaged or foreign file is ignored and rewritten, never used.
//
// Layout (little-endian): magic "SBTF", version u32, key (32 bytes), payload length u64, payload
// SHA-256 (32 bytes), payload. Payload: label names (u32 count, each u32 length + UTF-8), features
// (u32 count; each: line u64, u32 sequence count, per sequence u32 length + ids i32 + types i32,
// label (u8 kind 0 none / 1 class / 2 classes / 3 value, then i32, u32 count + i32s, or f32),
// u32 count + word ids i32, u32 count + token labels i32).

/// Encoded examples of a file and the label names their indices refer to.
public struct TaskFeatureSet: Equatable, Sendable {
    public var features: [TaskFeature]
    public var labelNames: [String]
    /// The cache file the features were read from or written to; nil when the data file's directory
    /// is not writable (the features are then computed on every load).
    public var cachePath: String?
    /// Whether the features came from the cache.
    public var fromCache: Bool
}

extension TaskEncoder {
    /// The features of a sequence-classification file, from the cache beside it when it matches.
    public func cachedFeatures(path: String, options: TextTaskOptions) throws -> TaskFeatureSet {
        try FeatureCache.load(path: path, key: cacheKey("text", options)) {
            let data = try TaskReader.readTextExamples(path: path, options: options)
            return (features(data.examples), data.labelNames)
        }
    }

    /// The features of a token-classification file, from the cache beside it when it matches.
    public func cachedFeatures(path: String, options: TaggedTaskOptions) throws -> TaskFeatureSet {
        try FeatureCache.load(path: path, key: cacheKey("tagged", options)) {
            let data = try TaskReader.readTaggedExamples(path: path, options: options)
            return (features(data.examples), data.labelNames)
        }
    }

    /// The features of a multiple-choice file, from the cache beside it when it matches.
    public func cachedFeatures(path: String, options: ChoiceTaskOptions) throws -> TaskFeatureSet {
        try FeatureCache.load(path: path, key: cacheKey("choice", options)) {
            let data = try TaskReader.readChoiceExamples(path: path, options: options)
            return (features(data.examples), data.labelNames)
        }
    }

    /// Everything but the data bytes that the features depend on. The options are spelled out by
    /// reflection, so a reader option added later joins the key without being listed here.
    private func cacheKey<Options>(_ task: String, _ options: Options) -> String {
        [task, tokenizer.vocabulary.fingerprint, String(reflecting: tokenizer.settings), String(maxLength),
         String(reflecting: options)].joined(separator: "\n")
    }
}

enum FeatureCache {
    static let magic = Array("SBTF".utf8)
    static let version: UInt32 = 1
    static let headerSize = 4 + 4 + 32 + 8 + 32

    /// The cached features of `path` under `settings`, or `build()`'s, then written to the cache.
    static func load(
        path: String, key settings: String, build: () throws -> ([TaskFeature], [String])
    ) throws -> TaskFeatureSet {
        // Reading the bytes here also gives the readers' message for a missing file.
        let data: Foundation.Data
        do {
            data = try Foundation.Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TaskDataError(path: path, "cannot read the file (\(error.localizedDescription)); check the path")
        }
        var hasher = SHA256()
        hasher.update(data: Array("SwiftBERT features v\(version)\n\(settings)\n".utf8))
        hasher.update(data: data)
        let key = Array(hasher.finalize())
        let cachePath = path + "." + key.prefix(8).map { String(format: "%02x", $0) }.joined() + ".features"
        if let cached = try? Foundation.Data(contentsOf: URL(fileURLWithPath: cachePath)),
           let (features, names) = decode([UInt8](cached), key: key) {
            return TaskFeatureSet(features: features, labelNames: names, cachePath: cachePath, fromCache: true)
        }
        let (features, names) = try build()
        let written = write(encode(features, names, key: key), to: cachePath)
        return TaskFeatureSet(features: features, labelNames: names, cachePath: written ? cachePath : nil, fromCache: false)
    }

    /// Writes under a temporary name and renames, so a reader sees a whole file or none. A failure
    /// (read-only directory, full disk) only costs the cache.
    private static func write(_ bytes: [UInt8], to path: String) -> Bool {
        let temporary = path + ".tmp-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))"
        do {
            try Foundation.Data(bytes).write(to: URL(fileURLWithPath: temporary))
            if rename(temporary, path) != 0 {
                try? FileManager.default.removeItem(atPath: temporary)
                return false
            }
            return true
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            return false
        }
    }

    // MARK: - Encoding

    static func encode(_ features: [TaskFeature], _ names: [String], key: [UInt8]) -> [UInt8] {
        var payload = ByteWriter()
        payload.u32(UInt32(names.count))
        for name in names { payload.sizedBytes(Array(name.utf8)) }
        payload.u32(UInt32(features.count))
        for feature in features {
            payload.u64(UInt64(feature.line))
            payload.u32(UInt32(feature.sequences.count))
            for sequence in feature.sequences {
                payload.i32s(sequence.inputIDs)
                payload.i32s(sequence.tokenTypeIDs)
            }
            switch feature.label {
            case nil: payload.u8(0)
            case let .classIndex(index): payload.u8(1); payload.u32(UInt32(bitPattern: index))
            case let .classIndices(indices): payload.u8(2); payload.i32s(indices)
            case let .value(value): payload.u8(3); payload.u32(value.bitPattern)
            }
            payload.i32s(feature.wordIDs)
            payload.i32s(feature.tokenLabels)
        }
        var file = ByteWriter()
        file.buffer += magic
        file.u32(version)
        file.buffer += key
        file.u64(UInt64(payload.buffer.count))
        file.buffer += Array(SHA256.hash(data: payload.buffer))
        file.buffer += payload.buffer
        return file.buffer
    }

    /// The features of a cache file, nil when it is not a whole, intact file of this key and version.
    static func decode(_ bytes: [UInt8], key: [UInt8]) -> ([TaskFeature], [String])? {
        guard bytes.count >= headerSize, Array(bytes[0..<4]) == magic else { return nil }
        var header = ByteReader(bytes: bytes, offset: 4)
        guard header.u32() == version, header.take(32).map(Array.init) == key,
              let length = header.u64(), UInt64(bytes.count - headerSize) == length,
              let checksum = header.take(32),
              Array(SHA256.hash(data: bytes[headerSize...])) == Array(checksum) else { return nil }
        var reader = ByteReader(bytes: bytes, offset: headerSize)
        guard let nameCount = reader.u32() else { return nil }
        var names: [String] = []
        for _ in 0..<nameCount {
            guard let name = reader.sizedBytes() else { return nil }
            names.append(String(decoding: name, as: UTF8.self))
        }
        guard let featureCount = reader.u32() else { return nil }
        var features: [TaskFeature] = []
        features.reserveCapacity(Int(featureCount))
        for _ in 0..<featureCount {
            guard let line = reader.u64(), let sequenceCount = reader.u32() else { return nil }
            var sequences: [EncodedSequence] = []
            for _ in 0..<sequenceCount {
                guard let ids = reader.i32s(), let types = reader.i32s() else { return nil }
                sequences.append(EncodedSequence(inputIDs: ids, tokenTypeIDs: types))
            }
            let label: TaskLabel?
            switch reader.u8() {
            case 0?: label = nil
            case 1?: guard let index = reader.u32() else { return nil }; label = .classIndex(Int32(bitPattern: index))
            case 2?: guard let indices = reader.i32s() else { return nil }; label = .classIndices(indices)
            case 3?: guard let bits = reader.u32() else { return nil }; label = .value(Float(bitPattern: bits))
            default: return nil
            }
            guard let wordIDs = reader.i32s(), let tokenLabels = reader.i32s() else { return nil }
            features.append(TaskFeature(line: Int(line), sequences: sequences, label: label, wordIDs: wordIDs,
                                        tokenLabels: tokenLabels))
        }
        return reader.offset == bytes.count ? (features, names) : nil
    }
}

private struct ByteWriter {
    var buffer: [UInt8] = []

    mutating func u8(_ value: UInt8) { buffer.append(value) }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { buffer += $0 } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { buffer += $0 } }
    mutating func sizedBytes(_ value: [UInt8]) { u32(UInt32(value.count)); buffer += value }
    mutating func i32s(_ values: [Int32]) {
        u32(UInt32(values.count))
        for value in values { u32(UInt32(bitPattern: value)) }
    }
}

/// Bounds-checked reads: nil past the end, so a truncated file is rejected, not trapped on.
private struct ByteReader {
    let bytes: [UInt8]
    var offset: Int

    mutating func take(_ count: Int) -> ArraySlice<UInt8>? {
        guard count >= 0, count <= bytes.count - offset else { return nil }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    mutating func u8() -> UInt8? { take(1)?.first }
    mutating func u32() -> UInt32? {
        take(4).map { $0.reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
    }
    mutating func u64() -> UInt64? {
        take(8).map { $0.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
    }
    mutating func sizedBytes() -> ArraySlice<UInt8>? { u32().flatMap { take(Int($0)) } }
    mutating func i32s() -> [Int32]? {
        guard let count = u32(), let raw = take(Int(count) * 4) else { return nil }
        return stride(from: raw.startIndex, to: raw.endIndex, by: 4).map { start in
            Int32(bitPattern: UInt32(raw[start]) | UInt32(raw[start + 1]) << 8 | UInt32(raw[start + 2]) << 16
                  | UInt32(raw[start + 3]) << 24)
        }
    }
}
