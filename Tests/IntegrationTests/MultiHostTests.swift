import Foundation
import XCTest

/// Several hosts on one machine: network namespaces made by `launch/testhosts/netns-cluster.sh`,
/// each with its own address in 127.77.0.0/24 and its own host name, joined by veth pairs to a
/// bridge. `launch/multinode.sh` starts the job from host 0 with an rsh agent that enters the other
/// namespaces, TCP only (`btl tcp,self`), so ranks on different hosts talk over the veths.
/// Needs root and `ip` (iproute2); skipped elsewhere.
final class MultiHostTests: XCTestCase {
    static let script = Tool.root.appendingPathComponent("launch/testhosts/netns-cluster.sh").path
    static let agent = Tool.root.appendingPathComponent("launch/testhosts/rsh-agent.sh").path
    static let multinode = Tool.root.appendingPathComponent("launch/multinode.sh").path
    static let autoresume = Tool.root.appendingPathComponent("launch/autoresume.sh").path

    var cluster: String?

    override func setUpWithError() throws {
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].contains(where: FileManager.default.isExecutableFile)
        guard getuid() == 0, ip else {
            throw XCTSkip("multi-host tests need root and ip netns (iproute2): run as root (CI does)")
        }
    }

    override func tearDownWithError() throws {
        // Everything the cluster created goes, also after a failed test.
        if let cluster { _ = try Tool.run(Self.script, ["down", "--prefix", cluster], timeout: 60) }
    }

    /// Creates `hosts` namespaces named sbtPID-0, sbtPID-1, ...
    func makeCluster(hosts: Int) throws -> String {
        let prefix = "sbt\(getpid() % 100_000)"
        cluster = prefix
        let result = try Tool.run(Self.script, ["up", "--prefix", prefix, "--hosts", "\(hosts)"], timeout: 60)
        guard result.status == 0 else { throw TrainingFailure("netns-cluster up failed: \(result.stderr)") }
        return prefix
    }

    /// An Open MPI hostfile naming the cluster's hosts in `order` (the first gets rank 0).
    func hostfile(_ order: [Int], slots: Int) throws -> String {
        let path = TrainingFixture.runDirectory("hostfile")
        try order.map { "127.77.0.\($0 + 1) slots=\(slots)\n" }.joined().write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// `launch/multinode.sh` run on host `from` of the cluster, as a user would on a login node.
    func multinodeCommand(_ cluster: String, from host: Int, hostfile: String, train: [String]) throws -> [String] {
        [Self.script, "exec", "--prefix", cluster, "\(host)",
         Self.multinode, "--hostfile", hostfile, "--iface", "127.77.0.0/24", "--tcp-only",
         "--rsh-agent", Self.agent, "--binary", try Tool.binary, "--"] + train
    }

    func trainArguments(out: String, _ extra: [String]) throws -> [String] {
        ["train", "--config", TrainingFixture.debugConfig, "--data", try TrainingFixture.data(), "--out", out,
         "--set", "schedule.total_steps=20"] + extra
    }

    func assertSameLosses(_ run: String, _ reference: [Int: Double], _ label: String,
                          file: StaticString = #filePath, line: UInt = #line) throws {
        let losses = try TrainingFixture.losses(run)
        XCTAssertEqual(losses.keys.sorted(), Array(1...20), label, file: file, line: line)
        for (step, loss) in reference.sorted(by: { $0.key < $1.key }) {
            let other = losses[step] ?? .nan
            XCTAssertLessThanOrEqual(abs(other - loss) / abs(loss), 1e-4, "\(label), step \(step): \(other) vs \(loss)",
                                     file: file, line: line)
        }
    }

    func testTwoHostsOneRankEachMatchOneHost() throws {
        let cluster = try makeCluster(hosts: 2)
        let single = TrainingFixture.runDirectory("onehost2")
        let reference = try Tool.mpirun(ranks: 2, try trainArguments(out: single, []), timeout: 300)
        XCTAssertEqual(reference.status, 0, reference.stderr)

        let out = TrainingFixture.runDirectory("twohosts")
        let command = try multinodeCommand(cluster, from: 0, hostfile: try hostfile([0, 1], slots: 1),
                                           train: try trainArguments(out: out, []))
        let result = try Tool.run(command[0], Array(command.dropFirst()), timeout: 300)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        // Every rank reports its namespace's host name: two hosts, one rank each.
        XCTAssertTrue((result.stdout + result.stderr).contains("ranks: \(cluster)-0: ranks 0; \(cluster)-1: ranks 1;"), result.stdout)
        try assertSameLosses(out, try TrainingFixture.losses(single), "2 hosts x 1 rank vs 1 host x 2 ranks")
    }

    func testThreeHostsTwoRanksEachThenResumeOnAnotherLayout() throws {
        let cluster = try makeCluster(hosts: 3)
        let batch = ["--set", "batch.global_batch_size=12", "--set", "checkpoint.every_steps=10"]
        let single = TrainingFixture.runDirectory("onehost6")
        let reference = try Tool.mpirun(ranks: 6, try trainArguments(out: single, batch), timeout: 300)
        XCTAssertEqual(reference.status, 0, reference.stderr)

        // Steps 1-10 on 3 hosts x 2 ranks, rank 0 on host 0, which writes the checkpoint.
        let out = TrainingFixture.runDirectory("threehosts")
        let first = try multinodeCommand(cluster, from: 0, hostfile: try hostfile([0, 1, 2], slots: 2),
                                         train: try trainArguments(out: out, batch + ["--steps", "10"]))
        let part1 = try Tool.run(first[0], Array(first.dropFirst()), timeout: 300)
        XCTAssertEqual(part1.status, 0, part1.stdout + part1.stderr)
        XCTAssertTrue((part1.stdout + part1.stderr).contains("ranks: \(cluster)-0: ranks 0-1; \(cluster)-1: ranks 2-3; \(cluster)-2: ranks 4-5;"),
                      part1.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/checkpoints/step-00000010/trainer_state.json"))

        // Steps 11-20 on 2 hosts x 3 ranks, launched from host 2 with rank 0 there.
        let second = try multinodeCommand(cluster, from: 2, hostfile: try hostfile([2, 1], slots: 3),
                                          train: try trainArguments(out: out, batch))
        let part2 = try Tool.run(second[0], Array(second.dropFirst()), timeout: 300)
        XCTAssertEqual(part2.status, 0, part2.stdout + part2.stderr)
        XCTAssertTrue((part2.stdout + part2.stderr).contains("ranks: \(cluster)-2: ranks 0-2; \(cluster)-1: ranks 3-5;"), part2.stdout)
        XCTAssertTrue((part2.stdout + part2.stderr).contains("resumed from \(out)/checkpoints/step-00000010 at step 10"), part2.stdout)
        try assertSameLosses(out, try TrainingFixture.losses(single), "3x2 then 2x3 hosts vs 1 host x 6 ranks")
    }

    func testKillingOneHostEndsTheJobAndAutoresumeCompletesIt() throws {
        let cluster = try makeCluster(hosts: 2)
        let out = TrainingFixture.runDirectory("killhost")
        let command = try multinodeCommand(cluster, from: 0, hostfile: try hostfile([0, 1], slots: 1),
                                           train: try trainArguments(out: out, ["--set", "checkpoint.every_steps=3"]))

        // Once step 5 is logged (a checkpoint exists at step 3), every process of host 1 is killed.
        let killed = KillRecord()
        let watcher = Thread {
            let deadline = Date().addingTimeInterval(240)
            while Date() < deadline {
                if let steps = try? TrainingFixture.losses(out).keys, steps.contains(where: { $0 >= 5 }) {
                    killed.time = Date().timeIntervalSince1970
                    killed.result = try? Tool.run(Self.script, ["kill", "--prefix", cluster, "1"], timeout: 30)
                    return
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        watcher.start()
        let result = try Tool.run(Self.autoresume, ["--max-restarts", "2", "--backoff", "1", "--run", out, "--"] + command,
                                  timeout: 400)
        while !watcher.isFinished { Thread.sleep(forTimeInterval: 0.1) }
        let log = result.stdout + result.stderr

        let killTime = try XCTUnwrap(killed.time, "the run never reached step 5: \(log)")
        XCTAssertEqual(killed.result?.status, 0, killed.result?.stderr ?? "")
        // The first attempt ends (mpirun loses host 1's daemon) within the watchdog time.
        let firstEnd = try XCTUnwrap(Self.attemptEnds(log).first, log)
        XCTAssertNotEqual(firstEnd.status, 0, "the first attempt finished before host 1 was killed: \(log)")
        XCTAssertLessThan(firstEnd.time - killTime, 120, log)
        // The restarted job resumes from the checkpoint of the killed one and completes.
        XCTAssertEqual(result.status, 0, log)
        XCTAssertEqual(Self.attemptEnds(log).count, 2, log)
        XCTAssertTrue(log.contains("resumed from \(out)/checkpoints/step-0000000"), log)
        XCTAssertEqual(try TrainingFixture.losses(out).keys.max(), 20, log)
        XCTAssertEqual(try TrainingFixture.latestCheckpoint(out), out + "/checkpoints/step-00000020")
    }

    func testUnreachableHostEndsWithAMessage() throws {
        let cluster = try makeCluster(hosts: 2)
        // 127.77.0.9 is in the cluster's range but no host has it.
        let path = TrainingFixture.runDirectory("hostfile-unreachable")
        try "127.77.0.1 slots=1\n127.77.0.9 slots=1\n".write(toFile: path, atomically: true, encoding: .utf8)
        let command = try multinodeCommand(cluster, from: 0, hostfile: path,
                                           train: try trainArguments(out: TrainingFixture.runDirectory("never"), []))
        let result = try Tool.run(command[0], Array(command.dropFirst()), timeout: 60)
        XCTAssertFalse(result.timedOut)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("host 127.77.0.9 is unreachable"), result.stderr)
    }

    /// `(status, unix time)` of every "attempt N exited with status S at T" line of autoresume.sh.
    static func attemptEnds(_ log: String) -> [(status: Int, time: Double)] {
        log.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("autoresume: attempt"), let range = line.range(of: "exited with status ") else { return nil }
            let words = line[range.upperBound...].split(separator: " ")
            guard words.count >= 3, let status = Int(words[0]), let time = Double(words[2]) else { return nil }
            return (status, time)
        }
    }
}

/// When the watcher thread killed the host, and what the kill command returned.
private final class KillRecord: @unchecked Sendable {
    var time: Double?
    var result: Tool.Result?
}
