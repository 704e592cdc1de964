import Foundation

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
        } catch {
            throw DataError.invalidManifest(path: path, reason: "not a valid manifest (\(error))")
        }
        guard manifest.format == formatName else {
            throw DataError.invalidManifest(path: path, reason: "format '\(manifest.format)', expected '\(formatName)'")
        }
        guard manifest.version == currentVersion else {
            throw DataError.invalidManifest(
                path: path, reason: "manifest version \(manifest.version), this build reads version \(currentVersion)")
        }
        // Batches are filled with these ids; one outside the vocabulary would index past the embeddings.
        let vocabulary = manifest.vocabulary
        let specials = [("pad_id", vocabulary.padID), ("unk_id", vocabulary.unknownID), ("cls_id", vocabulary.classifierID),
                        ("sep_id", vocabulary.separatorID), ("mask_id", vocabulary.maskID)]
        if let (key, id) = specials.first(where: { $0.1 < 0 || Int($0.1) >= vocabulary.size }) {
            throw DataError.invalidManifest(
                path: path, reason: "vocabulary.\(key) is \(id), outside the vocabulary of \(vocabulary.size) tokens")
        }
        return manifest
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
