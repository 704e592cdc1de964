import Foundation
import XCTest

/// The launch scripts in `launch/` as a user runs them: argument errors end with a message naming
/// the problem (never a hang), the auto-resume wrapper's restart policy, and the SLURM script's
/// checkpoint-and-requeue on the signal before the time limit (with stand-ins for srun/scontrol).
final class LaunchScriptTests: XCTestCase {
    static func script(_ name: String) -> String { Tool.root.appendingPathComponent("launch/\(name)").path }

    /// Writes an executable shell script into a fresh directory and returns its path.
    func executable(_ name: String, _ body: String) throws -> String {
        let directory = TrainingFixture.runDirectory("bin")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/" + name
        try ("#!/bin/sh\n" + body + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        return path
    }

    func hostfile(_ text: String) throws -> String {
        let path = TrainingFixture.runDirectory("hostfile")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func multinode(_ arguments: [String]) throws -> Tool.Result {
        try Tool.run(Self.script("multinode.sh"), ["--binary", try Tool.binary] + arguments
                     + ["--", "train", "--config", TrainingFixture.debugConfig], timeout: 60)
    }

    func testMultinodeWithoutAHostfileSaysSo() throws {
        let missing = try multinode([])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("--hostfile FILE is required"), missing.stderr)

        let absent = try multinode(["--hostfile", "/nonexistent/hosts"])
        XCTAssertEqual(absent.status, 2)
        XCTAssertTrue(absent.stderr.contains("hostfile /nonexistent/hosts does not exist"), absent.stderr)
    }

    func testMultinodeNamesAnUnreachableHost() throws {
        let hosts = try hostfile("node-a.invalid slots=2\n")
        // An agent that fails the way ssh does for a host it cannot reach.
        let refusing = try executable("refusing-ssh", "echo \"ssh: connect to host $1 port 22: Connection refused\" >&2; exit 255")
        let refused = try multinode(["--hostfile", hosts, "--rsh-agent", refusing])
        XCTAssertEqual(refused.status, 2)
        XCTAssertTrue(refused.stderr.contains("host node-a.invalid is unreachable"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("Connection refused"), refused.stderr)

        // An agent that never answers: the start-up check gives up after --connect-timeout.
        let silent = try executable("silent-ssh", "sleep 600")
        let hung = try multinode(["--hostfile", hosts, "--rsh-agent", silent, "--connect-timeout", "2"])
        XCTAssertFalse(hung.timedOut, "multinode.sh waited for a host that never answers")
        XCTAssertLessThan(hung.seconds, 30)
        XCTAssertEqual(hung.status, 2)
        XCTAssertTrue(hung.stderr.contains("host node-a.invalid did not answer within 2 s"), hung.stderr)

        // A host without the binary at the same path.
        let noBinary = try executable("shell-ssh", "shift; exit 1")
        let missing = try multinode(["--hostfile", hosts, "--rsh-agent", noBinary])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("host node-a.invalid: \(try Tool.binary) not found there"), missing.stderr)
    }

    func testLocalRejectsABadRankCount() throws {
        for ranks in ["0", "two"] {
            let result = try Tool.run(Self.script("local.sh"), ["--ranks", ranks, "train"], timeout: 30)
            XCTAssertEqual(result.status, 2)
            XCTAssertTrue(result.stderr.contains("--ranks must be a positive whole number"), result.stderr)
        }
    }

    func testLocalTrainsOnAllCores() throws {
        let out = TrainingFixture.runDirectory("local")
        let result = try Tool.run(
            Self.script("local.sh"),
            ["--binary", try Tool.binary, "train", "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(),
             "--out", out, "--set", "schedule.total_steps=6", "--set", "schedule.warmup_steps=2"], timeout: 300)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        let cores = ProcessInfo.processInfo.processorCount
        XCTAssertTrue(result.stderr.contains("\(cores) rank(s) x 1 BLAS thread(s)"), result.stderr)
        XCTAssertTrue(result.stdout.contains("; 1 thread per rank"), result.stdout)
        XCTAssertFalse(result.stdout.contains("exceed"), result.stdout)
        XCTAssertEqual(try TrainingFixture.losses(out).keys.max(), 6)
    }

    func testAutoresumeStopsOnAConfigurationError() throws {
        // warmup (5 steps) longer than the schedule: the same error on every attempt.
        let result = try Tool.run(
            Self.script("autoresume.sh"),
            ["--backoff", "0", "--", try Tool.binary, "train", "--config", TrainingFixture.debugConfig,
             "--data", try TrainingFixture.data(), "--out", TrainingFixture.runDirectory("badconfig"),
             "--set", "schedule.total_steps=2"], timeout: 120)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertEqual(MultiHostTests.attemptEnds(result.stderr).count, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("not restarting: a restart cannot fix this error"), result.stderr)
        XCTAssertTrue(result.stderr.contains("schedule.warmup_steps"), result.stderr)
    }

    func testAutoresumeRestartsWithBackoffUpToTheLimit() throws {
        let failing = try executable("fails", "exit 3")
        let result = try Tool.run(Self.script("autoresume.sh"), ["--max-restarts", "2", "--backoff", "1", "--", failing],
                                  timeout: 60)
        XCTAssertEqual(result.status, 3)
        let ends = MultiHostTests.attemptEnds(result.stderr)
        XCTAssertEqual(ends.map { $0.status }, [3, 3, 3], result.stderr)
        // Back-off 1 s, then 2 s.
        if ends.count == 3 {
            XCTAssertGreaterThanOrEqual(ends[1].time - ends[0].time, 1)
            XCTAssertGreaterThanOrEqual(ends[2].time - ends[1].time, 2)
        }
        XCTAssertTrue(result.stderr.contains("giving up after 2 restart(s)"), result.stderr)

        // Fails twice, then succeeds: the wrapper succeeds on the third attempt.
        let counter = TrainingFixture.runDirectory("counter")
        let flaky = try executable("flaky", "echo x >> \(counter); [ $(wc -l < \(counter)) -ge 3 ]")
        let recovered = try Tool.run(Self.script("autoresume.sh"), ["--backoff", "0", "--", flaky], timeout: 60)
        XCTAssertEqual(recovered.status, 0, recovered.stderr)
        XCTAssertEqual(MultiHostTests.attemptEnds(recovered.stderr).map { $0.status }, [1, 1, 0], recovered.stderr)
    }

    func testSlurmScriptCheckpointsAndRequeuesBeforeTheTimeLimit() throws {
        // Stand-ins: srun runs the task itself (one rank, standalone); scontrol records its arguments.
        let requeues = TrainingFixture.runDirectory("scontrol")
        let srun = try executable("srun", "while [ \"${1#-}\" != \"$1\" ]; do shift; done; exec \"$@\"")
        let bin = (srun as NSString).deletingLastPathComponent
        try "#!/bin/sh\necho \"$@\" >> \(requeues)\n".write(toFile: bin + "/scontrol", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: bin + "/scontrol")

        let out = TrainingFixture.runDirectory("slurm")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [Self.script("slurm.sbatch"), "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(),
                             "--out", out, "--set", "schedule.total_steps=100000", "--set", "checkpoint.every_steps=100000"]
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = bin + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["SLURM_JOB_ID"] = "4242"
        environment["SLURM_NTASKS"] = "1"
        environment["SWIFTBERT_BINARY"] = try Tool.binary
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        let errors = out + ".stderr"
        _ = FileManager.default.createFile(atPath: errors, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errors))
        try process.run()

        // SLURM's --signal=B:USR1@180, once training is under way.
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, process.isRunning, ((try? TrainingFixture.losses(out).keys.max()) ?? 0) < 3 {
            Thread.sleep(forTimeInterval: 0.05)
        }
        kill(process.processIdentifier, SIGUSR1)
        let stopDeadline = Date().addingTimeInterval(60)
        while process.isRunning, Date() < stopDeadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        let log = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""

        XCTAssertEqual(process.terminationStatus, 0, log)
        let lastStep = try XCTUnwrap(TrainingFixture.losses(out).keys.max())
        XCTAssertLessThan(lastStep, 100_000)
        XCTAssertEqual(try TrainingFixture.latestCheckpoint(out), out + String(format: "/checkpoints/step-%08d", lastStep), log)
        XCTAssertEqual(try String(contentsOfFile: requeues, encoding: .utf8), "requeue 4242\n", log)
    }
}
