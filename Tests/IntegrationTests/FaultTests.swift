import Foundation
import XCTest

/// Kills, hangs and damaged checkpoints under real mpirun: the job ends instead of hanging, and
/// `--resume auto` continues from the newest checkpoint that verifies, exactly.
final class FaultTests: XCTestCase {
    let total = ["--set", "schedule.total_steps=40", "--set", "checkpoint.every_steps=1", "--set", "checkpoint.keep_last=2"]

    func arguments(_ out: String) throws -> [String] {
        ["train", "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(), "--out", out] + total
    }

    /// Process ids of this job's ranks, by rank, read from their environment.
    func rankProcesses(of out: String) -> [Int: Int32] {
        var ranks: [Int: Int32] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                  let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                  String(decoding: cmdline, as: UTF8.self).contains(out),
                  let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
            for variable in String(decoding: environ, as: UTF8.self).split(separator: "\0")
                where variable.hasPrefix("OMPI_COMM_WORLD_RANK=") {
                if let rank = Int(variable.dropFirst("OMPI_COMM_WORLD_RANK=".count)) { ranks[rank] = pid }
            }
        }
        return ranks
    }

    /// Starts `mpirun -np 2` training, kills `rank` with SIGKILL `jitter` seconds after rank 0 has
    /// logged `records` steps, and returns how the job ended.
    func killRank(_ rank: Int, afterRecords records: Int, jitter: Double, out: String) throws -> (status: Int32, seconds: Double) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
        process.arguments = ["--allow-run-as-root", "--oversubscribe", "-np", "2", try Tool.binary] + (try arguments(out))
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let started = Date()
        while process.isRunning && Date().timeIntervalSince(started) < 300
            && ((try? TrainingFixture.records(out).count) ?? 0) < records {
            Thread.sleep(forTimeInterval: 0.01)
        }
        Thread.sleep(forTimeInterval: jitter)
        let pid = rankProcesses(of: out)[rank]
        XCTAssertNotNil(pid, "rank \(rank) not found")
        if let pid { kill(pid, SIGKILL) }
        let killed = Date()
        let deadline = killed.addingTimeInterval(90)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let hung = process.isRunning
        if hung { process.terminate() }
        process.waitUntilExit()
        XCTAssertFalse(hung, "the job did not end after rank \(rank) was killed")
        return (process.terminationStatus, Date().timeIntervalSince(killed))
    }

    /// A run directory whose checkpoints cannot be written: the error names the directory and the
    /// system's reason. Root ignores file permissions, so as root the binary runs as `nobody`
    /// (setpriv) on a directory owned by root.
    func testUnwritableCheckpointDirectoryIsNamed() throws {
        let data = try TrainingFixture.data()
        let out = TrainingFixture.runDirectory("unwritable")
        let checkpoints = out + "/checkpoints"
        try FileManager.default.createDirectory(atPath: checkpoints, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let arguments = [
            "train", "--config", TrainingFixture.debugConfig, "--data", data, "--out", out, "--steps", "2",
            "--set", "checkpoint.every_steps=1",
        ]
        let result: Tool.Result
        if geteuid() == 0 {
            XCTAssertEqual(chown(out, 65534, 65534), 0, "chown \(out)")
            result = try Tool.run(
                "/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", try Tool.binary] + arguments)
        } else {
            XCTAssertEqual(chmod(checkpoints, 0o555), 0, "chmod \(checkpoints)")
            defer { chmod(checkpoints, 0o755) }
            result = try Tool.swiftbert(arguments)
        }
        XCTAssertNotEqual(result.status, 0, result.stdout)
        XCTAssertTrue(result.stderr.contains("Permission denied"), result.stderr)
        XCTAssertTrue(result.stderr.contains(checkpoints), result.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: checkpoints), [])
    }

    func testKilledRanksEndTheJobAndResumeContinuesExactly() throws {
        let straight = TrainingFixture.runDirectory("faults-straight")
        let reference = try Tool.mpirun(ranks: 2, try arguments(straight), timeout: 600)
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let expected = try TrainingFixture.losses(straight)

        // Rank 1 mid-run, then rank 0 at random moments, which fall in steps and in checkpoint
        // writes (a checkpoint is written after every step).
        var generator = SystemRandomNumberGenerator()
        let trials = [(1, 8)] + (0..<3).map { _ in (0, Int.random(in: 4...30, using: &generator)) }
        for (trial, (rank, records)) in trials.enumerated() {
            let out = TrainingFixture.runDirectory("faults-\(trial)")
            let jitter = Double.random(in: 0..<0.3, using: &generator)
            let ended = try killRank(rank, afterRecords: records, jitter: jitter, out: out)
            XCTAssertNotEqual(ended.status, 0, "trial \(trial): rank \(rank) killed after \(records) steps + \(jitter) s")
            XCTAssertLessThan(ended.seconds, 60, "trial \(trial): the job took too long to end")
            let resumed = try Tool.mpirun(ranks: 2, try arguments(out), timeout: 600)
            XCTAssertEqual(resumed.status, 0, "trial \(trial): \(resumed.stderr)")
            XCTAssertEqual(try TrainingFixture.losses(out), expected, "trial \(trial): loss curve differs after resume")
        }
    }

    func testHungRankIsAbortedByTheWatchdog() throws {
        let out = TrainingFixture.runDirectory("hang")
        let result = try Tool.mpirun(
            ranks: 2, try arguments(out) + ["--set", "watchdog_seconds=5", "--inject-hang", "1:3"], timeout: 120)
        XCTAssertFalse(result.timedOut, "the watchdog did not end the hung job")
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("no progress for"), result.stderr)
    }

    func testDamagedCheckpointsAreDetectedSkippedAndRefused() throws {
        let out = TrainingFixture.runDirectory("corrupt")
        let first = try Tool.swiftbert(
            ["train", "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(), "--out", out,
             "--set", "schedule.total_steps=40", "--set", "checkpoint.every_steps=10", "--steps", "20"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let newest = out + "/checkpoints/step-00000020"
        let files = try FileManager.default.contentsOfDirectory(atPath: newest).sorted()
        XCTAssertEqual(Set(files), ["config.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json",
                                    "tokenizer_config.json", "trainer_state.json", "training_config.json", "vocab.txt"])
        XCTAssertEqual(try Tool.swiftbert(["inspect", newest]).status, 0)

        let pristine = TrainingFixture.runDirectory("corrupt-pristine")
        try FileManager.default.copyItem(atPath: newest, toPath: pristine)
        for file in files {
            for damage in ["flip", "truncate", "delete"] {
                try? FileManager.default.removeItem(atPath: newest)
                try FileManager.default.copyItem(atPath: pristine, toPath: newest)
                let path = newest + "/" + file
                var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
                switch damage {
                case "flip": bytes[bytes.count / 2] ^= 0x01; try bytes.write(to: URL(fileURLWithPath: path))
                case "truncate": try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
                default: try FileManager.default.removeItem(atPath: path)
                }
                let label = "\(damage) \(file)"
                let inspected = try Tool.swiftbert(["inspect", newest])
                XCTAssertNotEqual(inspected.status, 0, label)
                XCTAssertTrue(inspected.stderr.contains(file),
                              "\(label): \(inspected.stderr)")
                let explicit = try Tool.swiftbert(
                    ["train", "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(), "--out", out,
                     "--set", "schedule.total_steps=40", "--resume", newest, "--steps", "1"])
                XCTAssertNotEqual(explicit.status, 0, "\(label): an explicitly named damaged checkpoint must be refused")
                if damage == "flip" && file == files.first {
                    let auto = try Tool.swiftbert(
                        ["train", "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(), "--out", out,
                         "--set", "schedule.total_steps=40", "--set", "checkpoint.every_steps=1000", "--steps", "1"])
                    XCTAssertEqual(auto.status, 0, "\(label): \(auto.stderr)")
                    XCTAssertTrue(auto.stdout.contains("skipping checkpoint \(newest)"), "\(label): \(auto.stdout)")
                    XCTAssertTrue(auto.stdout.contains("resumed from \(out)/checkpoints/step-00000010"), "\(label): \(auto.stdout)")
                }
            }
        }
    }
}
