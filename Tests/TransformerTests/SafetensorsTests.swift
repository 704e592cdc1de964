import Foundation
import Transformer
import XCTest

/// Reading files written by the reference `safetensors` library, writing files it would write, and
/// rejecting damaged files with errors that name the file and the tensor.
final class SafetensorsTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    func fixture(_ name: String) -> String { Self.fixtures.appendingPathComponent(name).path }

    // MARK: - Reading reference files

    func testReadsReferenceFileWithMixedDtypesAndMetadata() throws {
        // Facts stated by scripts/make_transformer_fixtures.py for pad_gelu_h48: B=3, T=16, sequence
        // lengths 16, 11, 7, three masked tokens per sequence, vocabulary 120, hidden 48.
        let file = try SafetensorsFile(contentsOfFile: fixture("pad_gelu_h48.safetensors"))
        XCTAssertEqual(file.info("input.input_ids")?.dtype, "I64")
        XCTAssertEqual(file.info("input.input_ids")?.shape, [3, 16])
        XCTAssertEqual(file.info("param.bert.embeddings.word_embeddings.weight")?.dtype, "F32")
        XCTAssertEqual(file.info("param.bert.embeddings.word_embeddings.weight")?.shape, [120, 48])
        XCTAssertEqual(file.info("expect.mlm_logits")?.shape, [9, 120])
        XCTAssertNil(file.info("param.cls.predictions.decoder.weight"))
        XCTAssertNil(file.info("no.such.tensor"))

        let mask = try file.int64s("input.attention_mask")
        XCTAssertEqual(stride(from: 0, to: 48, by: 16).map { mask[$0..<$0 + 16].reduce(0, +) }, [16, 11, 7])
        let positions = try file.int64s("input.masked_positions")
        XCTAssertEqual(positions.count, 9)
        XCTAssertEqual(positions, positions.sorted())

        let gains = try file.floats("param.bert.embeddings.LayerNorm.weight")
        XCTAssertEqual(gains.count, 48)
        XCTAssertEqual(gains.reduce(0, +) / 48, 1, accuracy: 0.1)  // 1 + 0.1 N(0,1), as generated

        let config = try XCTUnwrap(file.metadata["config"])
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(config.utf8)) as? [String: Any])
        XCTAssertEqual(json["hidden_size"] as? Int, 48)
        XCTAssertEqual(json["num_attention_heads"] as? Int, 3)
        XCTAssertEqual(file.metadata["normalizers"], "mlm=masked_token_count,nsp=sequence_count")
        XCTAssertEqual(Set(file.tensorNames).count, file.tensorNames.count)
    }

    func testRewritingReferenceModelIsByteIdentical() throws {
        // transformers' save_pretrained wrote this file through the reference writer (all F32,
        // metadata {"format": "pt"}): the same tensors through SafetensorsWriter must give the same bytes.
        let original = fixture("hf-tiny/model.safetensors")
        let file = try SafetensorsFile(contentsOfFile: original)
        let arrays = try file.tensorNames.map { ($0, file.info($0)!.shape, try file.floats($0)) }
        let output = scratch.appendingPathComponent("model.safetensors").path
        try withBuffers(arrays.map(\.2)) { buffers in
            let tensors = zip(arrays, buffers).map { (name: $0.0.0, shape: $0.0.1, data: $0.1) }
            try SafetensorsWriter.write(tensors.reversed(), metadata: ["format": "pt"], to: output)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: output)), try Data(contentsOf: URL(fileURLWithPath: original)))
    }

    func testRoundTripOfEveryDtype() throws {
        let floats: [Float] = [1.5, -2.25, 0, .greatestFiniteMagnitude, -.leastNonzeroMagnitude, 3e-39]
        let doubles: [Double] = [0.1, -1e300, 7]
        let longs: [Int64] = [.min, -1, 0, 42, .max]
        let ints: [Int32] = [.min, -7, .max]
        let bytes: [UInt8] = [0, 1, 255]
        let path = scratch.appendingPathComponent("mixed.safetensors").path
        try floats.withUnsafeBytes { f in
            try doubles.withUnsafeBytes { d in
                try longs.withUnsafeBytes { l in
                    try ints.withUnsafeBytes { i in
                        try bytes.withUnsafeBytes { u in
                            try SafetensorsWriter.write([
                                .init(name: "f", dtype: .float32, shape: [2, 3], bytes: f),
                                .init(name: "d", dtype: .float64, shape: [3], bytes: d),
                                .init(name: "l", dtype: .int64, shape: [5], bytes: l),
                                .init(name: "i", dtype: .int32, shape: [3, 1], bytes: i),
                                .init(name: "u", dtype: .uint8, shape: [3], bytes: u),
                                .init(name: "empty", dtype: .float32, shape: [0, 4], bytes: UnsafeRawBufferPointer(start: nil, count: 0)),
                                .init(name: "scalar", dtype: .float32, shape: [], bytes: UnsafeRawBufferPointer(rebasing: f[0..<4])),
                            ], metadata: ["format": "pt", "note": "quote \" and\nnewline"], to: path)
                        }
                    }
                }
            }
        }
        let file = try SafetensorsFile(contentsOfFile: path)
        XCTAssertEqual(try file.floats("f"), floats)
        XCTAssertEqual(try file.floats("d"), doubles.map { Float($0) })
        XCTAssertEqual(try file.int64s("l"), longs)
        XCTAssertEqual(try file.int64s("i"), ints.map { Int64($0) })
        XCTAssertEqual(try file.int64s("u"), [0, 1, 255])
        XCTAssertEqual(try file.floats("empty"), [])
        XCTAssertEqual(file.info("empty")?.shape, [0, 4])
        XCTAssertEqual(try file.floats("scalar"), [1.5])
        XCTAssertEqual(file.info("scalar")?.shape, [])
        XCTAssertEqual(file.metadata, ["format": "pt", "note": "quote \" and\nnewline"])
        // The reference writer's layout: I64 first, then F64, F32, I32, U8; by name within a dtype.
        XCTAssertEqual(file.tensorNames, ["l", "d", "empty", "f", "scalar", "i", "u"])
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual(headerLength % 8, 0, "header padded to 8 bytes")
    }

    func testHalfPrecisionConversions() throws {
        // IEEE half: 1.0, -2.0, smallest subnormal 2^-24, largest 65504, +inf; bfloat16 1.0 and -0.5.
        let halves: [UInt16] = [0x3C00, 0xC000, 0x0001, 0x7BFF, 0x7C00]
        let brains: [UInt16] = [0x3F80, 0xBF00]
        let path = scratch.appendingPathComponent("half.safetensors").path
        try halves.withUnsafeBytes { h in
            try brains.withUnsafeBytes { b in
                try SafetensorsWriter.write([
                    .init(name: "h", dtype: .float16, shape: [5], bytes: h),
                    .init(name: "b", dtype: .bfloat16, shape: [2], bytes: b),
                ], metadata: [:], to: path)
            }
        }
        let file = try SafetensorsFile(contentsOfFile: path)
        XCTAssertEqual(try file.floats("h"), [1, -2, 0x1p-24, 65504, .infinity])
        XCTAssertEqual(try file.floats("b"), [1, -0.5])
        XCTAssertTrue(file.metadata.isEmpty)
    }

    func testCopyFloatsChecksTheDestinationSize() throws {
        let file = try SafetensorsFile(contentsOfFile: fixture("relu_eps6_h40.safetensors"))
        var small = [Float](repeating: 0, count: 3)
        XCTAssertThrowsError(try small.withUnsafeMutableBufferPointer { try file.copyFloats("param.bert.pooler.dense.bias", into: $0) }) {
            XCTAssertTrue("\($0)".contains("param.bert.pooler.dense.bias"), "\($0)")
        }
        var exact = [Float](repeating: .nan, count: 40)
        try exact.withUnsafeMutableBufferPointer { try file.copyFloats("param.bert.pooler.dense.bias", into: $0) }
        XCTAssertEqual(exact, try file.floats("param.bert.pooler.dense.bias"))
    }

    func testWriterRejectsInconsistentTensors() throws {
        let values: [Float] = [1, 2, 3]
        let path = scratch.appendingPathComponent("bad.safetensors").path
        try values.withUnsafeBufferPointer { buffer in
            XCTAssertThrowsError(try SafetensorsWriter.write([(name: "w", shape: [2, 2], data: buffer)], metadata: [:], to: path)) {
                XCTAssertTrue("\($0)".contains("'w'"), "\($0)")
            }
            XCTAssertThrowsError(try SafetensorsWriter.write(
                [(name: "w", shape: [3], data: buffer), (name: "w", shape: [3], data: buffer)], metadata: [:], to: path))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".partial"))
    }

    // MARK: - Damaged files

    func testTruncatedFileIsRejectedNamingFileAndTensor() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: fixture("relu_eps6_h40.safetensors")))
        let path = scratch.appendingPathComponent("cut.safetensors").path
        try original.prefix(original.count - 100).write(to: URL(fileURLWithPath: path))
        assertRejects(path, mentioning: [path, "truncated"])
        try original.prefix(200).write(to: URL(fileURLWithPath: path))  // cut inside the header
        assertRejects(path, mentioning: [path, "truncated"])
        try original.prefix(5).write(to: URL(fileURLWithPath: path))
        assertRejects(path, mentioning: [path, "truncated"])
        try Data().write(to: URL(fileURLWithPath: path))
        assertRejects(path, mentioning: [path])
    }

    func testAbsurdSizesAreRejected() throws {
        var huge = Data(count: 16)
        huge.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(1 << 60).littleEndian, as: UInt64.self) }
        let path = write(huge, "huge-header")
        assertRejects(path, mentioning: [path, "header length"])

        let shape = write(header: #"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#, data: 16)
        assertRejects(shape, mentioning: [shape, "'w'", "absurdly large"])
        let offsets = write(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}"#, data: 8)
        assertRejects(offsets, mentioning: [offsets, "'w'"])
        let negative = write(header: #"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: 8)
        assertRejects(negative, mentioning: [negative, "'w'"])
    }

    func testInconsistentOffsetsAreRejected() throws {
        let mismatch = write(header: #"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: 8)
        assertRejects(mismatch, mentioning: [mismatch, "'w'", "12 bytes"])
        let overlap = write(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: 12)
        assertRejects(overlap, mentioning: [overlap, "'b'", "overlap"])
        let gap = write(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: 8)
        assertRejects(gap, mentioning: [gap, "'a'", "gap"])
        let trailing = write(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: 12)
        assertRejects(trailing, mentioning: [trailing, "trailing"])
        let backwards = write(header: #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#, data: 4)
        assertRejects(backwards, mentioning: [backwards, "'a'"])
        let outside = write(header: #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: 8)
        assertRejects(outside, mentioning: [outside, "'a'", "truncated"])
    }

    func testMalformedHeadersAreRejected() throws {
        let notJSON = write(header: "this is not json at all!", data: 0)
        assertRejects(notJSON, mentioning: [notJSON, "invalid header"])
        let array = write(header: "[1, 2, 3]", data: 0)
        assertRejects(array, mentioning: [array, "invalid header"])
        let dtype = write(header: #"{"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}"#, data: 1)
        assertRejects(dtype, mentioning: [dtype, "'w'", "Q7"])
        let missingKey = write(header: #"{"w":{"dtype":"F32","shape":[1]}}"#, data: 4)
        assertRejects(missingKey, mentioning: [missingKey, "'w'"])
        let metadata = write(header: #"{"__metadata__":{"format":7}}"#, data: 0)
        assertRejects(metadata, mentioning: [metadata, "__metadata__"])
        let empty = write(header: "{}", data: 0)
        XCTAssertEqual(try SafetensorsFile(contentsOfFile: empty).tensorNames, [])
    }

    func testReadingWithTheWrongTypeNamesTheTensor() throws {
        let path = fixture("relu_eps6_h40.safetensors")
        let file = try SafetensorsFile(contentsOfFile: path)
        XCTAssertThrowsError(try file.int64s("expect.loss")) { XCTAssertTrue("\($0)".contains("expect.loss") && "\($0)".contains("F32"), "\($0)") }
        XCTAssertThrowsError(try file.floats("input.input_ids")) { XCTAssertTrue("\($0)".contains("input.input_ids"), "\($0)") }
        XCTAssertThrowsError(try file.floats("missing.tensor")) { XCTAssertTrue("\($0)".contains("missing.tensor") && "\($0)".contains(path), "\($0)") }
        XCTAssertThrowsError(try SafetensorsFile(contentsOfFile: scratch.appendingPathComponent("absent").path)) {
            XCTAssertTrue("\($0)".contains("absent"), "\($0)")
        }
    }

    // MARK: - Helpers

    private func assertRejects(_ path: String, mentioning parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafetensorsFile(contentsOfFile: path), file: file, line: line) { error in
            let message = (error as? LocalizedError)?.errorDescription ?? "\(error)"
            for part in parts {
                XCTAssertTrue(message.contains(part), "'\(message)' should mention '\(part)'", file: file, line: line)
            }
        }
    }

    private func write(_ data: Data, _ name: String) -> String {
        let path = scratch.appendingPathComponent(name + ".safetensors").path
        FileManager.default.createFile(atPath: path, contents: data)
        return path
    }

    private var counter = 0

    /// A file with a hand-written header and `data` zero bytes after it.
    private func write(header: String, data: Int) -> String {
        counter += 1
        var bytes = Data(count: 8)
        let headerBytes = Data(header.utf8)
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(headerBytes.count).littleEndian, as: UInt64.self) }
        bytes.append(headerBytes)
        bytes.append(Data(count: data))
        return write(bytes, "handmade-\(counter)")
    }

    private func withBuffers(_ arrays: [[Float]], _ body: ([UnsafeBufferPointer<Float>]) throws -> Void) throws {
        let storage = arrays.map { array -> UnsafeMutableBufferPointer<Float> in
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: array.count)
            _ = buffer.initialize(from: array)
            return buffer
        }
        defer { storage.forEach { $0.deallocate() } }
        try body(storage.map { UnsafeBufferPointer($0) })
    }
}
