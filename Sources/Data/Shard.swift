import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// The reader maps shards and uses their little-endian integers in place.
#if _endian(big)
#error("SwiftBERT shards are little-endian and memory-mapped as they are; big-endian hosts are not supported")
#endif

// MARK: - Format

/// The binary shard format: pretraining instances, unmasked, so masking can differ per epoch.
///
/// Little-endian throughout. A fixed 160-byte header, then the payload:
///
///     offset  size  field
///          0     8  magic "SBRTSHRD"
///          8     4  version (1)
///         12     4  header size in bytes (160)
///         16     8  instance count N
///         24     8  token count K (all instances, [CLS]/[SEP] included)
///         32     4  sequence length T the instances were built for (max_seq_length)
///         36     4  reserved (0)
///         40    64  vocabulary fingerprint, SHA-256 hex (ASCII)
///        104    32  SHA-256 of the payload
///        136     8  first 8 bytes of the SHA-256 of header bytes 0..<136 (header checksum)
///        144    16  reserved (0)
///        160        tokens: K x UInt32, bit 31 set on WordPiece continuations ("##..."), padded to 8 bytes
///                   offsets: (N + 1) x UInt64, instance i is tokens[offsets[i] ..< offsets[i + 1]]
///                   segment A lengths: N x UInt16 (tokens between [CLS] and the first [SEP])
///                   NSP labels: N x UInt8
///
/// An MLM instance is `[CLS] A [SEP] B [SEP]`, or `[CLS] A [SEP]` when B is empty (no NSP). A causal
/// LM instance is a plain run of at least 2 tokens, its segment A length its token count, label 0;
/// the header does not say which, the manifest's `objective` does.
public enum ShardFormat {
    public static let magic: [UInt8] = Array("SBRTSHRD".utf8)
    public static let version: UInt32 = 1
    public static let headerSize = 160
    /// Bit 31 of a stored token marks a WordPiece continuation (whole-word masking groups on it).
    public static let continuationBit: UInt32 = 1 << 31
    public static let tokenIDMask: UInt32 = ~continuationBit

    static func payloadSize(instanceCount n: Int, tokenCount k: Int) -> Int {
        paddedTokenBytes(k) + 8 * (n + 1) + 2 * n + n
    }

    static func paddedTokenBytes(_ k: Int) -> Int { (4 * k + 7) & ~7 }
}

/// The counts and identity recorded in a shard header.
public struct ShardHeader: Equatable, Sendable {
    public var instanceCount: Int
    public var tokenCount: Int
    public var sequenceLength: Int
    public var vocabularyFingerprint: String
    public var payloadSHA256: [UInt8]

    func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: ShardFormat.headerSize)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { raw in
                for i in 0..<raw.count { bytes[offset + i] = raw[i] }
            }
        }
        bytes.replaceSubrange(0..<8, with: ShardFormat.magic)
        put(ShardFormat.version, at: 8)
        put(UInt32(ShardFormat.headerSize), at: 12)
        put(UInt64(instanceCount), at: 16)
        put(UInt64(tokenCount), at: 24)
        put(UInt32(sequenceLength), at: 32)
        let fingerprint = Array(vocabularyFingerprint.utf8.prefix(64))
        bytes.replaceSubrange(40..<(40 + fingerprint.count), with: fingerprint)
        bytes.replaceSubrange(104..<136, with: payloadSHA256)
        let check = Array(SHA256.hash(data: bytes[0..<136]).prefix(8))
        bytes.replaceSubrange(136..<144, with: check)
        return bytes
    }

    /// Parses and checks a header; `path` is only used in error messages.
    static func decode(_ raw: UnsafeRawBufferPointer, path: String) throws -> ShardHeader {
        guard raw.count >= ShardFormat.headerSize else {
            throw DataError.invalidShard(
                path: path, reason: "the file has \(raw.count) bytes, shorter than the \(ShardFormat.headerSize)-byte header (truncated?)")
        }
        guard Array(raw[0..<8]) == ShardFormat.magic else {
            throw DataError.invalidShard(path: path, reason: "wrong magic number (not a shard file)")
        }
        func get<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
            T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        let version = get(UInt32.self, at: 8)
        guard version == ShardFormat.version else {
            throw DataError.invalidShard(
                path: path, reason: "format version \(version), this build reads version \(ShardFormat.version)")
        }
        guard get(UInt32.self, at: 12) == UInt32(ShardFormat.headerSize) else {
            throw DataError.invalidShard(path: path, reason: "unexpected header size")
        }
        let check = Array(SHA256.hash(data: UnsafeRawBufferPointer(rebasing: raw[0..<136])).prefix(8))
        guard check == Array(raw[136..<144]) else {
            throw DataError.invalidShard(path: path, reason: "header checksum mismatch (corrupt header)")
        }
        let fingerprintBytes = Array(raw[40..<104]).prefix { $0 != 0 }
        return ShardHeader(
            instanceCount: Int(get(UInt64.self, at: 16)),
            tokenCount: Int(get(UInt64.self, at: 24)),
            sequenceLength: Int(get(UInt32.self, at: 32)),
            vocabularyFingerprint: String(decoding: fingerprintBytes, as: UTF8.self),
            payloadSHA256: Array(raw[104..<136]))
    }
}

// MARK: - Writing

/// Streams instances into one shard file: tokens go to disk as they arrive, the small per-instance
/// tables (offsets, A lengths, labels: 11 bytes an instance) stay in memory until `finish()`, which
/// appends them and writes the real header over the placeholder.
public final class ShardWriter {
    public let path: String
    public let sequenceLength: Int
    public let vocabularyFingerprint: String
    public private(set) var instanceCount = 0
    public private(set) var tokenCount = 0

    private let file: UnsafeMutablePointer<FILE>
    private var hasher = SHA256()
    private var buffer: [UInt32] = []
    private var offsets: [UInt64] = [0]
    private var segmentALengths: [UInt16] = []
    private var nspLabels: [UInt8] = []
    private var finished = false

    public init(path: String, sequenceLength: Int, vocabularyFingerprint: String) throws {
        guard let file = fopen(path, "wb") else {
            throw DataError.writeFailed(path: path, reason: String(cString: strerror(errno)))
        }
        self.file = file
        self.path = path
        self.sequenceLength = sequenceLength
        self.vocabularyFingerprint = vocabularyFingerprint
        let placeholder = [UInt8](repeating: 0, count: ShardFormat.headerSize)
        try write(placeholder)
        buffer.reserveCapacity(1 << 18)
    }

    deinit {
        if !finished { fclose(file) }
    }

    /// Appends one instance: stored tokens (ids with the continuation bit), length of segment A.
    public func append(tokens: UnsafeBufferPointer<UInt32>, segmentALength: Int, nspLabel: Int) throws {
        precondition(tokens.count <= sequenceLength && segmentALength <= tokens.count && segmentALength <= Int(UInt16.max))
        buffer.append(contentsOf: tokens)
        tokenCount += tokens.count
        instanceCount += 1
        offsets.append(UInt64(tokenCount))
        segmentALengths.append(UInt16(segmentALength))
        nspLabels.append(UInt8(nspLabel))
        if buffer.count >= 1 << 18 { try flushTokens() }
    }

    public func append(_ instance: TrainingInstance) throws {
        try instance.tokens.withUnsafeBufferPointer {
            try append(tokens: $0, segmentALength: instance.segmentALength, nspLabel: instance.nspLabel)
        }
    }

    /// Bytes the file will have once finished.
    public var byteCount: Int {
        ShardFormat.headerSize + ShardFormat.payloadSize(instanceCount: instanceCount, tokenCount: tokenCount)
    }

    /// Writes the tables and the header; returns the header written (with the payload checksum).
    @discardableResult
    public func finish() throws -> ShardHeader {
        try flushTokens()
        let padding = ShardFormat.paddedTokenBytes(tokenCount) - 4 * tokenCount
        try writePayload([UInt8](repeating: 0, count: padding))
        try writePayload(offsets)
        try writePayload(segmentALengths)
        try writePayload(nspLabels)
        let header = ShardHeader(
            instanceCount: instanceCount, tokenCount: tokenCount, sequenceLength: sequenceLength,
            vocabularyFingerprint: vocabularyFingerprint, payloadSHA256: Array(hasher.finalize()))
        guard fseek(file, 0, SEEK_SET) == 0 else {
            throw DataError.writeFailed(path: path, reason: String(cString: strerror(errno)))
        }
        try write(header.encoded())
        finished = true
        let flushed = fflush(file) == 0 && fsync(fileno(file)) == 0
        let closed = fclose(file) == 0
        guard flushed && closed else {
            throw DataError.writeFailed(path: path, reason: String(cString: strerror(errno)))
        }
        return header
    }

    private func flushTokens() throws {
        try writePayload(buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    private func writePayload<T>(_ values: [T]) throws {
        values.withUnsafeBytes { raw in
            hasher.update(bufferPointer: raw)
        }
        try write(values)
    }

    private func write<T>(_ values: [T]) throws {
        let ok = values.withUnsafeBytes { raw in
            raw.count == 0 || fwrite(raw.baseAddress!, 1, raw.count, file) == raw.count
        }
        guard ok else { throw DataError.writeFailed(path: path, reason: String(cString: strerror(errno))) }
    }
}

// MARK: - Reading

/// A memory-mapped shard. Opening checks the header, the file size against the header counts and
/// the offset table, so a truncated or foreign file fails here, naming the file; the payload
/// checksum is verified by `verifyChecksum()` (it reads every byte: `inspect` and the trainer's
/// start do it), the values of a record by `checkRecord(_:...)` when the record is read.
public final class Shard: @unchecked Sendable {
    public let path: String
    public let header: ShardHeader
    private let mapping: UnsafeMutableRawPointer
    private let mappedSize: Int

    public var instanceCount: Int { header.instanceCount }
    /// Size of the file in bytes.
    public var byteCount: Int { mappedSize }
    /// Stored tokens, [K]; ids in the low 31 bits, bit 31 = WordPiece continuation.
    public let tokens: UnsafeBufferPointer<UInt32>
    /// [N + 1] token offsets.
    public let offsets: UnsafeBufferPointer<UInt64>
    /// [N] tokens in segment A.
    public let segmentALengths: UnsafeBufferPointer<UInt16>
    /// [N] NSP labels.
    public let nspLabels: UnsafeBufferPointer<UInt8>

    /// Opens the shard at `path`, checking its records as `objective` lays them out.
    public init(path: String, expectedVocabularyFingerprint: String? = nil, objective: PretrainingObjective = .mlm) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw DataError.invalidShard(path: path, reason: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw DataError.invalidShard(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))")
        }
        let size = Int(info.st_size)
        guard size >= ShardFormat.headerSize else {
            throw DataError.invalidShard(
                path: path, reason: "the file has \(size) bytes, shorter than the \(ShardFormat.headerSize)-byte header (truncated?)")
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw DataError.invalidShard(path: path, reason: "cannot map: \(String(cString: strerror(errno)))")
        }
        mapping = base
        mappedSize = size
        do {
            header = try ShardHeader.decode(UnsafeRawBufferPointer(start: base, count: size), path: path)
        } catch {
            munmap(base, size)
            throw error
        }
        let n = header.instanceCount, k = header.tokenCount
        let expected = ShardFormat.headerSize + ShardFormat.payloadSize(instanceCount: n, tokenCount: k)
        guard size == expected else {
            munmap(base, size)
            throw DataError.invalidShard(
                path: path,
                reason: "the file has \(size) bytes but its header describes \(expected) (\(n) instances, \(k) tokens); "
                    + (size < expected ? "the file is truncated" : "the file has trailing data"))
        }
        if let expectedFingerprint = expectedVocabularyFingerprint, expectedFingerprint != header.vocabularyFingerprint {
            munmap(base, size)
            throw DataError.vocabularyMismatch(
                path: path, expected: expectedFingerprint, found: header.vocabularyFingerprint)
        }
        var cursor = base + ShardFormat.headerSize
        tokens = UnsafeBufferPointer(start: cursor.assumingMemoryBound(to: UInt32.self), count: k)
        cursor += ShardFormat.paddedTokenBytes(k)
        offsets = UnsafeBufferPointer(start: cursor.assumingMemoryBound(to: UInt64.self), count: n + 1)
        cursor += 8 * (n + 1)
        segmentALengths = UnsafeBufferPointer(start: cursor.assumingMemoryBound(to: UInt16.self), count: n)
        cursor += 2 * n
        nspLabels = UnsafeBufferPointer(start: cursor.assumingMemoryBound(to: UInt8.self), count: n)
        // The table is small next to the tokens; checking it here makes every later access in bounds.
        do {
            try Shard.checkTable(
                offsets: offsets, segmentALengths: segmentALengths, tokenCount: k,
                sequenceLength: header.sequenceLength, objective: objective, path: path)
        } catch {
            munmap(base, size)
            throw error
        }
    }

    private static func checkTable(
        offsets: UnsafeBufferPointer<UInt64>, segmentALengths: UnsafeBufferPointer<UInt16>, tokenCount k: Int,
        sequenceLength: Int, objective: PretrainingObjective, path: String
    ) throws {
        let n = segmentALengths.count
        guard offsets[0] == 0 && offsets[n] == UInt64(k) else {
            throw DataError.invalidShard(
                path: path, reason: "the offset table runs from \(offsets[0]) to \(offsets[n]), not over the \(k) tokens (corrupt file)")
        }
        for i in 0..<n {
            let start = offsets[i], end = offsets[i + 1]
            guard end >= start else {
                throw DataError.invalidRecord(path: path, record: i, reason: "it ends (\(end)) before it starts (\(start))")
            }
            let length = Int(clamping: end - start), aLength = Int(segmentALengths[i])
            guard length <= sequenceLength else {
                throw DataError.invalidRecord(
                    path: path, record: i, reason: "\(length) tokens, longer than the sequence length \(sequenceLength)")
            }
            switch objective {
            case .mlm:
                guard aLength + 2 <= length else {
                    throw DataError.invalidRecord(
                        path: path, record: i,
                        reason: "segment A of \(aLength) tokens does not fit with [CLS] and [SEP] in its \(length) tokens")
                }
            case .causalLM:
                guard length >= 2, aLength == length else {
                    throw DataError.invalidRecord(
                        path: path, record: i,
                        reason: "\(length) tokens with segment A of \(aLength); a causal LM sequence has at least 2 tokens, all in segment A")
                }
            }
        }
    }

    deinit { munmap(mapping, mappedSize) }

    /// Stored tokens of instance `i`.
    @inline(__always)
    public func tokens(of i: Int) -> UnsafeBufferPointer<UInt32> {
        let start = Int(offsets[i]), end = Int(offsets[i + 1])
        return UnsafeBufferPointer(rebasing: tokens[start..<end])
    }

    /// Checks the values of instance `i` that opening does not: token ids below `vocabularySize`, the
    /// NSP label below `nspLabelCount`. A checksum only proves the file is what its writer wrote, and
    /// an id outside the vocabulary would index past the embedding table.
    public func checkRecord(_ i: Int, vocabularySize: Int, nspLabelCount: Int) throws {
        let tokens = tokens(of: i)
        var largest: UInt32 = 0
        for token in tokens { largest = max(largest, token & ShardFormat.tokenIDMask) }
        if Int(largest) >= vocabularySize {
            let position = tokens.firstIndex { Int($0 & ShardFormat.tokenIDMask) >= vocabularySize }!
            throw DataError.invalidRecord(
                path: path, record: i,
                reason: "token id \(tokens[position] & ShardFormat.tokenIDMask) at position \(position) is outside the vocabulary of \(vocabularySize) tokens")
        }
        let label = Int(nspLabels[i])
        if label >= nspLabelCount {
            throw DataError.invalidRecord(
                path: path, record: i, reason: "NSP label \(label), the data has \(nspLabelCount) label\(nspLabelCount == 1 ? "" : "s")")
        }
    }

    /// Recomputes the payload SHA-256 and compares it with the header.
    public func verifyChecksum() throws {
        let payload = UnsafeRawBufferPointer(
            start: mapping + ShardFormat.headerSize, count: mappedSize - ShardFormat.headerSize)
        var hasher = SHA256()
        var start = 0
        while start < payload.count {
            let end = min(payload.count, start + (8 << 20))
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: payload[start..<end]))
            start = end
        }
        guard Array(hasher.finalize()) == header.payloadSHA256 else { throw DataError.checksumMismatch(path: path) }
    }
}
