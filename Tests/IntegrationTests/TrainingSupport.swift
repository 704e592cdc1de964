import Foundation
import XCTest

/// Prepared data and run directories shared by the training tests.
enum TrainingFixture {
    /// The project's own default corpus prepared once per test process (dupe factor 1, 128 tokens).
    static let dataDirectory: Result<String, Error> = Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftbert-test-data-\(getpid())").path
        let result = try Tool.swiftbert(
            ["prepare", "--input", Tool.root.appendingPathComponent("corpus/kjv.txt").path,
             "--vocab", Tool.root.appendingPathComponent("corpus/vocab.txt").path,
             "--out", directory, "--dupe-factor", "1", "--overwrite"], timeout: 600)
        guard result.status == 0 else { throw TrainingFailure("prepare failed: \(result.stderr)") }
        return directory
    }

    static func data() throws -> String { try dataDirectory.get() }

    static func runDirectory(_ name: String) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("swiftbert-test-\(name)-\(UUID().uuidString)").path
        return path
    }

    static let debugConfig = Tool.root.appendingPathComponent("configs/debug.json").path

    /// `step -> loss` of the training records of a run's metrics.jsonl.
    static func losses(_ runDirectory: String) throws -> [Int: Double] {
        var losses: [Int: Double] = [:]
        for record in try records(runDirectory) where (record["split"] as? String ?? "train") == "train" {
            if let step = record["step"] as? Int, let loss = record["loss"] as? Double { losses[step] = loss }
        }
        return losses
    }

    static func records(_ runDirectory: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: runDirectory + "/metrics.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw TrainingFailure("metrics line is not an object: \(line)")
            }
            return object
        }
    }

    /// Every float of a safetensors file, by tensor name (parsed here, independently of the library).
    static func tensors(_ path: String) throws -> [String: [Float]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        guard let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLength))) as? [String: Any] else {
            throw TrainingFailure("bad safetensors header in \(path)")
        }
        var tensors: [String: [Float]] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let info = value as? [String: Any], let offsets = info["data_offsets"] as? [Int] else { continue }
            let bytes = data.subdata(in: (8 + headerLength + offsets[0])..<(8 + headerLength + offsets[1]))
            tensors[name] = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        return tensors
    }

    static func latestCheckpoint(_ runDirectory: String) throws -> String {
        let pointer = try String(contentsOfFile: runDirectory + "/checkpoints/latest", encoding: .utf8)
        return runDirectory + "/checkpoints/" + pointer.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A run with another number of ranks against the reference run: the same losses at `steps` and the
    /// same final weights, within 1e-5 relative.
    static func assertSameRun(_ out: String, as reference: String, steps: [Int], _ label: String,
                              file: StaticString = #filePath, line: UInt = #line) throws {
        let referenceLosses = try losses(reference), runLosses = try losses(out)
        XCTAssertEqual(runLosses.keys.sorted(), steps, label, file: file, line: line)
        for (step, loss) in referenceLosses {
            let other = runLosses[step] ?? .nan
            XCTAssertLessThanOrEqual(abs(other - loss) / abs(loss), 1e-5, "\(label), step \(step): \(other) vs \(loss)", file: file, line: line)
        }
        let weights = try tensors(try latestCheckpoint(out) + "/model.safetensors")
        let referenceWeights = try tensors(try latestCheckpoint(reference) + "/model.safetensors")
        XCTAssertLessThanOrEqual(try maxRelativeDifference(weights, referenceWeights), 1e-5, label, file: file, line: line)
    }

    /// Largest relative difference between two equally shaped sets of tensors.
    static func maxRelativeDifference(_ a: [String: [Float]], _ b: [String: [Float]]) throws -> Double {
        guard Set(a.keys) == Set(b.keys) else { throw TrainingFailure("tensor names differ") }
        var worst = 0.0
        for (name, x) in a {
            let y = b[name]!
            guard x.count == y.count else { throw TrainingFailure("\(name): sizes differ") }
            let scale = max(1e-3, Double(x.map { abs($0) }.max() ?? 0))
            for i in x.indices { worst = max(worst, Double(abs(x[i] - y[i])) / scale) }
        }
        return worst
    }
}

struct TrainingFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
