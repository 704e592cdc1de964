import Kernels
import XCTest

/// GEMM through OpenBLAS against a double-precision reference, on the kernel this process loaded
/// (the binary's own kernel is checked by `IntegrationTests.MPITests` via `swiftbert doctor --verify`).
final class GEMMTests: XCTestCase {
    func testGEMMMatchesDoublePrecisionReferenceOnAllShapesTransposesAndStrides() {
        let report = GEMMCheck.verify(cases: 400, seed: 7)
        XCTAssertEqual(report.caseCount, 400)
        XCTAssertEqual(report.mismatches.count, 0, report.mismatches.prefix(5).map(\.description).joined(separator: "\n"))
    }

    func testLinearLayerConvention() {
        // y = x W^T with W stored [out, in]: x is (2,3), W is (4,3).
        let x: [Float] = [1, 2, 3, 4, 5, 6]
        let w: [Float] = [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1]
        var y = [Float](repeating: 0, count: 8)
        gemm(.none, .transposed, m: 2, n: 4, k: 3, a: x, b: w, c: &y)
        XCTAssertEqual(y, [1, 2, 3, 6, 4, 5, 6, 15])
    }
}
