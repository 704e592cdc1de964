import Dispatch
import Foundation
import Kernels

/// What `prepare` needs from a tokenizer: ids for text, the special ids, which ids are WordPiece
/// continuations (for whole-word masking) and the vocabulary's identity.
public struct PreparationTokenizer: Sendable {
    public var vocabularyFile: String
    public var fingerprint: String
    public var vocabularySize: Int
    public var lowercase: Bool
    public var padID, unknownID, classifierID, separatorID, maskID: Int32
    /// [V]: true for "##..." pieces.
    public var isContinuation: [Bool]
    /// Text -> ids, without [CLS]/[SEP]; called from several threads at once.
    public var encode: @Sendable (String) -> [Int32]

    public init(vocabularyFile: String, fingerprint: String, vocabularySize: Int, lowercase: Bool,
                padID: Int32, unknownID: Int32, classifierID: Int32, separatorID: Int32, maskID: Int32,
                isContinuation: [Bool], encode: @escaping @Sendable (String) -> [Int32]) {
        self.vocabularyFile = vocabularyFile
        self.fingerprint = fingerprint
        self.vocabularySize = vocabularySize
        self.lowercase = lowercase
        self.padID = padID
        self.unknownID = unknownID
        self.classifierID = classifierID
        self.separatorID = separatorID
        self.maskID = maskID
        self.isContinuation = isContinuation
        self.encode = encode
    }
}

/// Settings of `swiftbert prepare`.
public struct PrepareSettings: Sendable {
    public var inputs: [String]
    public var format: CorpusFormat = .auto
    public var outputDirectory: String
    public var instances = InstanceSettings()
    public var masking = MaskingSettings()
    /// Times each training document is turned into instances, with different random choices.
    public var dupeFactor = 10
    public var seed: UInt64 = 12345
    /// Share of documents held out for validation (whole documents, so no text leaks across).
    public var validationFraction = 0.01
    /// A shard is closed once it reaches this size.
    public var shardBytes = 64 << 20
    /// Bound on the memory used for text in flight; the chunk size is derived from it.
    public var memoryLimitBytes = 512 << 20
    /// Threads for tokenization and instance building (all cores by default).
    public var workerCount = ProcessInfo.processInfo.activeProcessorCount
    /// Replace an existing output directory.
    public var overwrite = false

    public init(inputs: [String], outputDirectory: String) {
        self.inputs = inputs
        self.outputDirectory = outputDirectory
    }

    /// Text bytes processed together. A chunk's text, the tokens of two chunks (the random-next
    /// pool) and the instances made from one chunk (dupe_factor copies of its tokens, 4 bytes a
    /// token of about 4 bytes of text) are in memory at once: about (4 + dupe_factor) times the chunk.
    public var chunkBytes: Int { max(1 << 20, memoryLimitBytes / (4 + dupeFactor)) }

    public func validate() throws {
        guard !inputs.isEmpty else { throw DataError.invalidSetting(name: "--input", reason: "give at least one file or directory") }
        try instances.validate()
        try masking.validate()
        guard dupeFactor >= 1 else { throw DataError.invalidSetting(name: "--dupe-factor", reason: "must be at least 1") }
        guard validationFraction >= 0 && validationFraction < 1 else {
            throw DataError.invalidSetting(name: "--validation-fraction", reason: "must be in [0, 1)")
        }
        guard memoryLimitBytes >= 8 << 20 else {
            throw DataError.invalidSetting(name: "--memory-limit", reason: "must be at least 8 MB")
        }
        guard shardBytes >= 1 << 16 else { throw DataError.invalidSetting(name: "--shard-size", reason: "must be at least 64 KB") }
        guard workerCount >= 1 else { throw DataError.invalidSetting(name: "--threads", reason: "must be at least 1") }
    }
}

/// Progress of a running `prepare`.
public struct PrepareProgress: Sendable {
    public var bytesRead: Int
    public var documents: Int
    public var trainInstances: Int
    public var validationInstances: Int
}

/// Documents -> pretraining instances -> shards, streaming.
///
/// The corpus is read in chunks of about `chunkBytes` of text (and at least two documents). Each
/// chunk is tokenized on all cores (one task per document), then every document's instances are
/// built on all cores with an RNG keyed by (seed, document index, duplicate), then written in
/// document order; so the output is the same whatever the number of cores. Memory is bounded by
/// the chunk size, not the corpus size.
///
/// Deviations from Google's `create_pretraining_data.py`, which holds the whole corpus in memory:
/// - random-next segments come from another document of the current or previous chunk, not of
///   the whole corpus (with the default memory limit a chunk is tens of MB of text, thousands of
///   documents);
/// - instances are not shuffled on disk: the sampler draws a fresh global permutation each epoch;
/// - masking is not fixed here but applied at load time (a different mask every epoch);
/// - validation documents are made into instances once (no duplicates).
public final class Preparer {
    public let settings: PrepareSettings
    public let tokenizer: PreparationTokenizer

    public init(settings: PrepareSettings, tokenizer: PreparationTokenizer) {
        self.settings = settings
        self.tokenizer = tokenizer
    }

    /// Runs the preparation. Output goes to a temporary directory beside the target, renamed into
    /// place at the end; on any error the temporary directory is removed and the target untouched.
    @discardableResult
    public func run(progress: ((PrepareProgress) -> Void)? = nil) throws -> DatasetManifest {
        try settings.validate()
        let manager = FileManager.default
        let target = URL(fileURLWithPath: settings.outputDirectory).standardizedFileURL
        let parent = target.deletingLastPathComponent()
        var isDirectory: ObjCBool = false
        if manager.fileExists(atPath: target.path, isDirectory: &isDirectory) {
            let contents = (try? manager.contentsOfDirectory(atPath: target.path)) ?? ["?"]
            if !(isDirectory.boolValue && contents.isEmpty) && !settings.overwrite {
                throw DataError.writeFailed(
                    path: target.path, reason: "it already exists; remove it, choose another --out, or pass --overwrite")
            }
        }
        do {
            try manager.createDirectory(at: parent, withIntermediateDirectories: true)
        } catch {
            throw DataError.writeFailed(path: parent.path, reason: "cannot create the parent directory (\(error.localizedDescription))")
        }
        let temporary = parent.appendingPathComponent(".\(target.lastPathComponent).tmp-\(getpid())")
        try? manager.removeItem(at: temporary)
        do {
            try manager.createDirectory(at: temporary, withIntermediateDirectories: false)
        } catch {
            throw DataError.writeFailed(path: temporary.path, reason: error.localizedDescription)
        }
        var committed = false
        defer { if !committed { try? manager.removeItem(at: temporary) } }

        let manifest = try prepare(into: temporary.path, progress: progress)

        if manager.fileExists(atPath: target.path) {
            let old = parent.appendingPathComponent(".\(target.lastPathComponent).old-\(getpid())")
            do {
                try manager.moveItem(at: target, to: old)
                try manager.moveItem(at: temporary, to: target)
            } catch {
                throw DataError.writeFailed(path: target.path, reason: "cannot replace it (\(error.localizedDescription))")
            }
            try? manager.removeItem(at: old)
        } else {
            guard rename(temporary.path, target.path) == 0 else {
                throw DataError.writeFailed(path: target.path, reason: String(cString: strerror(errno)))
            }
        }
        committed = true
        return manifest
    }

    // MARK: - Pipeline

    private struct SplitState {
        let split: DataSplit
        var writer: ShardWriter?
        var shards: [DatasetManifest.ShardInfo] = []
        var documents = 0
        var instances = 0
        var tokens = 0
        var nspLabelCounts: [Int]

        var info: DatasetManifest.SplitInfo {
            .init(documents: documents, instances: instances, tokens: tokens, nspLabelCounts: nspLabelCounts, shards: shards)
        }
    }

    private func prepare(into directory: String, progress: ((PrepareProgress) -> Void)?) throws -> DatasetManifest {
        let reader = try CorpusReader(inputs: settings.inputs, format: settings.format,
                                      maxDocumentBytes: settings.chunkBytes / 2)
        let builder = InstanceBuilder(settings: settings.instances, classifierID: tokenizer.classifierID,
                                      separatorID: tokenizer.separatorID)
        let labelCount = max(1, settings.instances.nextSentenceMode.classCount)
        var splits = [SplitState(split: .train, nspLabelCounts: Array(repeating: 0, count: labelCount)),
                      SplitState(split: .validation, nspLabelCounts: Array(repeating: 0, count: labelCount))]
        var corpus = DatasetManifest.CorpusInfo(files: reader.files.count, bytes: 0, documents: 0, sentences: 0, tokens: 0)
        var previousChunk: [TokenizedDocument] = []
        var firstChunk = true

        while true {
            // Read one chunk.
            var raw: [RawDocument] = []
            var chunkBytes = 0
            var exhausted = false
            while chunkBytes < settings.chunkBytes || raw.count < 2 {
                guard let document = try reader.next() else {
                    exhausted = true
                    break
                }
                chunkBytes += document.byteCount
                raw.append(document)
            }
            if firstChunk {
                if raw.isEmpty { throw DataError.emptyCorpus(paths: settings.inputs) }
                if raw.count < 2 && settings.instances.nextSentenceMode != .none {
                    throw DataError.tooFewDocuments(paths: settings.inputs, documentCount: raw.count)
                }
                firstChunk = false
            }
            if raw.isEmpty { break }

            // Tokenize on all cores.
            let firstDocumentIndex = corpus.documents
            let documents = tokenize(raw)
            raw = []  // the text is no longer needed; free it before building instances
            corpus.bytes += chunkBytes
            corpus.documents += documents.count
            for document in documents {
                corpus.sentences += document.count
                for sentence in document { corpus.tokens += sentence.count }
            }

            // Build instances on all cores; the pool is the previous chunk then this one.
            let pool = previousChunk + documents
            let poolOffset = previousChunk.count
            var isValidation = [Bool](repeating: false, count: documents.count)
            for d in documents.indices {
                isValidation[d] = isValidationDocument(firstDocumentIndex + d)
            }
            let built = buildInstances(
                documentCount: documents.count, pool: pool, poolOffset: poolOffset,
                firstDocumentIndex: firstDocumentIndex, isValidation: isValidation, builder: builder)

            // Write in document order.
            for d in documents.indices {
                let s = isValidation[d] ? 1 : 0
                if !documents[d].isEmpty { splits[s].documents += 1 }
                for instance in built[d] { try write(instance, to: &splits[s], directory: directory) }
            }
            previousChunk = documents
            progress?(PrepareProgress(bytesRead: corpus.bytes, documents: corpus.documents,
                                      trainInstances: splits[0].instances, validationInstances: splits[1].instances))
            if exhausted { break }
        }
        for s in splits.indices { try closeShard(&splits[s]) }
        if corpus.tokens == 0 { throw DataError.emptyCorpus(paths: settings.inputs) }
        guard splits[0].instances > 0 else {
            throw DataError.invalidSetting(
                name: "--validation-fraction",
                reason: "no training instances were made from \(corpus.documents) document(s); lower the validation fraction or add text")
        }

        // The data directory carries its vocabulary, so that it is complete wherever it is moved and
        // checkpoints of models trained on it can include vocab.txt.
        let vocabularyCopy = (directory as NSString).appendingPathComponent("vocab.txt")
        do {
            try FileManager.default.copyItem(atPath: tokenizer.vocabularyFile, toPath: vocabularyCopy)
        } catch {
            throw DataError.writeFailed(path: vocabularyCopy, reason: "cannot copy \(tokenizer.vocabularyFile): \(error.localizedDescription)")
        }
        let manifest = DatasetManifest(
            format: DatasetManifest.formatName, version: DatasetManifest.currentVersion,
            vocabulary: .init(fingerprint: tokenizer.fingerprint, size: tokenizer.vocabularySize,
                              file: "vocab.txt", lowercase: tokenizer.lowercase,
                              padID: tokenizer.padID, unknownID: tokenizer.unknownID, classifierID: tokenizer.classifierID,
                              separatorID: tokenizer.separatorID, maskID: tokenizer.maskID),
            instances: settings.instances, masking: settings.masking,
            preparation: .init(inputs: settings.inputs, inputFormat: settings.format.rawValue,
                               dupeFactor: settings.dupeFactor, seed: settings.seed,
                               validationFraction: settings.validationFraction, chunkBytes: settings.chunkBytes,
                               shardBytes: settings.shardBytes),
            corpus: corpus, train: splits[0].info, validation: splits[1].info)
        try manifest.write(directory: directory)
        return manifest
    }

    /// A document goes to validation with probability `validationFraction`, keyed by its index.
    private func isValidationDocument(_ index: Int) -> Bool {
        settings.validationFraction > 0
            && Double(Philox(seed: settings.seed, 0x56414C4944, UInt64(index)).uniform(at: 0)) < settings.validationFraction
    }

    /// Sentence splitting and WordPiece tokenization of a chunk, one concurrent task per document.
    private func tokenize(_ raw: [RawDocument]) -> [TokenizedDocument] {
        var documents = [TokenizedDocument](repeating: [], count: raw.count)
        let splitter = SentenceSplitter()
        let tokenizer = self.tokenizer
        documents.withUnsafeMutableBufferPointer { output in
            let output = output
            runConcurrently(raw.count) { d in
                var sentences: TokenizedDocument = []
                for text in raw[d].sentences(splitter: splitter) {
                    let ids = tokenizer.encode(text)
                    if ids.isEmpty { continue }
                    sentences.append(ids.map { id in
                        tokenizer.isContinuation[Int(id)] ? UInt32(id) | ShardFormat.continuationBit : UInt32(id)
                    })
                }
                output[d] = sentences
            }
        }
        return documents
    }

    private func buildInstances(
        documentCount: Int, pool: [TokenizedDocument], poolOffset: Int, firstDocumentIndex: Int,
        isValidation: [Bool], builder: InstanceBuilder
    ) -> [[TrainingInstance]] {
        var built = [[TrainingInstance]](repeating: [], count: documentCount)
        let dupeFactor = settings.dupeFactor, seed = settings.seed
        built.withUnsafeMutableBufferPointer { output in
            let output = output
            runConcurrently(documentCount) { d in
                guard !pool[poolOffset + d].isEmpty else { return }
                var instances: [TrainingInstance] = []
                for dupe in 0..<(isValidation[d] ? 1 : dupeFactor) {
                    var rng = RandomStream(Philox(seed: seed, 0x494E5354, UInt64(firstDocumentIndex + d), UInt64(dupe)))
                    builder.appendInstances(of: poolOffset + d, pool: pool, random: &rng, to: &instances)
                }
                output[d] = instances
            }
        }
        return built
    }

    /// Runs `body(i)` for `0..<count` on `workerCount` threads, taking indices dynamically, since
    /// documents differ a lot in size.
    private func runConcurrently(_ count: Int, _ body: @escaping (Int) -> Void) {
        let workers = min(settings.workerCount, count)
        if workers <= 1 {
            for i in 0..<count { body(i) }
            return
        }
        let lock = NSLock()
        var next = 0
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                lock.lock()
                let i = next
                next += 1
                lock.unlock()
                if i >= count { return }
                body(i)
            }
        }
    }

    private func write(_ instance: TrainingInstance, to state: inout SplitState, directory: String) throws {
        if state.writer == nil {
            let name = String(format: "%@-%05d.shard", state.split.rawValue, state.shards.count)
            state.writer = try ShardWriter(
                path: (directory as NSString).appendingPathComponent(name),
                sequenceLength: settings.instances.maxSequenceLength, vocabularyFingerprint: tokenizer.fingerprint)
        }
        try state.writer!.append(instance)
        state.instances += 1
        state.tokens += instance.tokens.count
        state.nspLabelCounts[instance.nspLabel] += 1
        if state.writer!.byteCount >= settings.shardBytes { try closeShard(&state) }
    }

    private func closeShard(_ state: inout SplitState) throws {
        guard let writer = state.writer else { return }
        let header = try writer.finish()
        state.shards.append(.init(file: (writer.path as NSString).lastPathComponent, instances: header.instanceCount,
                                  tokens: header.tokenCount, sha256: hexString(header.payloadSHA256)))
        state.writer = nil
    }
}

extension PreparationTokenizer {
    /// The BERT WordPiece tokenizer over the vocabulary file at `path`.
    public init(vocabularyFile path: String, lowercase: Bool = true) throws {
        let vocabulary = try Vocabulary(contentsOfFile: path)
        let tokenizer = BertTokenizer(vocabulary: vocabulary, lowercase: lowercase)
        self.init(
            vocabularyFile: path, fingerprint: vocabulary.fingerprint, vocabularySize: vocabulary.count,
            lowercase: lowercase, padID: vocabulary.padID, unknownID: vocabulary.unknownID,
            classifierID: vocabulary.classifierID, separatorID: vocabulary.separatorID, maskID: vocabulary.maskID,
            isContinuation: vocabulary.tokens.map { $0.hasPrefix("##") },
            encode: { tokenizer.encode($0) })
    }
}
