import Foundation
import XCTest

/// The parity tests' bound: max |actual - expected| <= tolerance * max |expected| over a whole tensor,
/// which must not be all zero in the reference. `PARITY_VERBOSE` prints each relative error.
func assertParity(
    _ actual: [Float], against expected: [Float], tolerance: Float, _ label: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(actual.count, expected.count, "\(label) size", file: file, line: line)
    guard actual.count == expected.count else { return }
    let scale = expected.map { abs($0) }.max() ?? 0
    XCTAssertGreaterThan(scale, 0, "\(label) is all zero in the reference", file: file, line: line)
    let error = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
    XCTAssertLessThanOrEqual(error, tolerance * scale, "\(label): max error \(error), max |reference| \(scale)", file: file, line: line)
    if ProcessInfo.processInfo.environment["PARITY_VERBOSE"] != nil {
        print("\(label): relative error \(error / scale)")
    }
}
