import Foundation
import Kernels

/// Which part of a prepared data directory to read.
public enum DataSplit: String, Codable, CaseIterable, Sendable {
    case train
    case validation
}

/// `manifest.json` of a prepared data directory: what the shards hold and how they were made.
public struct DatasetManifest: Codable, Equatable, Sendable {
    public static let fileName = "manifest.json"
    public static let formatName = "swiftbert-pretraining-data"
    public static let currentVersion = 1

    /// The vocabulary the token ids refer to.
    public struct VocabularyInfo: Codable, Equatable, Sendable {
        public var fingerprint: String
        public var size: Int
        public var file: String
        public var lowercase: Bool
        public var padID: Int32
        public var unknownID: Int32
        public var classifierID: Int32
        public var separatorID: Int32
        public var maskID: Int32

        enum CodingKeys: String, CodingKey {
            case fingerprint, size, file, lowercase
            case padID = "pad_id", unknownID = "unk_id", classifierID = "cls_id", separatorID = "sep_id", maskID = "mask_id"
        }
    }

    /// Settings of `prepare` other than instance shape and masking.
    public struct PreparationInfo: Codable, Equatable, Sendable {
        public var inputs: [String]
        public var inputFormat: String
        public var dupeFactor: Int
        public var seed: UInt64
        public var validationFraction: Double
        /// Text bytes read and processed together; "another document" for random-next pairs is drawn
        /// from this chunk and the previous one.
        public var chunkBytes: Int
        public var shardBytes: Int

        enum CodingKeys: String, CodingKey {
            case inputs, seed
            case inputFormat = "input_format", dupeFactor = "dupe_factor", validationFraction = "validation_fraction"
            case chunkBytes = "chunk_bytes", shardBytes = "shard_bytes"
        }
    }

    /// What was read.
    public struct CorpusInfo: Codable, Equatable, Sendable {
        public var files: Int
        public var bytes: Int
        public var documents: Int
        public var sentences: Int
        public var tokens: Int
    }

    /// One shard file.
    public struct ShardInfo: Codable, Equatable, Sendable {
        public var file: String
        public var instances: Int
        public var tokens: Int
        public var sha256: String
    }

    /// One split: counts and shards.
    public struct SplitInfo: Codable, Equatable, Sendable {
        public var documents: Int
        public var instances: Int
        public var tokens: Int
        /// Instances per NSP label (index = label).
        public var nspLabelCounts: [Int]
        public var shards: [ShardInfo]

        enum CodingKeys: String, CodingKey {
            case documents, instances, tokens, shards
            case nspLabelCounts = "nsp_label_counts"
        }
    }

    public var format: String
    public var version: Int
    public var vocabulary: VocabularyInfo
    public var instances: InstanceSettings
    public var masking: MaskingSettings
    public var preparation: PreparationInfo
    public var corpus: CorpusInfo
    public var train: SplitInfo
    public var validation: SplitInfo

    public func split(_ split: DataSplit) -> SplitInfo {
        split == .train ? train : validation
    }

    public static func load(directory: String) throws -> DatasetManifest {
        let path = (directory as NSString).appendingPathComponent(fileName)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError.invalidManifest(path: path, reason: "missing or unreadable")
        }
        let manifest: DatasetManifest
        do {
            manifest = try JSONDecoder().decode(DatasetManifest.self, from: data)
        } catch let error as DecodingError {
            throw DataError.invalidManifest(path: path, reason: "not a valid manifest (\(error.summary))")
        } catch {
            throw DataError.invalidManifest(path: path, reason: "not a valid manifest (\(error.localizedDescription))")
        }
        guard manifest.format == formatName else {
            throw DataError.invalidManifest(path: path, reason: "format '\(manifest.format)', expected '\(formatName)'")
        }
        guard manifest.version == currentVersion else {
            throw DataError.invalidManifest(
                path: path, reason: "manifest version \(manifest.version), this build reads version \(currentVersion)")
        }
        if let problem = manifest.problem() { throw DataError.invalidManifest(path: path, reason: problem) }
        return manifest
    }

    /// The first value that no `prepare` writes, as "key: what is wrong", or nil. The loader and the
    /// masker index and divide by these values, so a damaged manifest must stop here, not trap there.
    func problem() -> String? {
        let v = vocabulary
        guard v.size >= Vocabulary.specialTokens.count, v.size <= Int(Int32.max) else {
            return "vocabulary.size is \(v.size); it must be between \(Vocabulary.specialTokens.count) and \(Int32.max)"
        }
        for (key, id) in [("pad_id", v.padID), ("unk_id", v.unknownID), ("cls_id", v.classifierID),
                          ("sep_id", v.separatorID), ("mask_id", v.maskID)] where !(0..<Int32(v.size)).contains(id) {
            return "vocabulary.\(key) is \(id), outside the vocabulary of \(v.size) tokens"
        }
        do {
            try instances.validate()
            try masking.validate()
        } catch let DataError.invalidSetting(name, reason) {
            // The settings name their prepare option (--max-seq-length); that option's key is the same name.
            let key = name.dropFirst(2).replacingOccurrences(of: "-", with: "_")
            return "\(key) \(reason)"
        } catch {
            return "\(error)"
        }
        for split in DataSplit.allCases {
            let info = self.split(split)
            guard info.documents >= 0, info.instances >= 0, info.tokens >= 0, info.nspLabelCounts.allSatisfy({ $0 >= 0 }) else {
                return "\(split.rawValue) has a negative count"
            }
            for shard in info.shards {
                // Shards sit in the data directory itself: a path elsewhere is not one prepare wrote.
                guard !shard.file.isEmpty, !shard.file.contains("/"), shard.file != ".", shard.file != ".." else {
                    return "\(split.rawValue).shards has the file name '\(shard.file)'; shards are files of the data directory"
                }
                guard shard.instances >= 0, shard.tokens >= 0 else {
                    return "\(split.rawValue).shards '\(shard.file)' has a negative count"
                }
            }
            var total = 0, overflow = false
            for shard in info.shards where !overflow { (total, overflow) = total.addingReportingOverflow(shard.instances) }
            guard !overflow, total == info.instances else {
                return "\(split.rawValue).instances is \(info.instances) but its shards hold "
                    + (overflow ? "more than \(Int.max)" : "\(total)")
            }
        }
        return nil
    }

    public func write(directory: String) throws {
        let path = (directory as NSString).appendingPathComponent(DatasetManifest.fileName)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try encoder.encode(self).write(to: URL(fileURLWithPath: path))
        } catch {
            throw DataError.writeFailed(path: path, reason: "\(error)")
        }
    }
}
