import Foundation

/// Writes scalar summaries as a TensorBoard event file, `events.out.tfevents.<unix time>.<host>`.
///
/// The file is a sequence of TFRecords (little-endian `uint64` length, masked CRC-32C of the length,
/// the bytes, masked CRC-32C of the bytes), each holding one `tensorflow.Event` protocol buffer. The
/// first record carries `file_version = "brain.Event:2"`; the others a `Summary` of scalar values.
/// The few protobuf fields needed are encoded by hand:
///
///     Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
///     Summary { repeated Value value = 1; }
///     Value   { string tag = 1; float simple_value = 2; }
public final class TensorBoardWriter {
    public let path: String
    private var descriptor: Int32

    /// Creates a new event file in `directory` (created if needed).
    public init(directory: String, wallTime: Double = Date().timeIntervalSince1970,
                hostname: String = ProcessInfo.processInfo.hostName) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw MetricsError(path: directory, message: "cannot create the TensorBoard directory: \(error.localizedDescription)")
        }
        var path = directory + "/events.out.tfevents.\(Int(wallTime)).\(hostname)"
        // A second writer in the same second (a quick restart) must not clobber the first file.
        if FileManager.default.fileExists(atPath: path) { path += ".\(getpid())" }
        self.path = path
        descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if descriptor < 0 {
            throw MetricsError(path: path, message: "cannot create the event file: \(String(cString: strerror(errno)))")
        }
        var event = ProtobufWriter()
        event.double(field: 1, wallTime)
        event.string(field: 3, "brain.Event:2")
        try writeRecord(event.bytes)
    }

    deinit { close() }

    /// Appends one event with the given scalars (tags such as `train/loss`) at `step`.
    public func addScalars(_ scalars: [(tag: String, value: Double)], step: Int,
                           wallTime: Double = Date().timeIntervalSince1970) throws {
        var summary = ProtobufWriter()
        for (tag, value) in scalars {
            var entry = ProtobufWriter()
            entry.string(field: 1, tag)
            entry.float(field: 2, Float(value))
            summary.message(field: 1, entry.bytes)
        }
        var event = ProtobufWriter()
        event.double(field: 1, wallTime)
        event.varint(field: 2, UInt64(bitPattern: Int64(step)))
        event.message(field: 5, summary.bytes)
        try writeRecord(event.bytes)
    }

    /// Appends the set fields of a metrics record as `<split>/<field>` scalars.
    public func add(_ record: MetricsRecord, wallTime: Double = Date().timeIntervalSince1970) throws {
        let scalars = record.fields.compactMap { name, value in value.map { ("\(record.split.rawValue)/\(name)", $0) } }
        try addScalars(scalars, step: record.step, wallTime: wallTime)
    }

    public func close() {
        if descriptor >= 0 {
            closeDescriptor(descriptor)
            descriptor = -1
        }
    }

    /// One TFRecord, written with a single `write(2)` so readers never see half a record.
    private func writeRecord(_ data: [UInt8]) throws {
        precondition(descriptor >= 0, "TensorBoardWriter used after close()")
        var record: [UInt8] = []
        record.reserveCapacity(data.count + 16)
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian, Array.init)
        record += length
        record += withUnsafeBytes(of: CRC32C.masked(CRC32C.checksum(length)).littleEndian, Array.init)
        record += data
        record += withUnsafeBytes(of: CRC32C.masked(CRC32C.checksum(data)).littleEndian, Array.init)
        var offset = 0
        while offset < record.count {
            let written = record.withUnsafeBytes { write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw MetricsError(path: path, message: "write failed: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }
}

/// CRC-32C (Castagnoli), the checksum of TFRecord framing, table driven.
public enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
        return c
    }

    public static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TFRecord's masking, so that a CRC stored inside checksummed data does not checksum to itself.
    public static func masked(_ crc: UInt32) -> UInt32 {
        ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}

/// The protobuf wire format, just the field kinds event files need.
private struct ProtobufWriter {
    var bytes: [UInt8] = []

    mutating func rawVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ wireType: UInt64) { rawVarint(UInt64(field) << 3 | wireType) }

    mutating func varint(field: Int, _ value: UInt64) {
        key(field, 0)
        rawVarint(value)
    }

    mutating func double(field: Int, _ value: Double) {
        key(field, 1)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init)
    }

    mutating func float(field: Int, _ value: Float) {
        key(field, 5)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init)
    }

    mutating func message(field: Int, _ payload: [UInt8]) {
        key(field, 2)
        rawVarint(UInt64(payload.count))
        bytes += payload
    }

    mutating func string(field: Int, _ text: String) { message(field: field, Array(text.utf8)) }
}
