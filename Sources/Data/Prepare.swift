import Dispatch
import Foundation
import Kernels

/// What `prepare` needs from a tokenizer: ids for text, the special ids, which ids are WordPiece
/// continuations (for whole-word masking), the vocabulary's identity and its files.
public struct PreparationTokenizer: Sendable {
    /// A tokenizer file the data directory carries, so it is complete wherever it is moved.
    public struct File: Sendable, Equatable {
        public var source: String
        /// Its name in the data directory.
        public var name: String

        public init(source: String, name: String) {
            self.source = source
            self.name = name
        }
    }

    /// Copied into the data directory; the manifest's `vocabulary.file` names the first.
    public var files: [File]
    public var fingerprint: String
    public var vocabularySize: Int
    public var lowercase: Bool
    /// -1 where the tokenizer has no such token (GPT-2 has no [UNK], [CLS], [SEP] or [MASK]).
    public var padID, unknownID, classifierID, separatorID, maskID: Int32
    /// The token that ends each document of causal LM data; nil for WordPiece.
    public var endOfTextID: Int32?
    /// [V]: true for "##..." pieces.
    public var isContinuation: [Bool]
    /// Text -> ids, without [CLS]/[SEP]; called from several threads at once.
    public var encode: @Sendable (String) -> [Int32]

    public init(files: [File], fingerprint: String, vocabularySize: Int, lowercase: Bool,
                padID: Int32, unknownID: Int32, classifierID: Int32, separatorID: Int32, maskID: Int32,
                endOfTextID: Int32? = nil, isContinuation: [Bool], encode: @escaping @Sendable (String) -> [Int32]) {
        self.files = files
        self.fingerprint = fingerprint
        self.vocabularySize = vocabularySize
        self.lowercase = lowercase
        self.padID = padID
        self.unknownID = unknownID
        self.classifierID = classifierID
        self.separatorID = separatorID
        self.maskID = maskID
        self.endOfTextID = endOfTextID
        self.isContinuation = isContinuation
        self.encode = encode
    }
}

/// Settings of `swiftbert prepare`.
public struct PrepareSettings: Sendable {
    public var objective: PretrainingObjective = .mlm
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

    /// Text bytes processed together. MLM: a chunk's text, the tokens of two chunks (the random-next
    /// pool) and the instances made from one chunk (dupe_factor copies of its tokens, 4 bytes a
    /// token of about 4 bytes of text) are in memory at once: about (4 + dupe_factor) times the chunk.
    /// Causal LM: the text twice (lines and the text as is), its tokens and its sequences: about 4 times.
    public var chunkBytes: Int {
        max(1 << 20, memoryLimitBytes / (objective == .mlm ? 4 + dupeFactor : 4))
    }

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
        if objective == .causalLM && instances.nextSentenceMode != .none {
            throw DataError.invalidSetting(name: "--nsp", reason: "causal LM data has no next sentence prediction; use none")
        }
    }
}

/// Progress of a running `prepare`.
public struct PrepareProgress: Sendable {
    public var bytesRead: Int
    public var documents: Int
    public var trainInstances: Int
    public var validationInstances: Int
}

/// Documents -> pretraining instances -> shards, streaming, for BERT (MLM/NSP instances) or for a
/// causal LM (packed sequences, see `prepareCausalLM`), by `settings.objective`.
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

        try moveDirectoryIntoPlace(temporary, at: target) { DataError.writeFailed(path: $0, reason: $1) }
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
        /// Causal LM: tokens not yet in a full sequence, from `packedUpTo` on.
        var pending: [UInt32] = []
        var packedUpTo = 0

        var info: DatasetManifest.SplitInfo {
            .init(documents: documents, instances: instances, tokens: tokens, nspLabelCounts: nspLabelCounts, shards: shards)
        }
    }

    /// One chunk of the corpus as read.
    private struct Chunk {
        var documents: [RawDocument] = []
        var bytes = 0
        /// The corpus has no more documents.
        var exhausted = false
    }

    private func prepare(into directory: String, progress: ((PrepareProgress) -> Void)?) throws -> DatasetManifest {
        let reader = try CorpusReader(inputs: settings.inputs, format: settings.format,
                                      maxDocumentBytes: settings.chunkBytes / 2, keepsText: settings.objective == .causalLM)
        let labelCount = max(1, settings.instances.nextSentenceMode.classCount)
        var splits = [SplitState(split: .train, nspLabelCounts: Array(repeating: 0, count: labelCount)),
                      SplitState(split: .validation, nspLabelCounts: Array(repeating: 0, count: labelCount))]
        var corpus = DatasetManifest.CorpusInfo(files: reader.files.count, bytes: 0, documents: 0, sentences: 0, tokens: 0)
        switch settings.objective {
        case .mlm: try prepareMaskedLM(reader: reader, splits: &splits, corpus: &corpus, directory: directory, progress: progress)
        case .causalLM: try prepareCausalLM(reader: reader, splits: &splits, corpus: &corpus, directory: directory, progress: progress)
        }
        for s in splits.indices { try closeShard(&splits[s]) }
        if corpus.tokens == 0 { throw DataError.emptyCorpus(paths: settings.inputs) }
        guard splits[0].instances > 0 else {
            throw DataError.invalidSetting(
                name: "--validation-fraction",
                reason: "no training instances were made from \(corpus.documents) document(s); lower the validation fraction or add text")
        }

        // The data directory carries its tokenizer files, so that it is complete wherever it is moved
        // and checkpoints of models trained on it can include them.
        for file in tokenizer.files {
            let copy = (directory as NSString).appendingPathComponent(file.name)
            do {
                try FileManager.default.copyItem(atPath: file.source, toPath: copy)
            } catch {
                throw DataError.writeFailed(path: copy, reason: "cannot copy \(file.source): \(error.localizedDescription)")
            }
        }
        let causal = settings.objective == .causalLM
        let manifest = DatasetManifest(
            objective: settings.objective,
            vocabulary: .init(fingerprint: tokenizer.fingerprint, size: tokenizer.vocabularySize,
                              file: tokenizer.files[0].name, lowercase: tokenizer.lowercase,
                              padID: tokenizer.padID, unknownID: tokenizer.unknownID, classifierID: tokenizer.classifierID,
                              separatorID: tokenizer.separatorID, maskID: tokenizer.maskID,
                              endOfTextID: causal ? tokenizer.endOfTextID : nil),
            instances: settings.instances, masking: causal ? MaskingSettings() : settings.masking,
            preparation: .init(inputs: settings.inputs, inputFormat: settings.format.rawValue,
                               dupeFactor: causal ? 1 : settings.dupeFactor, seed: settings.seed,
                               validationFraction: settings.validationFraction, chunkBytes: settings.chunkBytes,
                               shardBytes: settings.shardBytes),
            corpus: corpus, train: splits[0].info, validation: splits[1].info)
        try manifest.write(directory: directory)
        return manifest
    }

    private func report(_ corpus: DatasetManifest.CorpusInfo, _ splits: [SplitState], to progress: ((PrepareProgress) -> Void)?) {
        progress?(PrepareProgress(bytesRead: corpus.bytes, documents: corpus.documents,
                                  trainInstances: splits[0].instances, validationInstances: splits[1].instances))
    }

    /// Documents until `chunkBytes` of text (and at least two), or to the end of the corpus.
    private func readChunk(_ reader: CorpusReader) throws -> Chunk {
        var chunk = Chunk()
        while chunk.bytes < settings.chunkBytes || chunk.documents.count < 2 {
            guard let document = try reader.next() else {
                chunk.exhausted = true
                break
            }
            chunk.bytes += document.byteCount
            chunk.documents.append(document)
        }
        return chunk
    }

    // MARK: - Masked LM

    private func prepareMaskedLM(
        reader: CorpusReader, splits: inout [SplitState], corpus: inout DatasetManifest.CorpusInfo, directory: String,
        progress: ((PrepareProgress) -> Void)?
    ) throws {
        guard tokenizer.endOfTextID == nil, [tokenizer.classifierID, tokenizer.separatorID, tokenizer.maskID].allSatisfy({ $0 >= 0 }) else {
            throw DataError.invalidSetting(name: "--vocab", reason: "MLM data needs a WordPiece vocabulary with [CLS], [SEP] and [MASK]")
        }
        let builder = InstanceBuilder(settings: settings.instances, classifierID: tokenizer.classifierID,
                                      separatorID: tokenizer.separatorID)
        var previousChunk: [TokenizedDocument] = []
        var firstChunk = true

        while true {
            var chunk = try readChunk(reader)
            if firstChunk {
                if chunk.documents.isEmpty { throw DataError.emptyCorpus(paths: settings.inputs) }
                if chunk.documents.count < 2 && settings.instances.nextSentenceMode != .none {
                    throw DataError.tooFewDocuments(paths: settings.inputs, documentCount: chunk.documents.count)
                }
                firstChunk = false
            }
            if chunk.documents.isEmpty { break }

            // Tokenize on all cores.
            let firstDocumentIndex = corpus.documents
            let documents = tokenize(chunk.documents)
            chunk.documents = []  // the text is no longer needed; free it before building instances
            corpus.bytes += chunk.bytes
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
                for instance in built[d] {
                    try instance.tokens.withUnsafeBufferPointer {
                        try write($0, segmentALength: instance.segmentALength, nspLabel: instance.nspLabel,
                                  to: &splits[s], directory: directory)
                    }
                }
            }
            previousChunk = documents
            report(corpus, splits, to: progress)
            if chunk.exhausted { break }
        }
    }

    /// A document goes to validation with probability `validationFraction`, keyed by its index.
    private func isValidationDocument(_ index: Int) -> Bool {
        Self.isValidationDocument(index, seed: settings.seed, validationFraction: settings.validationFraction)
    }

    static func isValidationDocument(_ index: Int, seed: UInt64, validationFraction: Double) -> Bool {
        validationFraction > 0
            && Double(Philox(seed: seed, 0x56414C4944, UInt64(index)).uniform(at: 0)) < validationFraction
    }

    /// Sentence splitting and WordPiece tokenization of a chunk, one concurrent task per document.
    private func tokenize(_ raw: [RawDocument]) -> [TokenizedDocument] {
        let splitter = SentenceSplitter()
        let tokenizer = self.tokenizer
        return mapConcurrently(raw) { document in
            var sentences: TokenizedDocument = []
            for text in document.sentences(splitter: splitter) {
                let ids = tokenizer.encode(text)
                if ids.isEmpty { continue }
                sentences.append(ids.map { id in
                    tokenizer.isContinuation[Int(id)] ? UInt32(id) | ShardFormat.continuationBit : UInt32(id)
                })
            }
            return sentences
        }
    }

    private func buildInstances(
        documentCount: Int, pool: [TokenizedDocument], poolOffset: Int, firstDocumentIndex: Int,
        isValidation: [Bool], builder: InstanceBuilder
    ) -> [[TrainingInstance]] {
        let dupeFactor = settings.dupeFactor, seed = settings.seed
        return mapConcurrently(Array(0..<documentCount)) { d in
            guard !pool[poolOffset + d].isEmpty else { return [] }
            var instances: [TrainingInstance] = []
            for dupe in 0..<(isValidation[d] ? 1 : dupeFactor) {
                var rng = RandomStream(Philox(seed: seed, 0x494E5354, UInt64(firstDocumentIndex + d), UInt64(dupe)))
                builder.appendInstances(of: poolOffset + d, pool: pool, random: &rng, to: &instances)
            }
            return instances
        }
    }

    // MARK: - Causal LM

    /// Each document is encoded whole (one concurrent task per document) and followed by end-of-text;
    /// per split, the documents' tokens are concatenated in corpus order and cut into sequences of
    /// exactly T tokens, a sequence spanning documents where it falls (as GPT-2 and transformers'
    /// run_clm pack them). What is left at the end of a split is one shorter sequence if it holds at
    /// least 2 tokens (a sequence of 1 predicts nothing). Packing runs on one thread, in order, so the
    /// output is the same for any number of threads.
    ///
    /// The pieces of a document longer than half a chunk (see `CorpusReader`) are encoded one by one
    /// and packed as one document (no end-of-text between them, one validation draw); BPE at a cut
    /// can differ from whole-text BPE in the white space there.
    private func prepareCausalLM(
        reader: CorpusReader, splits: inout [SplitState], corpus: inout DatasetManifest.CorpusInfo, directory: String,
        progress: ((PrepareProgress) -> Void)?
    ) throws {
        guard let endOfText = tokenizer.endOfTextID else {
            throw DataError.invalidSetting(
                name: "--tokenizer", reason: "causal LM data needs a tokenizer with <|endoftext|> to end each document")
        }
        let T = settings.instances.maxSequenceLength
        // The split of the document being read, whose end-of-text is still to come.
        var open: Int?
        var firstChunk = true
        while true {
            var chunk = try readChunk(reader)
            if firstChunk && chunk.documents.isEmpty { throw DataError.emptyCorpus(paths: settings.inputs) }
            firstChunk = false
            if chunk.documents.isEmpty { break }
            let tokenizer = self.tokenizer
            let encoded = mapConcurrently(chunk.documents) { tokenizer.encode($0.wholeText) }
            corpus.bytes += chunk.bytes
            for (document, ids) in zip(chunk.documents, encoded) {
                if !document.continuesPrevious || open == nil {
                    if let s = open { try pack([endOfText], into: &splits[s], sequenceLength: T, directory: directory) }
                    let s = isValidationDocument(corpus.documents) ? 1 : 0
                    corpus.documents += 1
                    splits[s].documents += 1
                    open = s
                }
                corpus.sentences += document.texts.count
                corpus.tokens += ids.count
                try pack(ids, into: &splits[open!], sequenceLength: T, directory: directory)
            }
            chunk.documents = []
            report(corpus, splits, to: progress)
            if chunk.exhausted { break }
        }
        if let s = open { try pack([endOfText], into: &splits[s], sequenceLength: T, directory: directory) }
        for s in splits.indices {
            let rest = splits[s].pending.count - splits[s].packedUpTo
            if rest >= 2 {
                try writePending(count: rest, of: &splits[s], directory: directory)
            }
            splits[s].pending = []
            splits[s].packedUpTo = 0
        }
        report(corpus, splits, to: progress)
    }

    /// Appends `ids` to the split's token stream and writes every full sequence of T tokens.
    private func pack(_ ids: [Int32], into state: inout SplitState, sequenceLength T: Int, directory: String) throws {
        state.pending.append(contentsOf: ids.lazy.map { UInt32(bitPattern: $0) })
        while state.pending.count - state.packedUpTo >= T {
            try writePending(count: T, of: &state, directory: directory)
        }
        // Drop what is written once it outweighs what is left, so appending stays amortised O(1).
        if state.packedUpTo > 0 && state.packedUpTo >= state.pending.count - state.packedUpTo {
            state.pending.removeFirst(state.packedUpTo)
            state.packedUpTo = 0
        }
    }

    /// Writes the next `count` pending tokens as one sequence: all of it segment A, NSP label 0.
    private func writePending(count: Int, of state: inout SplitState, directory: String) throws {
        let start = state.packedUpTo
        state.packedUpTo += count
        let pending = state.pending
        try pending.withUnsafeBufferPointer { all in
            try write(UnsafeBufferPointer(rebasing: all[start..<(start + count)]), segmentALength: count, nspLabel: 0,
                      to: &state, directory: directory)
        }
    }

    // MARK: - Shared

    /// `transform` of every element, on `workerCount` threads taking indices dynamically (documents
    /// differ a lot in size); the results in input order.
    private func mapConcurrently<Element, Result>(_ elements: [Element], _ transform: @escaping (Element) -> Result) -> [Result] {
        var results = [Result?](repeating: nil, count: elements.count)
        results.withUnsafeMutableBufferPointer { output in
            let output = output
            runConcurrently(elements.count) { i in output[i] = transform(elements[i]) }
        }
        return results.map { $0! }
    }

    /// Runs `body(i)` for `0..<count` on `workerCount` threads, taking indices dynamically, since
    /// documents differ a lot in size.
    private func runConcurrently(_ count: Int, _ body: @escaping (Int) -> Void) {
        forEachDynamically(count, workers: settings.workerCount) { _, index in body(index) }
    }

    private func write(
        _ tokens: UnsafeBufferPointer<UInt32>, segmentALength: Int, nspLabel: Int, to state: inout SplitState,
        directory: String
    ) throws {
        if state.writer == nil {
            let name = String(format: "%@-%05d.shard", state.split.rawValue, state.shards.count)
            state.writer = try ShardWriter(
                path: (directory as NSString).appendingPathComponent(name),
                sequenceLength: settings.instances.maxSequenceLength, vocabularyFingerprint: tokenizer.fingerprint)
        }
        try state.writer!.append(tokens: tokens, segmentALength: segmentALength, nspLabel: nspLabel)
        state.instances += 1
        state.tokens += tokens.count
        state.nspLabelCounts[nspLabel] += 1
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
            files: [File(source: path, name: "vocab.txt")], fingerprint: vocabulary.fingerprint,
            vocabularySize: vocabulary.count, lowercase: lowercase, padID: vocabulary.padID, unknownID: vocabulary.unknownID,
            classifierID: vocabulary.classifierID, separatorID: vocabulary.separatorID, maskID: vocabulary.maskID,
            isContinuation: vocabulary.tokens.map { $0.hasPrefix("##") },
            encode: { tokenizer.encode($0) })
    }

    /// GPT-2's byte-level BPE for causal LM data, from a tokenizer.json file or a directory holding
    /// tokenizer.json or vocab.json + merges.txt. `<|endoftext|>` ends every document and pads; GPT-2
    /// has no other special token, so the BERT ids are -1.
    public init(byteLevelBPE path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ByteLevelBPEError.invalid(
                path: path, reason: "does not exist; give a tokenizer.json file or a directory holding tokenizer.json or vocab.json and merges.txt")
        }
        let sources: [String]
        if isDirectory.boolValue {
            sources = try ByteLevelBPE.files(inDirectory: path)
        } else if [ByteLevelBPE.vocabularyFile, ByteLevelBPE.mergesFile].contains((path as NSString).lastPathComponent) {
            throw ByteLevelBPEError.invalid(
                path: path, reason: "is half of a vocab.json + merges.txt pair; give the directory holding both")
        } else {
            sources = [path]
        }
        let bpe = sources.count == 1
            ? try ByteLevelBPE.load(tokenizerJSON: sources[0])
            : try ByteLevelBPE.load(vocabularyJSON: sources[0], merges: sources[1])
        guard let endOfText = bpe.id(ofSpelled: "<|endoftext|>") else {
            throw ByteLevelBPEError.invalid(
                path: sources[0], reason: "has no <|endoftext|> token (neither an added token nor a vocabulary entry); causal LM "
                    + "data ends every document with it: add it to the tokenizer (in transformers, "
                    + "tokenizer.add_special_tokens({\"eos_token\": \"<|endoftext|>\"}) then save_pretrained) or use GPT-2's")
        }
        let names = sources.count == 1
            ? [ByteLevelBPE.tokenizerFile] : [ByteLevelBPE.vocabularyFile, ByteLevelBPE.mergesFile]
        self.init(
            files: zip(sources, names).map { File(source: $0, name: $1) }, fingerprint: bpe.fingerprint,
            vocabularySize: bpe.idCount, lowercase: false, padID: endOfText, unknownID: -1, classifierID: -1,
            separatorID: -1, maskID: -1, endOfTextID: endOfText, isContinuation: [],
            encode: { bpe.encode($0) })
    }
}
