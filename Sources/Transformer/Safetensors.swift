// Safetensors I/O: the weight format of Hugging Face model directories (model.safetensors).
//
// Layout of a file: an 8-byte little-endian header length N, N bytes of JSON header, then the data
// buffer. The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} with offsets
// relative to the start of the data buffer, plus an optional "__metadata__" object of strings.
// Reading follows the reference implementation's rules (tensors tile the data buffer without gaps or
// overlaps, the buffer ends where the last tensor ends) so a file accepted here loads in `safetensors`
// and the other way round; every rule that fails names the file and the tensor.

import Foundation
import Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Data types

/// Element types of safetensors tensors that SwiftBERT reads or writes.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case float64 = "F64"
    case float32 = "F32"
    case float16 = "F16"
    case bfloat16 = "BF16"
    case int64 = "I64"
    case int32 = "I32"
    case int16 = "I16"
    case int8 = "I8"
    case uint8 = "U8"
    case bool = "BOOL"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    /// The reference writer orders tensors by dtype, larger alignment first (its `Dtype` enum order,
    /// descending), then by name; matching it makes files byte-identical to `safetensors.torch.save_file`.
    fileprivate var writeRank: Int {
        switch self {
        case .int64: return 0
        case .float64: return 1
        case .float32: return 2
        case .int32: return 3
        case .bfloat16: return 4
        case .float16: return 5
        case .int16: return 6
        case .int8: return 7
        case .uint8: return 8
        case .bool: return 9
        }
    }
}

// MARK: - Errors

/// A safetensors file that cannot be read or written, with the file and tensor involved.
public enum SafetensorsError: Error, LocalizedError, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case truncated(path: String, detail: String)
    case invalidHeader(path: String, detail: String)
    case invalidTensor(path: String, tensor: String, detail: String)
    case missingTensor(path: String, tensor: String)
    case wrongDType(path: String, tensor: String, dtype: String, expected: String)
    case writeFailed(path: String, reason: String)

    /// One line: names and dtypes come from the file and may hold line breaks, which are shown escaped.
    public var description: String {
        text.escapingLineBreaks
    }

    private var text: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "cannot open safetensors file \(path): \(reason)"
        case let .truncated(path, detail):
            return "safetensors file \(path) is truncated or corrupt: \(detail); re-copy or re-export the file"
        case let .invalidHeader(path, detail):
            return "safetensors file \(path) has an invalid header: \(detail)"
        case let .invalidTensor(path, tensor, detail):
            return "safetensors file \(path), tensor '\(tensor)': \(detail)"
        case let .missingTensor(path, tensor):
            return "safetensors file \(path) has no tensor named '\(tensor)'"
        case let .wrongDType(path, tensor, dtype, expected):
            return "safetensors file \(path), tensor '\(tensor)' has dtype \(dtype); expected \(expected)"
        case let .writeFailed(path, reason):
            return "cannot write safetensors file \(path): \(reason)"
        }
    }

    public var errorDescription: String? { description }
}

// MARK: - Reading

/// A safetensors file opened for reading: the header is parsed and validated on open, the data is
/// memory-mapped and converted on request.
public struct SafetensorsFile: @unchecked Sendable {
    /// The reference implementation refuses headers above 100 MB; a larger length is a foreign or
    /// corrupt file, and checking it first keeps a garbage length from allocating gigabytes.
    public static let maximumHeaderLength = 100_000_000

    /// Where a tensor lives in the data buffer.
    public struct TensorInfo: Sendable, Equatable {
        public let dtype: SafetensorsDType
        public let shape: [Int]
        /// Byte range relative to the start of the data buffer.
        public let byteRange: Range<Int>
        public var elementCount: Int { shape.reduce(1, *) }
    }

    public let path: String
    /// Tensor names in file (offset) order.
    public let tensorNames: [String]
    /// The `__metadata__` object of the header (empty when absent).
    public let metadata: [String: String]
    private let tensors: [String: TensorInfo]
    private let mapping: MappedFile
    private let dataStart: Int

    public init(contentsOfFile path: String) throws {
        let mapping = try MappedFile(path: path)
        let fileSize = mapping.count
        guard fileSize >= 8 else {
            throw SafetensorsError.truncated(path: path, detail: "\(fileSize) bytes, shorter than the 8-byte header length")
        }
        var headerLength64: UInt64 = 0
        withUnsafeMutableBytes(of: &headerLength64) { $0.copyMemory(from: UnsafeRawBufferPointer(start: mapping.base, count: 8)) }
        headerLength64 = UInt64(littleEndian: headerLength64)
        guard headerLength64 <= UInt64(Self.maximumHeaderLength) else {
            throw SafetensorsError.invalidHeader(
                path: path, detail: "header length \(headerLength64) exceeds the \(Self.maximumHeaderLength)-byte limit (not a safetensors file?)")
        }
        let headerLength = Int(headerLength64)
        guard headerLength <= fileSize - 8 else {
            throw SafetensorsError.truncated(
                path: path, detail: "header length \(headerLength) but only \(fileSize - 8) bytes follow the length field")
        }
        let headerBytes = Data(bytes: mapping.base + 8, count: headerLength)
        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: headerBytes)
        } catch let error as HeaderDecodingError {
            throw SafetensorsError.invalidTensor(path: path, tensor: error.tensor, detail: error.detail)
        } catch {
            throw SafetensorsError.invalidHeader(path: path, detail: "not a JSON object of tensor entries (\(Self.describe(error)))")
        }

        let dataLength = fileSize - 8 - headerLength
        var parsed: [String: TensorInfo] = [:]
        for entry in header.entries {
            guard let dtype = SafetensorsDType(rawValue: entry.dtype) else {
                throw SafetensorsError.invalidTensor(path: path, tensor: entry.name, detail: "unsupported dtype '\(entry.dtype)'")
            }
            guard entry.offsets.count == 2 else {
                throw SafetensorsError.invalidTensor(path: path, tensor: entry.name, detail: "data_offsets must be [begin, end]")
            }
            let begin = entry.offsets[0], end = entry.offsets[1]
            guard begin <= end else {
                throw SafetensorsError.invalidTensor(path: path, tensor: entry.name, detail: "data_offsets [\(begin), \(end)] run backwards")
            }
            guard end <= UInt64(dataLength) else {
                throw SafetensorsError.truncated(
                    path: path, detail: "tensor '\(entry.name)' ends at data byte \(end) but the data buffer has \(dataLength) bytes")
            }
            // The shape product may overflow for a corrupt header; check in wide arithmetic.
            var byteCount: UInt64 = UInt64(dtype.size)
            var shape: [Int] = []
            for dimension in entry.shape {
                let (product, overflow) = byteCount.multipliedReportingOverflow(by: dimension)
                guard !overflow, dimension <= UInt64(Int.max) else {
                    throw SafetensorsError.invalidTensor(path: path, tensor: entry.name, detail: "shape \(entry.shape) is absurdly large")
                }
                byteCount = product
                shape.append(Int(dimension))
            }
            guard byteCount == end - begin else {
                throw SafetensorsError.invalidTensor(
                    path: path, tensor: entry.name,
                    detail: "shape \(shape) of \(dtype.rawValue) needs \(byteCount) bytes but data_offsets [\(begin), \(end)] hold \(end - begin)")
            }
            parsed[entry.name] = TensorInfo(dtype: dtype, shape: shape, byteRange: Int(begin)..<Int(end))
        }

        // Tensors must tile the data buffer: sorted by offset, each starts where the previous ended.
        let ordered = parsed.sorted { lhs, rhs in
            lhs.value.byteRange.lowerBound != rhs.value.byteRange.lowerBound
                ? lhs.value.byteRange.lowerBound < rhs.value.byteRange.lowerBound
                : lhs.value.byteRange.upperBound < rhs.value.byteRange.upperBound
        }
        var position = 0
        for (name, info) in ordered {
            if info.byteRange.lowerBound < position {
                throw SafetensorsError.invalidTensor(
                    path: path, tensor: name, detail: "data_offsets \(info.byteRange) overlap the previous tensor (which ends at \(position))")
            }
            if info.byteRange.lowerBound > position {
                throw SafetensorsError.invalidTensor(
                    path: path, tensor: name, detail: "data_offsets \(info.byteRange) leave a gap after byte \(position)")
            }
            position = info.byteRange.upperBound
        }
        guard position == dataLength else {
            throw SafetensorsError.invalidHeader(
                path: path, detail: "the tensors cover \(position) bytes but the data buffer has \(dataLength) (trailing bytes)")
        }

        self.path = path
        self.mapping = mapping
        self.dataStart = 8 + headerLength
        self.tensors = parsed
        self.tensorNames = ordered.map(\.key)
        self.metadata = header.metadata
    }

    /// Tensors that lie at absolute byte ranges of a mapped file of another format (a PyTorch
    /// checkpoint), read through the same accessors.
    init(path: String, mapping: MappedFile, tensors: [String: TensorInfo], order: [String]) {
        self.path = path
        self.mapping = mapping
        self.dataStart = 0
        self.tensors = tensors
        self.tensorNames = order
        self.metadata = [:]
    }

    /// Dtype and shape of a tensor, or nil when the file has no tensor of that name.
    public func info(_ name: String) -> (dtype: String, shape: [Int])? {
        guard let info = tensors[name] else { return nil }
        return (info.dtype.rawValue, info.shape)
    }

    /// Full description of a tensor, or nil when the file has no tensor of that name.
    public func tensorInfo(_ name: String) -> TensorInfo? { tensors[name] }

    /// The raw bytes of a tensor (little-endian), valid while this file value is alive.
    public func withRawBytes<Result>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> Result) throws -> Result {
        let info = try requireInfo(name)
        let bytes = UnsafeRawBufferPointer(start: mapping.base + dataStart + info.byteRange.lowerBound, count: info.byteRange.count)
        return try withExtendedLifetime(mapping) { try body(bytes) }
    }

    /// A floating-point tensor as Float (F32 as is; F64, F16 and BF16 converted).
    public func floats(_ name: String) throws -> [Float] {
        let info = try requireInfo(name)
        return try [Float](unsafeUninitializedCapacity: info.elementCount) { buffer, initialized in
            try copyFloats(name, into: UnsafeMutableBufferPointer(rebasing: buffer[0..<info.elementCount]))
            initialized = info.elementCount
        }
    }

    /// Copies a floating-point tensor into `destination`, whose count must equal the tensor's element
    /// count (loading straight into a parameter buffer without an intermediate array).
    public func copyFloats(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        let info = try requireInfo(name)
        guard destination.count == info.elementCount else {
            throw SafetensorsError.invalidTensor(
                path: path, tensor: name, detail: "has \(info.elementCount) elements (shape \(info.shape)); expected \(destination.count)")
        }
        let count = info.elementCount
        guard count > 0 else { return }
        try withRawBytes(name) { raw in
            let out = destination.baseAddress!
            switch info.dtype {
            case .float32:
                #if _endian(little)
                UnsafeMutableRawPointer(out).copyMemory(from: raw.baseAddress!, byteCount: count * 4)
                #else
                for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                #endif
            case .float64:
                for i in 0..<count {
                    out[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                }
            case .bfloat16:
                for i in 0..<count {
                    out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
                }
            case .float16:
                for i in 0..<count {
                    out[i] = floatFromHalf(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                }
            default:
                throw SafetensorsError.wrongDType(path: path, tensor: name, dtype: info.dtype.rawValue, expected: "F32, F64, F16 or BF16")
            }
        }
    }

    /// An integer tensor as Int64 (I64, I32, I16, I8, U8 and BOOL widened).
    public func int64s(_ name: String) throws -> [Int64] {
        let info = try requireInfo(name)
        let count = info.elementCount
        return try withRawBytes(name) { raw -> [Int64] in
            switch info.dtype {
            case .int64:
                return (0..<count).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            case .int32:
                return (0..<count).map { Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
            case .int16:
                return (0..<count).map { Int64(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self))) }
            case .int8:
                return (0..<count).map { Int64(raw.load(fromByteOffset: $0, as: Int8.self)) }
            case .uint8, .bool:
                return (0..<count).map { Int64(raw[$0]) }
            default:
                throw SafetensorsError.wrongDType(path: path, tensor: name, dtype: info.dtype.rawValue, expected: "an integer dtype (I64, I32, ...)")
            }
        }
    }

    private func requireInfo(_ name: String) throws -> TensorInfo {
        guard let info = tensors[name] else { throw SafetensorsError.missingTensor(path: path, tensor: name) }
        return info
    }

    private static func describe(_ error: Error) -> String {
        (error as? DecodingError)?.summary ?? "\(error)"
    }
}

/// The C write(2); a file-scope name because `SafetensorsWriter.write` shadows it inside the enum.
private func posixWrite(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}

/// IEEE half -> single, including subnormals, infinities and NaN.
@inline(__always)
private func floatFromHalf(_ bits: UInt16) -> Float {
    let sign = UInt32(bits & 0x8000) << 16
    let exponent = UInt32(bits >> 10) & 0x1F
    let mantissa = UInt32(bits & 0x03FF)
    if exponent == 0 {
        // Zero or subnormal: value = mantissa * 2^-24.
        let magnitude = Float(mantissa) * 0x1p-24
        return sign == 0 ? magnitude : -magnitude
    }
    if exponent == 0x1F {
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}

// MARK: - Header decoding

private struct HeaderDecodingError: Error {
    let tensor: String
    let detail: String
}

/// The JSON header: tensor entries plus the optional `__metadata__` string map.
private struct Header: Decodable {
    struct Entry {
        let name: String
        let dtype: String
        let shape: [UInt64]
        let offsets: [UInt64]
    }

    struct AnyKey: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    struct TensorEntry: Decodable {
        let dtype: String
        let shape: [UInt64]
        let data_offsets: [UInt64]
    }

    var entries: [Entry] = []
    var metadata: [String: String] = [:]

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        for key in container.allKeys {
            if key.stringValue == "__metadata__" {
                do {
                    metadata = try container.decode([String: String].self, forKey: key)
                } catch {
                    throw HeaderDecodingError(tensor: "__metadata__", detail: "must be an object of string values")
                }
                continue
            }
            let entry: TensorEntry
            do {
                entry = try container.decode(TensorEntry.self, forKey: key)
            } catch {
                throw HeaderDecodingError(
                    tensor: key.stringValue,
                    detail: "entry must be {\"dtype\": string, \"shape\": [non-negative integers], \"data_offsets\": [begin, end]} (\(error.localizedDescription))")
            }
            entries.append(Entry(name: key.stringValue, dtype: entry.dtype, shape: entry.shape, offsets: entry.data_offsets))
        }
    }
}

// MARK: - Memory mapping

/// A read-only private mapping of a whole file, unmapped when the last reference goes away.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeRawPointer
    let count: Int
    private let mappedLength: Int

    init(path: String) throws {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw SafetensorsError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw SafetensorsError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw SafetensorsError.cannotOpen(path: path, reason: "not a regular file")
        }
        count = Int(status.st_size)
        // mmap rejects length 0; map one page so that an empty file reaches the "truncated" check.
        mappedLength = max(count, 1)
        let address = mmap(nil, mappedLength, PROT_READ, MAP_PRIVATE, descriptor, 0)
        guard let address, address != MAP_FAILED else {
            throw SafetensorsError.cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(address)
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), mappedLength)
    }
}

// MARK: - Writing

/// Writes safetensors files the way the reference `safetensors` writer does: `__metadata__` first,
/// tensors ordered by dtype then name and laid out contiguously in that order, header padded with
/// spaces to a multiple of 8 bytes. Data is streamed to a temporary file beside the target, fsynced
/// and renamed into place, so a reader never sees a half-written file.
public enum SafetensorsWriter {
    /// One tensor to write: raw little-endian bytes of `shape.product * dtype.size` length.
    public struct Tensor {
        public let name: String
        public let dtype: SafetensorsDType
        public let shape: [Int]
        public let bytes: UnsafeRawBufferPointer

        public init(name: String, dtype: SafetensorsDType, shape: [Int], bytes: UnsafeRawBufferPointer) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        public init(name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
            self.init(name: name, dtype: .float32, shape: shape, bytes: UnsafeRawBufferPointer(floats))
        }
    }

    /// Writes F32 tensors (the agreed interface).
    public static func write(
        _ tensors: [(name: String, shape: [Int], data: UnsafeBufferPointer<Float>)],
        metadata: [String: String], to path: String
    ) throws {
        try write(tensors.map { Tensor(name: $0.name, shape: $0.shape, floats: $0.data) }, metadata: metadata, to: path)
    }

    /// Writes tensors of any supported dtype.
    public static func write(_ tensors: [Tensor], metadata: [String: String], to path: String) throws {
        #if !_endian(little)
        throw SafetensorsError.writeFailed(path: path, reason: "big-endian hosts are not supported")
        #endif
        var seen = Set<String>()
        for tensor in tensors {
            guard tensor.name != "__metadata__", !tensor.name.isEmpty else {
                throw SafetensorsError.writeFailed(path: path, reason: "invalid tensor name '\(tensor.name)'")
            }
            guard seen.insert(tensor.name).inserted else {
                throw SafetensorsError.writeFailed(path: path, reason: "tensor '\(tensor.name)' given twice")
            }
            guard tensor.shape.allSatisfy({ $0 >= 0 }) else {
                throw SafetensorsError.writeFailed(path: path, reason: "tensor '\(tensor.name)' has a negative dimension in \(tensor.shape)")
            }
            let expected = tensor.shape.reduce(1, *) * tensor.dtype.size
            guard tensor.bytes.count == expected else {
                throw SafetensorsError.writeFailed(
                    path: path, reason: "tensor '\(tensor.name)' of shape \(tensor.shape) needs \(expected) bytes, got \(tensor.bytes.count)")
            }
        }
        let ordered = tensors.sorted {
            $0.dtype.writeRank != $1.dtype.writeRank ? $0.dtype.writeRank < $1.dtype.writeRank : $0.name < $1.name
        }

        var header = "{"
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            fields.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        for tensor in ordered {
            let end = offset + tensor.bytes.count
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            fields.append("\(jsonString(tensor.name)):{\"dtype\":\"\(tensor.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        header += fields.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        headerBytes += [UInt8](repeating: UInt8(ascii: " "), count: (8 - headerBytes.count % 8) % 8)

        let temporaryPath = path + ".partial"
        let descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw SafetensorsError.writeFailed(path: path, reason: String(cString: strerror(errno)))
        }
        do {
            var length = UInt64(headerBytes.count).littleEndian
            try withUnsafeBytes(of: &length) { try writeAll(descriptor, $0, path: path) }
            try headerBytes.withUnsafeBytes { try writeAll(descriptor, $0, path: path) }
            for tensor in ordered { try writeAll(descriptor, tensor.bytes, path: path) }
            guard fsync(descriptor) == 0 else {
                throw SafetensorsError.writeFailed(path: path, reason: "fsync: \(String(cString: strerror(errno)))")
            }
        } catch {
            close(descriptor)
            unlink(temporaryPath)
            throw error
        }
        guard close(descriptor) == 0 else {
            unlink(temporaryPath)
            throw SafetensorsError.writeFailed(path: path, reason: "close: \(String(cString: strerror(errno)))")
        }
        guard rename(temporaryPath, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw SafetensorsError.writeFailed(path: path, reason: "rename: \(reason)")
        }
    }

    /// write(2) until every byte is out, retrying on EINTR and short writes; large tensors go in 64 MiB
    /// pieces so the kernel never sees a length above its per-call limit.
    private static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        guard var cursor = bytes.baseAddress else { return }
        var remaining = bytes.count
        while remaining > 0 {
            let written = posixWrite(descriptor, cursor, min(remaining, 64 << 20))
            if written < 0 {
                if errno == EINTR { continue }
                throw SafetensorsError.writeFailed(path: path, reason: String(cString: strerror(errno)))
            }
            cursor += written
            remaining -= written
        }
    }

    /// A JSON string literal, escaping what RFC 8259 requires.
    private static func jsonString(_ value: String) -> String {
        var result = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                result += String(format: "\\u%04x", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
