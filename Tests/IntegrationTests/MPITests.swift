import Foundation
import XCTest

/// Collectives and failure handling under real `mpirun`, through the built binary.
final class MPITests: XCTestCase {
    func testCollectivesAreCorrectOnTwoRanks() throws {
        let result = try Tool.mpirun(ranks: 2, ["doctor", "--verify", "--gemm-size", "256"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("ranks          2 on 1 host"), result.stdout)
        XCTAssertTrue(result.stdout.contains("collectives correct on every rank"), result.stdout)
    }

    func testCollectivesAreCorrectOnThreeOversubscribedRanks() throws {
        let result = try Tool.mpirun(ranks: 3, ["doctor", "--verify", "--gemm-size", "256", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(report?["ranks"] as? Int, 3)
        XCTAssertEqual(report?["verified"] as? Bool, true)
        XCTAssertEqual((report?["sgemm_gflops"] as? [Double])?.count, 3)
        let warnings = report?["warnings"] as? [String] ?? []
        if ProcessInfo.processInfo.activeProcessorCount < 3 {
            XCTAssertTrue(warnings.contains { $0.contains("oversubscribed") }, "\(warnings)")
        }
    }

    func testFailingRankEndsTheJobAndIsNamed() throws {
        let result = try Tool.mpirun(ranks: 3, ["doctor", "--fail-rank", "1", "--gemm-size", "64"], timeout: 120)
        XCTAssertFalse(result.timedOut, "the job hung after rank 1 failed")
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("rank 1: error: failing on purpose"), result.stderr)
        XCTAssertLessThan(result.seconds, 60)
    }

    func testStandaloneRunSelectsAFastKernel() throws {
        let result = try Tool.swiftbert(["doctor", "--json", "--gemm-size", "256"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(report?["ranks"] as? Int, 1)
        let kernel = report?["openblas_core"] as? String ?? ""
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil && cpuinfo.contains(" avx512f ") {
            XCTAssertTrue(["SkylakeX", "Cooperlake"].contains(kernel), "kernel \(kernel) on an AVX-512 CPU")
        }
    }

    /// The same snake_case keys as `bench --json` and `metrics.jsonl`, at every level of the report.
    func testDoctorJSONUsesSnakeCaseKeys() throws {
        let result = try Tool.swiftbert(["doctor", "--json", "--gemm-size", "64"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        var keys: [String] = []
        func collect(_ value: Any) {
            if let object = value as? [String: Any] {
                keys += object.keys
                object.values.forEach(collect)
            } else if let array = value as? [Any] {
                array.forEach(collect)
            }
        }
        collect(report)
        let notSnakeCase = keys.filter { $0.range(of: "^[a-z][a-z0-9]*(_[a-z0-9]+)*$", options: .regularExpression) == nil }
        XCTAssertEqual(notSnakeCase, [])
        // Quantities bench also reports carry bench's keys.
        XCTAssertNotNil(report["openblas_core"] as? String)
        XCTAssertNotNil(report["threads_per_rank"] as? Int)
        XCTAssertEqual((report["all_reduce_bus_bandwidth_gbps"] as? [[String: Any]])?.count, 4)
    }

    func testKernelChosenByTheUserIsKept() throws {
        let result = try Tool.run(
            try Tool.binary, ["doctor", "--json", "--gemm-size", "64"], environment: ["OPENBLAS_CORETYPE": "HASWELL"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(report?["openblas_core"] as? String, "Haswell")
        XCTAssertEqual(report?["openblas_core_origin"] as? String, "OPENBLAS_CORETYPE=HASWELL, set by the user")
    }

    func testGEMMIsCorrectOnTheSelectedKernel() throws {
        let result = try Tool.swiftbert(["doctor", "--verify", "--json", "--gemm-size", "64"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(report?["verified"] as? Bool, true)
        XCTAssertEqual(report?["gemm_cases_checked"] as? Int, 300)
    }
}
