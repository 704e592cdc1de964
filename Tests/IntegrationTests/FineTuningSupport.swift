import Foundation
import XCTest

/// Fine-tuning runs from the committed fixtures: the data files are copied to a scratch directory
/// first, since the feature caches are written beside them.
enum FineTuning {
    static let fixtures = Tool.root.appendingPathComponent("Tests/IntegrationTests/Fixtures").path
    static let hfTiny = Tool.root.appendingPathComponent("Tests/TransformerTests/Fixtures/hf-tiny").path

    /// A new scratch directory holding copies of `files` (paths under Fixtures/).
    static func scratch(_ name: String, copying files: [String] = []) throws -> String {
        let directory = TrainingFixture.runDirectory(name)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for file in files {
            try FileManager.default.copyItem(
                atPath: fixtures + "/" + file, toPath: directory + "/" + (file as NSString).lastPathComponent)
        }
        return directory
    }

    /// Writes `object` as a JSON config file and returns its path.
    static func writeConfig(_ object: [String: Any], to path: String) throws -> String {
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// `swiftbert train --config config --out out extra`, on `ranks` MPI ranks or `debugRanks` in-process ranks.
    static func train(
        _ config: String, out: String, ranks: Int = 1, debugRanks: Int? = nil, _ extra: [String] = []
    ) throws -> Tool.Result {
        let arguments = ["train", "--config", config, "--out", out] + extra
        if let debugRanks { return try Tool.swiftbert(arguments + ["--debug", "--ranks", "\(debugRanks)"], timeout: 600) }
        return ranks == 1 ? try Tool.swiftbert(arguments, timeout: 600) : try Tool.mpirun(ranks: ranks, arguments, timeout: 600)
    }

    /// Trains `config` into `out` on one rank; returns the run and its last validation record, which
    /// must be that of `step`.
    static func trainToLastValidation(
        _ config: String, out: String, step: Int, file: StaticString = #filePath, line: UInt = #line
    ) throws -> (run: Tool.Result, record: [String: Any]) {
        let result = try train(config, out: out)
        XCTAssertEqual(result.status, 0, result.stderr, file: file, line: line)
        let last = try XCTUnwrap(try validationRecords(out).last, "no validation record", file: file, line: line)
        XCTAssertEqual(last["step"] as? Int, step, file: file, line: line)
        return (result, last)
    }

    /// The validation records of a run's metrics.jsonl, in order.
    static func validationRecords(_ run: String) throws -> [[String: Any]] {
        try TrainingFixture.records(run).filter { $0["split"] as? String == "validation" }
    }

    /// The JSON object of a file.
    static func object(_ path: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any]
        else { throw TrainingFailure("\(path) is not a JSON object") }
        return object
    }

    /// Asserts that two runs logged the same training steps with losses within `tolerance` (relative).
    static func assertSameLosses(
        _ a: [Int: Double], _ b: [Int: Double], tolerance: Double, _ label: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(a.keys.sorted(), b.keys.sorted(), "\(label): logged steps differ", file: file, line: line)
        for (step, loss) in a {
            let other = b[step] ?? .nan
            XCTAssertLessThanOrEqual(abs(other - loss) / max(abs(loss), 1e-6), tolerance, "\(label), step \(step): \(loss) vs \(other)",
                                     file: file, line: line)
        }
    }
}

extension FineTuning {
    /// Asserts that two runs' final parameters agree within 1e-5 (relative to each tensor's largest
    /// value). Tensors whose exact gradient is zero are held to 1e-4 absolute only: the attention key biases
    /// (softmax ignores a shift of every score) and `alsoShiftInvariant` (multiple choice's
    /// `classifier.bias`, added to every choice's score alike). What they get is rounding noise,
    /// which depends on the summation order of the ranks' gradients, and which Adam scales up to
    /// steps of the learning rate's size.
    static func assertSameParameters(
        _ a: [String: [Float]], _ b: [String: [Float]], _ label: String, alsoShiftInvariant: Set<String> = [],
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let isShiftInvariant = { (name: String) in name.hasSuffix("attention.self.key.bias") || alsoShiftInvariant.contains(name) }
        let others = try TrainingFixture.maxRelativeDifference(
            a.filter { !isShiftInvariant($0.key) }, b.filter { !isShiftInvariant($0.key) })
        XCTAssertLessThanOrEqual(others, 1e-5, "\(label): final parameters", file: file, line: line)
        // Their values do not change the loss, so no relative bound means anything: each may drift by
        // Adam steps of noise; 1e-4 is a few steps of the tests' learning rates.
        for name in a.keys where isShiftInvariant(name) {
            let drift = zip(a[name]!, b[name] ?? []).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(drift, 1e-4, "\(label): \(name)", file: file, line: line)
        }
    }
}
