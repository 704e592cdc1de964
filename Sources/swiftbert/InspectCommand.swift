import ArgumentParser
import Data
import Foundation

/// `swiftbert inspect PATH`: describes what PATH holds. Each kind of directory the tool writes has
/// a detector and a report; a path that is none of them is an error saying what was expected.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a prepared data directory or a checkpoint and verify its checksums.",
        discussion: """
            A data directory (from `swiftbert prepare`): manifest, statistics, shard checksums. A checkpoint \
            (runs/NAME/checkpoints/step-NNNNNNNN): step, samples, loss at save, world size, file sizes, \
            and the SHA-256 of every file. Exits non-zero when anything does not verify.
            """)

    @Argument(help: "A data directory written by `swiftbert prepare`, or a checkpoint directory.")
    var path: String

    @Option(help: "Seed for the masking statistics (the training seed, to see what training will see).")
    var seed: UInt64 = 12345

    @Option(help: "Masking statistics cover at most this many instances per split.")
    var maskingSamples: Int = 200_000

    @Option(help: "Also check that the data was prepared with this vocab.txt.")
    var vocab: String?

    enum Kind {
        case dataDirectory
        case checkpoint
    }

    /// A path `inspect` cannot describe.
    struct UnknownPathError: Error, CustomStringConvertible {
        let description: String
    }

    static func detect(_ path: String) throws -> Kind {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw UnknownPathError(description: "'\(path)' does not exist")
        }
        if isDirectory.boolValue,
           FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(DatasetManifest.fileName)) {
            return .dataDirectory
        }
        if isDirectory.boolValue, CheckpointInspection.isCheckpoint(path) {
            return .checkpoint
        }
        throw UnknownPathError(description:
            "'\(path)' is not something `swiftbert inspect` knows: expected a data directory written by "
                + "`swiftbert prepare` (with \(DatasetManifest.fileName)) or a checkpoint directory (with trainer_state.json)")
    }

    func run() throws {
        switch try Inspect.detect(path) {
        case .dataDirectory:
            try inspectData()
        case .checkpoint:
            try CheckpointInspection.inspect(path)
        }
    }

    private func inspectData() throws {
        let manifestPath = (path as NSString).appendingPathComponent(DatasetManifest.fileName)
        let manifest = try DatasetManifest.load(directory: path)
        let expectedFingerprint = try vocab.map { try Vocabulary(contentsOfFile: $0).fingerprint }
        print("# \(manifestPath)")
        if let text = try? String(contentsOfFile: manifestPath, encoding: .utf8) { print(text) }
        let labels: [String]
        switch manifest.instances.nextSentenceMode {
        case .binary: labels = ["next", "random"]
        case .threeWay: labels = ["next", "same-doc", "other-doc"]
        case .none: labels = ["none"]
        }
        for split in DataSplit.allCases {
            let info = manifest.split(split)
            print("\n## \(split.rawValue)")
            guard info.instances > 0 else {
                print("  no instances")
                continue
            }
            let dataset = try PretrainingDataset(
                directory: path, split: split, expectedVocabularyFingerprint: expectedFingerprint)
            try dataset.verifyChecksums()
            print("  checksums          OK (\(dataset.shards.count) shard(s))")
            let stats = try DatasetStatistics(dataset: dataset, seed: seed, maskingSampleLimit: maskingSamples)
            print("  instances          \(stats.instances)")
            print("  tokens             \(stats.tokens)")
            print("  sequence length    mean \(format(stats.meanSequenceLength, 1)), min \(stats.shortestSequence), "
                  + "max \(stats.longestSequence) (T = \(dataset.sequenceLength))")
            if manifest.objective == .causalLM {
                print("  objective          causal_lm (packed sequences, <|endoftext|> id \(manifest.vocabulary.endOfTextID ?? -1); not masked)")
                continue
            }
            let nsp = stats.nspLabelCounts.enumerated().map { label, count in
                "\(label < labels.count ? labels[label] : "\(label)") \(percent(count, stats.instances))"
            }
            print("  NSP labels         \(nsp.joined(separator: ", "))")
            let m = stats.masking
            print("  masking            \(stats.maskedInstances) instances, epoch 0, seed \(seed)")
            print("  mask rate          \(format(100 * stats.maskRate, 2))% of tokens predicted "
                  + "(\(m.predicted) of \(stats.maskedInstanceTokens); target \(manifest.masking.maskedLMProbability), "
                  + "cap \(manifest.masking.maxPredictionsPerSequence) a sequence)")
            print("  predicted tokens   [MASK] \(percent(m.replacedByMask, m.predicted)), "
                  + "random \(percent(m.replacedByRandom, m.predicted)), kept \(percent(m.kept, m.predicted))")
        }
    }

    private func percent(_ part: Int, _ whole: Int) -> String {
        whole == 0 ? "-" : format(100 * Double(part) / Double(whole), 2) + "%"
    }

    private func format(_ value: Double, _ digits: Int) -> String {
        String(format: "%.\(digits)f", value)
    }
}
