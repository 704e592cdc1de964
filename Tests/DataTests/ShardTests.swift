import Data
import Foundation
import XCTest

final class ShardTests: XCTestCase {
    let fingerprint = String(repeating: "ab", count: 32)

    func makeInstances(count: Int, seed: UInt64) -> [TrainingInstance] {
        var rng = TestRandom(seed: seed)
        return (0..<count).map { _ in
            let a = Int.random(in: 1...20, using: &rng), b = Int.random(in: 1...20, using: &rng)
            let body = (0..<(a + b)).map { _ in UInt32.random(in: 5..<30_000, using: &rng) | (Bool.random(using: &rng) ? ShardFormat.continuationBit : 0) }
            return TrainingInstance(tokens: [2] + body[..<a] + [3] + body[a...] + [3], segmentALength: a, nspLabel: Int.random(in: 0...1, using: &rng))
        }
    }

    func writeShard(_ instances: [TrainingInstance], to path: String) throws -> ShardHeader {
        let writer = try ShardWriter(path: path, sequenceLength: 48, vocabularyFingerprint: fingerprint)
        for instance in instances { try writer.append(instance) }
        return try writer.finish()
    }

    func testRoundTrip() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let path = directory.appendingPathComponent("train-00000.shard").path
        let instances = makeInstances(count: 3000, seed: 1)
        let header = try writeShard(instances, to: path)
        let shard = try Shard(path: path, expectedVocabularyFingerprint: fingerprint)
        XCTAssertEqual(shard.header, header)
        XCTAssertEqual(shard.instanceCount, 3000)
        XCTAssertEqual(shard.header.tokenCount, instances.map(\.tokens.count).reduce(0, +))
        XCTAssertEqual(shard.header.sequenceLength, 48)
        for (i, instance) in instances.enumerated() {
            XCTAssertEqual(Array(shard.tokens(of: i)), instance.tokens)
            XCTAssertEqual(Int(shard.segmentALengths[i]), instance.segmentALength)
            XCTAssertEqual(Int(shard.nspLabels[i]), instance.nspLabel)
        }
        XCTAssertNoThrow(try shard.verifyChecksum())
        // Little-endian on disk: the magic, then version 1.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(Array(bytes[0..<12]), Array("SBRTSHRD".utf8) + [1, 0, 0, 0])
    }

    func testTruncatedShardIsRejectedNamingTheFile() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let path = directory.appendingPathComponent("train-00000.shard").path
        _ = try writeShard(makeInstances(count: 100, seed: 2), to: path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        for length in [bytes.count - 1, bytes.count / 2, 100, 0] {
            try bytes.prefix(length).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try Shard(path: path)) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains(path), message)
                XCTAssertTrue(message.contains("truncated"), message)
            }
        }
    }

    func testForeignFileIsRejectedNamingTheFile() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let path = directory.appendingPathComponent("notes.shard").path
        try Data(String(repeating: "In the beginning God created the heaven and the earth.\n", count: 20).utf8)
            .write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Shard(path: path)) { error in
            XCTAssertTrue("\(error)".contains(path))
            XCTAssertTrue("\(error)".contains("not a shard"), "\(error)")
        }
    }

    func testCorruptPayloadFailsChecksumAndCorruptHeaderFailsOpen() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let path = directory.appendingPathComponent("train-00000.shard").path
        _ = try writeShard(makeInstances(count: 100, seed: 3), to: path)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[200] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        let shard = try Shard(path: path)
        XCTAssertThrowsError(try shard.verifyChecksum()) { XCTAssertEqual($0 as? DataError, .checksumMismatch(path: path)) }

        bytes[200] ^= 0x40
        bytes[20] ^= 0x01  // instance count
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Shard(path: path)) { XCTAssertTrue("\($0)".contains("header checksum"), "\($0)") }
    }

    func testRecordOutsideTheVocabularyOrLabelsIsAnErrorNamingShardAndRecord() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let path = directory.appendingPathComponent("train-00000.shard").path
        var instances = makeInstances(count: 20, seed: 5)
        instances[7].tokens[2] = 30_000 | ShardFormat.continuationBit
        instances[11].nspLabel = 2
        _ = try writeShard(instances, to: path)
        let shard = try Shard(path: path, expectedVocabularyFingerprint: fingerprint)
        // The checksum cannot catch a bad value its writer put there.
        XCTAssertNoThrow(try shard.verifyChecksum())
        for i in 0..<20 where i != 7 && i != 11 {
            XCTAssertNoThrow(try shard.checkRecord(i, vocabularySize: 30_000, nspLabelCount: 2), "record \(i)")
        }
        XCTAssertThrowsError(try shard.checkRecord(7, vocabularySize: 30_000, nspLabelCount: 2)) { error in
            XCTAssertEqual(error as? DataError, .invalidRecord(
                path: path, record: 7, reason: "token id 30000 at position 2 is outside the vocabulary of 30000 tokens"))
            XCTAssertTrue("\(error)".contains("prepare"), "\(error)")
        }
        XCTAssertNoThrow(try shard.checkRecord(7, vocabularySize: 30_001, nspLabelCount: 2))
        XCTAssertThrowsError(try shard.checkRecord(11, vocabularySize: 30_000, nspLabelCount: 2)) { error in
            XCTAssertEqual(error as? DataError, .invalidRecord(
                path: path, record: 11, reason: "NSP label 2, the data has 2 labels"))
        }
        XCTAssertNoThrow(try shard.checkRecord(11, vocabularySize: 30_000, nspLabelCount: 3))
    }

    func testRecordWhoseLengthsDoNotFitIsRejectedAtOpenNamingTheRecord() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let path = directory.appendingPathComponent("train-00000.shard").path
        let instances = makeInstances(count: 10, seed: 6)
        let header = try writeShard(instances, to: path)
        let pristine = try Data(contentsOf: URL(fileURLWithPath: path))
        let offsetsStart = ShardFormat.headerSize + (4 * header.tokenCount + 7) / 8 * 8
        let segmentAStart = offsetsStart + 8 * (instances.count + 1)

        var bytes = pristine
        bytes[segmentAStart + 2 * 3] = UInt8(instances[3].tokens.count - 1)
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Shard(path: path)) { error in
            guard case .invalidRecord(path, 3, let reason)? = error as? DataError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("segment A of \(instances[3].tokens.count - 1) tokens"), reason)
        }

        bytes = pristine
        bytes.replaceSubrange((offsetsStart + 8 * 5)..<(offsetsStart + 8 * 6), with: [UInt8](repeating: 0, count: 8))
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Shard(path: path)) { error in
            guard case .invalidRecord(path, 4, let reason)? = error as? DataError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("before it starts"), reason)
        }
    }

    func testVocabularyMismatchIsRejected() throws {
        let directory = try TestPaths.temporaryDirectory(self)
        let path = directory.appendingPathComponent("train-00000.shard").path
        _ = try writeShard(makeInstances(count: 10, seed: 4), to: path)
        let other = String(repeating: "cd", count: 32)
        XCTAssertThrowsError(try Shard(path: path, expectedVocabularyFingerprint: other)) { error in
            XCTAssertEqual(error as? DataError, .vocabularyMismatch(path: path, expected: other, found: fingerprint))
            XCTAssertTrue("\(error)".contains(path))
        }
    }
}
