import Foundation
import Kernels

/// Which part of a prepared data directory to read.
public enum DataSplit: String, Codable, CaseIterable, Sendable {
    case train
    case validation
}

/// What a prepared data directory trains.
public enum PretrainingObjective: String, Codable, CaseIterable, Sendable {
    /// BERT: `[CLS] A [SEP] B [SEP]` instances, masked at load time, with NSP labels.
    case mlm
    /// GPT-2: documents' tokens, each document followed by end-of-text, packed into sequences of
    /// `max_seq_length` tokens (the last one of a split may be shorter); no special tokens inside.
    case causalLM = "causal_lm"
}

/// `manifest.json` of a prepared data directory: what the shards hold and how they were made.
///
/// `objective` is "mlm" or "causal_lm"; a manifest without the key was written before causal LM
/// data existed and is "mlm". Causal LM data differs in:
/// - `vocabulary`: `file` is `tokenizer.json` (or `vocab.json`, with `merges.txt` beside it), copied
///   from the tokenizer given; `fingerprint` is `ByteLevelBPE.fingerprint` (the same for the same
///   tokenizer in either file format); `size` counts every id, added tokens included; `lowercase`
///   false; `eos_id` is `<|endoftext|>`, which also serves as `pad_id`. GPT-2 has no unknown,
///   classifier, separator or mask token, so `unk_id`, `cls_id`, `sep_id` and `mask_id` are -1.
/// - `instances`: `nsp_mode` none, `short_seq_prob` 0; `masking` is unused (defaults).
/// - `corpus.sentences` counts lines (google format) or paragraphs (documents format): causal LM
///   data does not split sentences.
/// - every shard record is a whole sequence: segment A length = its token count, NSP label 0.
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
        /// `<|endoftext|>` of causal LM data; absent (nil) in MLM data.
        public var endOfTextID: Int32?

        public init(fingerprint: String, size: Int, file: String, lowercase: Bool, padID: Int32, unknownID: Int32,
                    classifierID: Int32, separatorID: Int32, maskID: Int32, endOfTextID: Int32? = nil) {
            self.fingerprint = fingerprint
            self.size = size
            self.file = file
            self.lowercase = lowercase
            self.padID = padID
            self.unknownID = unknownID
            self.classifierID = classifierID
            self.separatorID = separatorID
            self.maskID = maskID
            self.endOfTextID = endOfTextID
        }

        enum CodingKeys: String, CodingKey {
            case fingerprint, size, file, lowercase
            case padID = "pad_id", unknownID = "unk_id", classifierID = "cls_id", separatorID = "sep_id", maskID = "mask_id"
            case endOfTextID = "eos_id"
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
    public var objective: PretrainingObjective = .mlm
    public var vocabulary: VocabularyInfo
    public var instances: InstanceSettings
    public var masking: MaskingSettings
    public var preparation: PreparationInfo
    public var corpus: CorpusInfo
    public var train: SplitInfo
    public var validation: SplitInfo

    enum CodingKeys: String, CodingKey {
        case format, version, objective, vocabulary, instances, masking, preparation, corpus, train, validation
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decode(String.self, forKey: .format)
        version = try container.decode(Int.self, forKey: .version)
        if let name = try container.decodeIfPresent(String.self, forKey: .objective) {
            guard let objective = PretrainingObjective(rawValue: name) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .objective, in: container,
                    debugDescription: "'\(name)' is not one of \(PretrainingObjective.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            self.objective = objective
        } else {
            objective = .mlm
        }
        vocabulary = try container.decode(VocabularyInfo.self, forKey: .vocabulary)
        instances = try container.decode(InstanceSettings.self, forKey: .instances)
        masking = try container.decode(MaskingSettings.self, forKey: .masking)
        preparation = try container.decode(PreparationInfo.self, forKey: .preparation)
        corpus = try container.decode(CorpusInfo.self, forKey: .corpus)
        train = try container.decode(SplitInfo.self, forKey: .train)
        validation = try container.decode(SplitInfo.self, forKey: .validation)
    }

    public init(format: String = formatName, version: Int = currentVersion, objective: PretrainingObjective = .mlm,
                vocabulary: VocabularyInfo, instances: InstanceSettings, masking: MaskingSettings,
                preparation: PreparationInfo, corpus: CorpusInfo, train: SplitInfo, validation: SplitInfo) {
        self.format = format
        self.version = version
        self.objective = objective
        self.vocabulary = vocabulary
        self.instances = instances
        self.masking = masking
        self.preparation = preparation
        self.corpus = corpus
        self.train = train
        self.validation = validation
    }

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
        let ids = 0..<Int32(v.size)
        switch objective {
        case .mlm:
            for (key, id) in [("pad_id", v.padID), ("unk_id", v.unknownID), ("cls_id", v.classifierID),
                              ("sep_id", v.separatorID), ("mask_id", v.maskID)] where !ids.contains(id) {
                return "vocabulary.\(key) is \(id), outside the vocabulary of \(v.size) tokens"
            }
        case .causalLM:
            // Sequences are padded with pad_id and separated by eos_id; the BERT ids are unused (-1).
            guard let eos = v.endOfTextID else {
                return "vocabulary.eos_id is missing; causal_lm data separates documents with it"
            }
            for (key, id) in [("eos_id", eos), ("pad_id", v.padID)] where !ids.contains(id) {
                return "vocabulary.\(key) is \(id), outside the vocabulary of \(v.size) tokens"
            }
            for (key, id) in [("unk_id", v.unknownID), ("cls_id", v.classifierID), ("sep_id", v.separatorID),
                              ("mask_id", v.maskID)] where id != -1 && !ids.contains(id) {
                return "vocabulary.\(key) is \(id); causal_lm data has -1 (none) or an id below \(v.size)"
            }
            guard instances.nextSentenceMode == .none else {
                return "instances.nsp_mode is \(instances.nextSentenceMode.rawValue); causal_lm data has none"
            }
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
