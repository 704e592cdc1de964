import Foundation
import XCTest

/// Deterministic generator for test data (SplitMix64).
struct TestRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum TestPaths {
    /// The repository root, from this file's path (Tests/DataTests/...).
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// BERT-Base uncased, 30,522 tokens (the quick start's vocabulary).
    static let vocabulary = repositoryRoot.appendingPathComponent("corpus/vocab.txt").path
    /// The first 336 chapters of the King James Bible in Google's format (the quick start's corpus).
    static let kjv = repositoryRoot.appendingPathComponent("corpus/kjv.txt").path
    /// Excerpts of the Python documentation and of the Debian handbook in Chinese (see its README.md).
    static let corpusExcerpts = repositoryRoot.appendingPathComponent("Tests/DataTests/Fixtures/corpora")
    static let zhHandbook = corpusExcerpts.appendingPathComponent("zh-handbook").path

    /// A fresh empty directory, removed at the end of the test.
    static func temporaryDirectory(_ test: XCTestCase) throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("swiftbert-data-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}

/// Asserts that `value` is within `sigmas` standard deviations of a binomial share `p` over `n`
/// trials (plus `slack` for known systematic deviations).
func assertShare(_ count: Int, of n: Int, near p: Double, sigmas: Double = 5, slack: Double = 0,
                 _ message: String, file: StaticString = #filePath, line: UInt = #line) {
    let share = Double(count) / Double(n)
    let bound = sigmas * (p * (1 - p) / Double(n)).squareRoot() + slack
    XCTAssertLessThanOrEqual(abs(share - p), bound, "\(message): share \(share), expected \(p) +- \(bound) over \(n)",
                             file: file, line: line)
}
