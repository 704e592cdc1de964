import Data
import Foundation
import XCTest

/// Damaged training data and errors of one rank, under real mpirun and in the debug mode: the run
/// stops at once with an error naming the file (and rank), never trains on data that does not
/// verify, and never waits for the watchdog.
final class DataIntegrityTests: XCTestCase {
    /// Much longer than the bounds below, so that a job ended by its watchdog fails the tests.
    let watchdog = ["--set", "watchdog_seconds=600"]

    /// A copy of the prepared test data this test may damage.
    func dataCopy() throws -> String {
        let copy = TrainingFixture.runDirectory("data")
        try FileManager.default.copyItem(atPath: try TrainingFixture.data(), toPath: copy)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: copy) }
        return copy
    }

    func train(_ data: String, _ out: String, _ extra: [String] = []) throws -> [String] {
        ["train", "--config", TrainingFixture.debugConfig, "--data", data, "--out", out, "--steps", "3"] + watchdog + extra
    }

    func shardPath(_ data: String, _ split: DataSplit, _ index: Int = 0) throws -> String {
        let manifest = try DatasetManifest.load(directory: data)
        return data + "/" + manifest.split(split).shards[index].file
    }

    /// No checkpoint and no metrics: nothing was trained.
    func assertNothingTrained(_ out: String, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let checkpoints = (try? FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints")) ?? []
        XCTAssertEqual(checkpoints, [], "\(label): checkpoints written", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/metrics.jsonl"), "\(label): metrics written",
                       file: file, line: line)
    }

    func testFlippedByteInATrainingShardStopsEveryRankNamingTheShard() throws {
        let data = try dataCopy()
        let shard = try shardPath(data, .train)
        var bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: shard))
        bytes[bytes.count / 2] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: shard))
        XCTAssertNotEqual(try Tool.swiftbert(["inspect", data]).status, 0, "inspect accepts the damaged shard")

        for ranks in [1, 2] {
            let out = TrainingFixture.runDirectory("flipped")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let result = try Tool.mpirun(ranks: ranks, try train(data, out), timeout: 120)
            let label = "\(ranks) rank(s)"
            XCTAssertFalse(result.timedOut, label)
            XCTAssertNotEqual(result.status, 0, "\(label): \(result.stdout)")
            XCTAssertLessThan(result.seconds, 60, label)
            XCTAssertTrue(result.stderr.contains("'\(shard)': checksum mismatch"), "\(label): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("swiftbert prepare"), "\(label): \(result.stderr)")
            // Reported once, by rank 0, for the whole job.
            XCTAssertEqual(result.stderr.components(separatedBy: "checksum mismatch").count, 2, "\(label): \(result.stderr)")
            assertNothingTrained(out, label)
        }

        // A restart cannot repair the data: autoresume stops after the first attempt.
        let out = TrainingFixture.runDirectory("flipped-autoresume")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let wrapped = try Tool.run(
            LaunchScriptTests.script("autoresume.sh"), ["--backoff", "0", "--", try Tool.binary] + (try train(data, out)),
            timeout: 120)
        XCTAssertNotEqual(wrapped.status, 0)
        XCTAssertEqual(MultiHostTests.attemptEnds(wrapped.stderr).count, 1, wrapped.stderr)
        XCTAssertTrue(wrapped.stderr.contains("not restarting: a restart cannot fix this error"), wrapped.stderr)
    }

    func testTokenIDOutsideTheVocabularyInAVerifiedShardIsAnErrorNamingShardAndRecord() throws {
        let data = try dataCopy()
        let path = try shardPath(data, .train)
        // Rewrite the shard with an id past the vocabulary in every record, and record its new checksum
        // in the manifest: a shard that verifies, with values no reader may use.
        var manifest = try DatasetManifest.load(directory: data)
        let original = try Shard(path: path)
        let rewritten = path + ".new"
        let writer = try ShardWriter(
            path: rewritten, sequenceLength: original.header.sequenceLength,
            vocabularyFingerprint: original.header.vocabularyFingerprint)
        for i in 0..<original.instanceCount {
            var tokens = Array(original.tokens(of: i))
            tokens[1] = UInt32(manifest.vocabulary.size + 7)
            try tokens.withUnsafeBufferPointer {
                try writer.append(tokens: $0, segmentALength: Int(original.segmentALengths[i]),
                                  nspLabel: Int(original.nspLabels[i]))
            }
        }
        let header = try writer.finish()
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.moveItem(atPath: rewritten, toPath: path)
        manifest.train.shards[0].sha256 = header.payloadSHA256.map { String(format: "%02x", $0) }.joined()
        try manifest.write(directory: data)
        XCTAssertNoThrow(try Shard(path: path).verifyChecksum())

        for ranks in [1, 2] {
            let out = TrainingFixture.runDirectory("bad-id")
            defer { try? FileManager.default.removeItem(atPath: out) }
            let result = try Tool.mpirun(ranks: ranks, try train(data, out), timeout: 120)
            let label = "\(ranks) rank(s)"
            XCTAssertFalse(result.timedOut, label)
            XCTAssertNotEqual(result.status, 0, "\(label): \(result.stdout)")
            XCTAssertLessThan(result.seconds, 60, label)
            XCTAssertTrue(result.stderr.contains("'\(path)': record "), "\(label): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains(
                "token id \(manifest.vocabulary.size + 7) at position 1 is outside the vocabulary of "
                    + "\(manifest.vocabulary.size) tokens"), "\(label): \(result.stderr)")
            XCTAssertFalse(result.stderr.contains("Fatal error"), "\(label): \(result.stderr)")
            XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints")) ?? [], [], label)
        }
        let inspected = try Tool.swiftbert(["inspect", data])
        XCTAssertNotEqual(inspected.status, 0)
        XCTAssertTrue(inspected.stderr.contains("'\(path)': record "), inspected.stderr)
    }

    func testManifestIDOutsideTheVocabularyIsAnErrorNamingTheKey() throws {
        let data = try dataCopy()
        var manifest = try DatasetManifest.load(directory: data)
        manifest.vocabulary.maskID = Int32(manifest.vocabulary.size)
        try manifest.write(directory: data)
        let out = TrainingFixture.runDirectory("bad-manifest")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = try Tool.swiftbert(try train(data, out), timeout: 120)
        XCTAssertNotEqual(result.status, 0, result.stdout)
        XCTAssertTrue(result.stderr.contains("\(data)/manifest.json"), result.stderr)
        XCTAssertTrue(result.stderr.contains("vocabulary.mask_id is \(manifest.vocabulary.size), outside the vocabulary"),
                      result.stderr)
        assertNothingTrained(out, "mask id outside the vocabulary")
    }

    func testTruncatedValidationShardIsAnErrorNamingTheFile() throws {
        let data = try dataCopy()
        let shard = try shardPath(data, .validation)
        let bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: shard))
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: shard))
        let out = TrainingFixture.runDirectory("truncated-validation")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = try Tool.mpirun(ranks: 2, try train(data, out), timeout: 120)
        XCTAssertNotEqual(result.status, 0, result.stdout)
        XCTAssertLessThan(result.seconds, 60)
        XCTAssertTrue(result.stderr.contains("'\(shard)' is not a valid SwiftBERT shard"), result.stderr)
        XCTAssertTrue(result.stderr.contains("truncated"), result.stderr)
        assertNothingTrained(out, "truncated validation shard")
    }

    func testAbsentValidationSplitIsANoticeAndTrainingProceeds() throws {
        let data = TrainingFixture.runDirectory("no-validation")
        defer { try? FileManager.default.removeItem(atPath: data) }
        let prepared = try Tool.swiftbert(
            ["prepare", "--input", Tool.root.appendingPathComponent("corpus/kjv.txt").path,
             "--vocab", Tool.root.appendingPathComponent("corpus/vocab.txt").path,
             "--out", data, "--dupe-factor", "1", "--validation-fraction", "0"], timeout: 600)
        XCTAssertEqual(prepared.status, 0, prepared.stderr)
        XCTAssertEqual(try DatasetManifest.load(directory: data).validation.shards, [])
        let out = TrainingFixture.runDirectory("no-validation-run")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = try Tool.mpirun(ranks: 2, try train(data, out, ["--set", "logging.eval_every_steps=1"]), timeout: 300)
        XCTAssertEqual(result.status, 0, result.stderr)
        let notices = result.stdout.split(separator: "\n").filter { $0.hasPrefix("notice: ") }
        XCTAssertEqual(notices, ["notice: \(data) has no validation split (prepared with --validation-fraction 0, or too "
                                 + "few documents); evaluation is off"], result.stdout)
        let records = try TrainingFixture.records(out)
        XCTAssertEqual(records.filter { $0["split"] as? String == "validation" }.count, 0)
        XCTAssertEqual(records.filter { ($0["split"] as? String ?? "train") == "train" }.count, 3)
    }

    func testErrorOnOneRankIsPrintedWithItsRankAndEndsTheJobAtOnce() throws {
        let data = try TrainingFixture.data()
        let injected = "step 2: failure injected on rank 1 (--inject-error)"
        let out = TrainingFixture.runDirectory("rank-error")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let mpi = try Tool.mpirun(ranks: 2, try train(data, out, ["--inject-error", "1:2"]), timeout: 300)
        XCTAssertFalse(mpi.timedOut)
        XCTAssertNotEqual(mpi.status, 0, mpi.stdout)
        XCTAssertLessThan(mpi.seconds, 60, "the job waited instead of aborting")
        XCTAssertTrue(mpi.stderr.contains("rank 1: error: \(injected)"), mpi.stderr)

        let debugOut = TrainingFixture.runDirectory("rank-error-debug")
        defer { try? FileManager.default.removeItem(atPath: debugOut) }
        let debug = try Tool.swiftbert(try train(data, debugOut, ["--debug", "--ranks", "2", "--inject-error", "1:2"]), timeout: 300)
        XCTAssertFalse(debug.timedOut)
        XCTAssertNotEqual(debug.status, 0, debug.stdout)
        XCTAssertLessThan(debug.seconds, 60, "the debug job waited instead of ending")
        XCTAssertTrue(debug.stderr.contains("rank 1: error: \(injected)"), debug.stderr)
    }
}
