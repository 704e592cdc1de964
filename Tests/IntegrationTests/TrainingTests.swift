import Foundation
import XCTest

/// `swiftbert train` as a user runs it: standalone, under mpirun with several ranks, in the debug
/// mode, with its files read back independently.
final class TrainingTests: XCTestCase {
    let steps = ["--set", "schedule.total_steps=20", "--set", "checkpoint.every_steps=20"]

    func train(ranks: Int, debugRanks: Int? = nil, _ extra: [String] = [], out: String) throws -> Tool.Result {
        let arguments = ["train", "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(),
                         "--out", out] + extra
        if let debugRanks {
            return try Tool.swiftbert(arguments + ["--debug", "--ranks", "\(debugRanks)"], timeout: 600)
        }
        return ranks == 1 ? try Tool.swiftbert(arguments, timeout: 600) : try Tool.mpirun(ranks: ranks, arguments, timeout: 600)
    }

    func testLossAndParametersDoNotDependOnTheNumberOfRanks() throws {
        let single = TrainingFixture.runDirectory("ranks1")
        let reference = try train(ranks: 1, steps, out: single)
        XCTAssertEqual(reference.status, 0, reference.stderr)
        XCTAssertEqual(try TrainingFixture.losses(single).keys.sorted(), Array(1...20))

        for (label, ranks, debugRanks) in [("mpirun 2", 2, nil), ("mpirun 4", 4, nil), ("in-process 2", 1, 2 as Int?)] {
            let out = TrainingFixture.runDirectory("ranks-\(ranks)-\(debugRanks ?? 0)")
            let result = try train(ranks: ranks, debugRanks: debugRanks, steps, out: out)
            XCTAssertEqual(result.status, 0, "\(label): \(result.stderr)")
            try TrainingFixture.assertSameRun(out, as: single, steps: Array(1...20), label)
        }
    }

    func testMetricsAndTensorBoardFilesReadBack() throws {
        let out = TrainingFixture.runDirectory("metrics")
        let result = try train(ranks: 2, ["--set", "schedule.total_steps=10"], out: out)
        XCTAssertEqual(result.status, 0, result.stderr)
        let records = try TrainingFixture.records(out)
        let trainRecords = records.filter { $0["split"] as? String == "train" }
        XCTAssertEqual(trainRecords.count, 10)
        for key in ["step", "loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy", "lr", "grad_norm",
                    "tokens_per_second", "time_compute", "time_comm_wait", "time_data_wait"] {
            XCTAssertNotNil(trainRecords.last?[key], "metrics record lacks \(key)")
        }
        let validation = records.filter { $0["split"] as? String == "validation" }
        XCTAssertEqual(validation.compactMap { $0["step"] as? Int }, [10])
        XCTAssertNotNil(validation.first?["perplexity"])

        let events = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasPrefix("events.out.tfevents.") }
        XCTAssertEqual(events.count, 1)
        let scalars = try TensorBoardReader.scalars(path: out + "/" + events[0])
        let lossSteps = scalars.filter { $0.tag.hasSuffix("loss") && !$0.tag.contains("mlm") && !$0.tag.contains("nsp") }
        XCTAssertGreaterThanOrEqual(lossSteps.count, 10, "\(Set(scalars.map(\.tag)))")
        let resolved = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as? [String: Any]
        XCTAssertNotNil(resolved?["model"])
    }

    func testNonFiniteGradientsOnOneRankSkipTheStepEverywhere() throws {
        let out = TrainingFixture.runDirectory("nan-skip")
        let result = try train(ranks: 2, ["--set", "schedule.total_steps=8", "--inject-nan", "1:5"], out: out)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("step 5: non-finite loss or gradients (from rank 1); step skipped"), result.stdout)
        let losses = try TrainingFixture.losses(out)
        XCTAssertTrue(losses.values.allSatisfy(\.isFinite))
    }

    func testConsecutiveNonFiniteStepsStopTheJobNamingStepAndRank() throws {
        let out = TrainingFixture.runDirectory("nan-stop")
        let result = try train(
            ranks: 2, ["--set", "schedule.total_steps=20", "--set", "max_consecutive_nonfinite_steps=3",
                       "--inject-nan", "1:4,5,6"], out: out)
        XCTAssertFalse(result.timedOut)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("stopping at step 6: 3 steps in a row had non-finite loss or gradients, last from rank 1"),
                      result.stderr)
    }

    func testBadConfigurationsFailBeforeTrainingWithOneMessage() throws {
        let data = try TrainingFixture.data()
        let cases: [(overrides: [String], ranks: Int, expected: String)] = [
            (["--set", "optimizer.learning_rte=1e-3"], 1, "optimizer.learning_rte"),
            (["--set", "batch.global_batch_size=abc"], 1, "batch.global_batch_size"),
            (["--set", "model.num_attention_heads=3"], 1, "num_attention_heads"),
            (["--set", "batch.global_batch_size=10"], 3, "cannot be split evenly over 3 ranks"),
        ]
        for (overrides, ranks, expected) in cases {
            let out = TrainingFixture.runDirectory("bad-config")
            let arguments = ["train", "--config", TrainingFixture.debugConfig, "--data", data, "--out", out] + overrides
            let result = ranks == 1 ? try Tool.swiftbert(arguments) : try Tool.mpirun(ranks: ranks, arguments)
            XCTAssertNotEqual(result.status, 0, "\(overrides)")
            XCTAssertTrue(result.stderr.contains(expected), "\(overrides): \(result.stderr)")
            let errorLines = result.stderr.split(separator: "\n").filter { $0.contains("error") }
            XCTAssertEqual(errorLines.count, 1, "\(overrides): one message expected, got: \(result.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/checkpoints/latest"), "\(overrides)")
        }
    }

    func testResumeContinuesLossCurveExactly() throws {
        let straight = TrainingFixture.runDirectory("straight")
        let full = try train(ranks: 1, ["--set", "schedule.total_steps=30"], out: straight)
        XCTAssertEqual(full.status, 0, full.stderr)

        let interrupted = TrainingFixture.runDirectory("interrupted")
        let first = try train(ranks: 1, ["--set", "schedule.total_steps=30", "--steps", "15"], out: interrupted)
        XCTAssertEqual(first.status, 0, first.stderr)
        let second = try train(ranks: 1, ["--set", "schedule.total_steps=30", "--resume", "auto"], out: interrupted)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("resumed from"), second.stdout)

        XCTAssertEqual(try TrainingFixture.losses(interrupted), try TrainingFixture.losses(straight))
        let a = try Data(contentsOf: URL(fileURLWithPath: try TrainingFixture.latestCheckpoint(straight) + "/model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: try TrainingFixture.latestCheckpoint(interrupted) + "/model.safetensors"))
        XCTAssertEqual(a, b, "final weights differ after resume")
    }

    func testSIGTERMCheckpointsExitsZeroAndResumesExactly() throws {
        let straight = TrainingFixture.runDirectory("sigterm-straight")
        XCTAssertEqual(try train(ranks: 1, ["--set", "schedule.total_steps=40"], out: straight).status, 0)

        let out = TrainingFixture.runDirectory("sigterm")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Tool.binary)
        process.arguments = ["train", "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(),
                             "--out", out, "--set", "schedule.total_steps=40", "--set", "checkpoint.every_steps=1000"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(300)
        while process.isRunning && Date() < deadline
            && ((try? TrainingFixture.records(out).count) ?? 0) < 5 {
            Thread.sleep(forTimeInterval: 0.05)
        }
        kill(process.processIdentifier, SIGTERM)
        let signalled = Date()
        process.waitUntilExit()
        XCTAssertLessThan(Date().timeIntervalSince(signalled), 60, "exit after SIGTERM took too long")
        XCTAssertEqual(process.terminationReason, .exit)
        XCTAssertEqual(process.terminationStatus, 0)
        let checkpoint = try TrainingFixture.latestCheckpoint(out)
        XCTAssertFalse(checkpoint.hasSuffix("step-00000040"), "the run should have been interrupted: \(checkpoint)")

        let resumed = try train(ranks: 1, ["--set", "schedule.total_steps=40", "--set", "checkpoint.every_steps=1000"], out: out)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try TrainingFixture.losses(out), try TrainingFixture.losses(straight))
    }

    func testDebugModeNamesTheFirstOpWithNonFiniteOutputAndTimesOps() throws {
        let healthy = try train(ranks: 1, debugRanks: 2, ["--set", "schedule.total_steps=3", "--set", "schedule.warmup_steps=1"], out: TrainingFixture.runDirectory("debug-ok"))
        XCTAssertEqual(healthy.status, 0, healthy.stderr)
        XCTAssertTrue(healthy.stdout.contains("per-op time (debug mode, 3 steps):"), healthy.stdout)
        XCTAssertTrue(healthy.stdout.contains("forward: attention (scores, masked softmax, context)"), healthy.stdout)

        // A learning rate of 1e30 makes the weights overflow after the first update.
        let broken = try train(
            ranks: 1, debugRanks: 2,
            ["--set", "schedule.total_steps=5", "--set", "optimizer.learning_rate=1e30", "--set", "optimizer.max_grad_norm=0"],
            out: TrainingFixture.runDirectory("debug-nan"))
        XCTAssertNotEqual(broken.status, 0)
        XCTAssertTrue(broken.stderr.contains("non-finite value"), broken.stderr)
        XCTAssertTrue(broken.stderr.contains("in encoder layer 0") || broken.stderr.contains("embeddings"), broken.stderr)
    }

    func testResumeOnOtherRankCountsContinuesWithinTolerance() throws {
        let straight = TrainingFixture.runDirectory("straight2")
        XCTAssertEqual(try train(ranks: 2, ["--set", "schedule.total_steps=20"], out: straight).status, 0)
        let reference = try TrainingFixture.losses(straight)
        for ranks in [1, 4] {
            let out = TrainingFixture.runDirectory("resume-\(ranks)")
            let first = try train(ranks: 2, ["--set", "schedule.total_steps=20", "--steps", "10"], out: out)
            XCTAssertEqual(first.status, 0, first.stderr)
            let second = try train(ranks: ranks, ["--set", "schedule.total_steps=20"], out: out)
            XCTAssertEqual(second.status, 0, second.stderr)
            let losses = try TrainingFixture.losses(out)
            XCTAssertEqual(losses.keys.sorted(), Array(1...20))
            for (step, loss) in reference {
                XCTAssertLessThanOrEqual(abs((losses[step] ?? .nan) - loss) / loss, 1e-5, "resume on \(ranks), step \(step)")
            }
        }
    }
}

/// Reads scalar summaries from a TensorBoard event file, checking both CRCs of every record.
enum TensorBoardReader {
    struct Scalar { let step: Int; let tag: String; let value: Float }

    static func scalars(path: String) throws -> [Scalar] {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var offset = 0, scalars: [Scalar] = []
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(data[at + $1]) << (8 * $1) } }
        while offset < data.count {
            guard offset + 12 <= data.count else { throw TrainingFailure("truncated record header at \(offset)") }
            let length = Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(data[offset + $1]) << (8 * $1) })
            guard masked(crc32c(data[offset..<(offset + 8)])) == u32(offset + 8) else { throw TrainingFailure("length CRC at \(offset)") }
            let body = data[(offset + 12)..<(offset + 12 + length)]
            guard masked(crc32c(body)) == u32(offset + 12 + length) else { throw TrainingFailure("data CRC at \(offset)") }
            scalars += try parseEvent(Array(body))
            offset += 12 + length + 4
        }
        return scalars
    }

    static func crc32c<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    static func masked(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8 }

    /// Event { int64 step = 2; Summary summary = 5 { Value value = 1 { string tag = 1; float simple_value = 2 } } }
    static func parseEvent(_ bytes: [UInt8]) throws -> [Scalar] {
        var step = 0
        var values: [(String, Float)] = []
        try fields(bytes) { field, wire, payload, varint in
            if field == 2 && wire == 0 { step = Int(varint) }
            if field == 5 && wire == 2 {
                try fields(payload) { f, w, value, _ in
                    guard f == 1 && w == 2 else { return }
                    var tag = "", number: Float?
                    try fields(value) { vf, vw, vp, _ in
                        if vf == 1 && vw == 2 { tag = String(decoding: vp, as: UTF8.self) }
                        if vf == 2 && vw == 5 { number = vp.withUnsafeBytes { $0.loadUnaligned(as: Float.self) } }
                    }
                    if let number { values.append((tag, number)) }
                }
            }
        }
        return values.map { Scalar(step: step, tag: $0.0, value: $0.1) }
    }

    static func fields(_ bytes: [UInt8], _ visit: (Int, Int, [UInt8], UInt64) throws -> Void) throws {
        var i = 0
        func varint() throws -> UInt64 {
            var value: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard i < bytes.count else { throw TrainingFailure("truncated varint") }
                let byte = bytes[i]; i += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
        }
        while i < bytes.count {
            let key = try varint()
            let field = Int(key >> 3), wire = Int(key & 7)
            switch wire {
            case 0: try visit(field, wire, [], try varint())
            case 1: try visit(field, wire, Array(bytes[i..<(i + 8)]), 0); i += 8
            case 2:
                let length = Int(try varint())
                try visit(field, wire, Array(bytes[i..<(i + length)]), 0); i += length
            case 5: try visit(field, wire, Array(bytes[i..<(i + 4)]), 0); i += 4
            default: throw TrainingFailure("unknown wire type \(wire)")
            }
        }
    }
}

/// Every sample of an epoch is trained on exactly once across ranks, as recorded by the ranks.
final class SampleCoverageTests: XCTestCase {
    func testEverySampleSeenExactlyOncePerEpochAcrossRanks() throws {
        // A small corpus: one epoch is a handful of steps.
        let text = try String(contentsOfFile: Tool.root.appendingPathComponent("corpus/kjv.txt").path, encoding: .utf8)
        let excerpt = text.components(separatedBy: "\n\n").prefix(12).joined(separator: "\n\n") + "\n"
        let input = TrainingFixture.runDirectory("coverage-input") + ".txt"
        try excerpt.write(toFile: input, atomically: true, encoding: .utf8)
        let data = TrainingFixture.runDirectory("coverage-data")
        let prepared = try Tool.swiftbert(["prepare", "--input", input, "--vocab", Tool.root.appendingPathComponent("corpus/vocab.txt").path,
                                           "--out", data, "--dupe-factor", "1", "--validation-fraction", "0"])
        XCTAssertEqual(prepared.status, 0, prepared.stderr)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: data + "/manifest.json"))) as? [String: Any]
        let train = (manifest?["train"] as? [String: Any])?["instances"] as? Int ?? 0
        XCTAssertGreaterThan(train, 20)

        for ranks in [2, 3] {
            let out = TrainingFixture.runDirectory("coverage-\(ranks)")
            let log = out + "-samples"
            let global = 6
            let stepsPerEpoch = (train + global - 1) / global
            let result = try Tool.mpirun(
                ranks: ranks,
                ["train", "--config", TrainingFixture.debugConfig, "--data", data, "--out", out,
                 "--set", "batch.global_batch_size=\(global)", "--set", "schedule.total_steps=\(2 * stepsPerEpoch)",
                 "--set", "schedule.warmup_steps=1", "--sample-log", log])
            XCTAssertEqual(result.status, 0, result.stderr)
            var seen: [Int: [Int]] = [:]   // step -> samples from all ranks
            for rank in 0..<ranks {
                let lines = try String(contentsOfFile: "\(log).rank\(rank)", encoding: .utf8).split(separator: "\n")
                for line in lines {
                    let parts = line.split(separator: ":")
                    let step = Int(parts[0])!
                    seen[step, default: []] += parts.count > 1 ? parts[1].split(separator: " ").map { Int($0)! } : []
                }
            }
            for epoch in 0..<2 {
                let steps = (epoch * stepsPerEpoch + 1)...((epoch + 1) * stepsPerEpoch)
                let samples = steps.flatMap { seen[$0] ?? [] }.sorted()
                XCTAssertEqual(samples, Array(0..<train), "\(ranks) ranks, epoch \(epoch)")
            }
        }
    }
}
