import Foundation
import Transformer
import XCTest

/// Reading `pytorch_model.bin` as torch.save writes it (fixtures from scripts/make_pytorch_fixtures.py):
/// the same tensors as the safetensors twin, a whole model the same as its safetensors directory, and
/// clear refusals.
final class PyTorchCheckpointTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/pytorch").path

    func testEveryDTypeAndAnOffsetViewReadAsTheSafetensorsTwin() throws {
        let checkpoint = try SafetensorsFile(pyTorchCheckpoint: Self.fixtures + "/dtypes.bin")
        let reference = try SafetensorsFile(contentsOfFile: Self.fixtures + "/dtypes.safetensors")
        XCTAssertEqual(Set(checkpoint.tensorNames), Set(reference.tensorNames))
        XCTAssertEqual(Set(checkpoint.tensorNames), ["float32", "float16", "bfloat16", "int64", "big", "row_one"])
        for name in reference.tensorNames {
            let got = try XCTUnwrap(checkpoint.info(name), name), want = try XCTUnwrap(reference.info(name), name)
            XCTAssertEqual(got.dtype, want.dtype, name)
            XCTAssertEqual(got.shape, want.shape, name)
            let gotBytes = try checkpoint.withRawBytes(name) { Array($0) }
            let wantBytes = try reference.withRawBytes(name) { Array($0) }
            XCTAssertEqual(gotBytes, wantBytes, name)
        }
        XCTAssertEqual(try checkpoint.floats("row_one"), Array(try checkpoint.floats("big")[4..<8]))
        XCTAssertEqual(try checkpoint.int64s("int64"), [0, -1, 1 << 40, -(1 << 40)])
    }

    func testModelDirectoryWithPyTorchWeightsLoadsAsItsSafetensorsTwin() throws {
        let heads = (Self.fixtures as NSString).deletingLastPathComponent + "/heads/hf-seqcls"
        let (fromPickle, report) = try BertModel.load(directory: Self.fixtures + "/hf-seqcls-bin", maxSequenceCount: 1, sequenceLength: 8)
        let (fromSafetensors, _) = try BertModel.load(directory: heads, maxSequenceCount: 1, sequenceLength: 8)
        XCTAssertTrue(fromPickle is BertForSequenceClassification)
        XCTAssertEqual(report.initializedTensors, [])
        XCTAssertEqual(Array(fromPickle.parameters), Array(fromSafetensors.parameters))
    }

    func testNonContiguousTensorIsRefusedByName() {
        XCTAssertThrowsError(try SafetensorsFile(pyTorchCheckpoint: Self.fixtures + "/noncontiguous.bin")) { error in
            XCTAssertTrue("\(error)".contains("'transposed' is not contiguous"), "\(error)")
        }
    }

    /// Every byte of the file flipped in turn, and every length it can be cut to: each variant either
    /// reads (a flipped data byte) or is refused with an error, never a crash.
    func testEveryCorruptionIsReadOrRefusedWithoutCrashing() throws {
        let whole = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/dtypes.bin")))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pytorch-fuzz-\(UUID().uuidString).bin").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var read = 0, refused = 0
        func attempt(_ bytes: [UInt8]) throws {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let file = try SafetensorsFile(pyTorchCheckpoint: path)
                for name in file.tensorNames { _ = try file.withRawBytes(name) { $0.reduce(0) { $0 &+ Int($1) } } }
                read += 1
            } catch is PyTorchCheckpointError {
                refused += 1
            }
        }
        for index in whole.indices {
            var flipped = whole
            flipped[index] ^= 0xFF
            try attempt(flipped)
        }
        for length in 0..<whole.count { try attempt(Array(whole.prefix(length))) }
        XCTAssertEqual(read + refused, 2 * whole.count)
        XCTAssertGreaterThan(refused, whole.count, "every truncation must be refused")
        XCTAssertGreaterThan(read, 0, "flipped storage bytes still read")
    }

    func testTruncatedOrForeignFilesAreRefusedNamingTheFile() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("pytorch-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let whole = try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/dtypes.bin"))
        let cases: [(name: String, bytes: Data, expected: String)] = [
            ("truncated.bin", whole.prefix(whole.count / 2), "not a zip archive"),
            ("text.bin", Data("not a checkpoint".utf8), "not a zip archive"),
        ]
        for (name, bytes, expected) in cases {
            let path = scratch.appendingPathComponent(name).path
            try bytes.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try SafetensorsFile(pyTorchCheckpoint: path), name) { error in
                XCTAssertTrue("\(error)".contains(path) && "\(error)".contains(expected), "\(name): \(error)")
            }
        }
    }
}
