import ArgumentParser
import Data
import Foundation

/// `swiftbert prepare`: corpus files -> pretraining shards, streaming, on all cores: BERT instances
/// (Google's create_pretraining_data.py) or packed causal LM sequences (GPT-2).
struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn text corpora into pretraining shards: BERT MLM/NSP instances or packed causal LM sequences.",
        discussion: """
            --objective mlm (the default) makes BERT instances with a WordPiece --vocab: NSP pairs, \
            unmasked (masking happens at load time).

            --objective causal_lm makes GPT-2 style data with a byte-level BPE --tokenizer (a \
            tokenizer.json, or a directory holding tokenizer.json or vocab.json and merges.txt, which \
            must have <|endoftext|>): each document is encoded whole and followed by <|endoftext|>; \
            per split the documents' tokens are concatenated in order and cut into sequences of \
            exactly --max-seq-length tokens (a sequence may span documents), the rest of a split \
            becoming one shorter sequence. The tokenizer files are copied into the output.

            Input formats: 'google' is one sentence a line with a blank line between documents (a \
            causal LM reads its lines joined by line breaks); 'documents' is one document a file \
            (running text, split into sentences for BERT, read as is for a causal LM); 'auto' reads \
            directories as 'documents' and files named directly as 'google'.
            """)

    @Option(help: "What the data trains: mlm (BERT) or causal_lm (GPT-2).")
    var objective: String = PretrainingObjective.mlm.rawValue

    @Option(name: .long, parsing: .upToNextOption, help: "Corpus files or directories.")
    var input: [String] = []

    @Option(help: "BERT vocab.txt (mlm; required).")
    var vocab: String?

    @Option(help: "Byte-level BPE tokenizer (causal_lm; required): tokenizer.json, or a directory with tokenizer.json or vocab.json + merges.txt.")
    var tokenizer: String?

    @Option(help: "Output directory (written under a temporary name, renamed at the end).")
    var out: String

    @Option(help: "Input format: auto, google or documents.")
    var format: String = CorpusFormat.auto.rawValue

    @Flag(help: "Keep case (mlm, for cased vocabularies); the default lowercases and strips accents.")
    var cased = false

    @Option(help: "Sequence length: mlm, [CLS] and [SEP] included (default 128); causal_lm, tokens a sequence (required).")
    var maxSeqLength: Int?

    @Option(help: "Probability of a shorter target length (mlm; default 0.1).")
    var shortSeqProb: Double?

    @Option(help: "Times each document is turned into instances (mlm; default 10).")
    var dupeFactor: Int?

    @Option(help: "Next sentence prediction: binary, three-way or none (mlm; default binary).")
    var nsp: String?

    @Option(help: "Share of tokens to predict, applied at load time (mlm; default 0.15).")
    var maskedLmProb: Double?

    @Option(help: "At most this many predictions per sequence (mlm; default 20).")
    var maxPredictionsPerSeq: Int?

    @Flag(help: "Mask all WordPieces of a word together (mlm).")
    var wholeWordMasking = false

    @Option(help: "Seed of every random choice.")
    var seed: UInt64 = 12345

    @Option(help: "Share of documents held out for validation.")
    var validationFraction: Double = 0.01

    @Option(help: ArgumentHelp(
        "Memory bound for text, tokens and instances in flight, in MB.",
        discussion: "Text is processed in chunks of about limit / (4 + dupe factor) (mlm) or limit / 4 (causal_lm); random-next segments come from the current and the previous chunk."))
    var memoryLimit: Int = 512

    @Option(help: "Shard size in MB.")
    var shardSize: Int = 64

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    @Flag(help: "Replace the output directory if it exists.")
    var overwrite = false

    func validate() throws {
        if input.isEmpty { throw ValidationError("give at least one --input file or directory") }
        if CorpusFormat(rawValue: format) == nil {
            throw ValidationError("--format must be one of \(CorpusFormat.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let objective = PretrainingObjective(rawValue: objective) else {
            throw ValidationError("--objective must be one of \(PretrainingObjective.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        switch objective {
        case .mlm:
            if tokenizer != nil {
                throw ValidationError("--tokenizer is for --objective causal_lm; BERT data (mlm) takes a WordPiece --vocab")
            }
            if vocab == nil { throw ValidationError("--vocab is required with --objective mlm (a BERT vocab.txt)") }
            if let nsp, NextSentenceMode(rawValue: nsp) == nil {
                throw ValidationError("--nsp must be one of \(NextSentenceMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        case .causalLM:
            let mlmOnly: [(name: String, given: Bool)] = [
                ("--vocab", vocab != nil), ("--cased", cased), ("--short-seq-prob", shortSeqProb != nil),
                ("--dupe-factor", dupeFactor != nil), ("--nsp", nsp != nil), ("--masked-lm-prob", maskedLmProb != nil),
                ("--max-predictions-per-seq", maxPredictionsPerSeq != nil), ("--whole-word-masking", wholeWordMasking),
            ]
            if let option = mlmOnly.first(where: \.given) {
                throw ValidationError(
                    "\(option.name) is an --objective mlm option; causal_lm data has no WordPiece vocabulary, NSP pairs, "
                        + "duplicates or masking: remove \(option.name), or use --objective mlm")
            }
            if tokenizer == nil {
                throw ValidationError(
                    "--tokenizer is required with --objective causal_lm (a tokenizer.json, or a directory holding "
                        + "tokenizer.json or vocab.json and merges.txt)")
            }
            if maxSeqLength == nil {
                throw ValidationError("--max-seq-length is required with --objective causal_lm: the model's context length (1024 for GPT-2)")
            }
        }
    }

    func run() throws {
        let objective = PretrainingObjective(rawValue: objective)!
        var settings = PrepareSettings(inputs: input, outputDirectory: out)
        settings.objective = objective
        settings.format = CorpusFormat(rawValue: format)!
        switch objective {
        case .mlm:
            settings.instances = InstanceSettings(
                maxSequenceLength: maxSeqLength ?? 128, shortSequenceProbability: shortSeqProb ?? 0.1,
                nextSentenceMode: nsp.map { NextSentenceMode(rawValue: $0)! } ?? .binary)
            settings.masking = MaskingSettings(
                maskedLMProbability: maskedLmProb ?? 0.15, maxPredictionsPerSequence: maxPredictionsPerSeq ?? 20,
                wholeWordMasking: wholeWordMasking)
            settings.dupeFactor = dupeFactor ?? 10
        case .causalLM:
            settings.instances = InstanceSettings(
                maxSequenceLength: maxSeqLength!, shortSequenceProbability: 0, nextSentenceMode: .none)
            settings.dupeFactor = 1
        }
        settings.seed = seed
        settings.validationFraction = validationFraction
        settings.memoryLimitBytes = memoryLimit << 20
        settings.shardBytes = shardSize << 20
        if let threads { settings.workerCount = threads }
        settings.overwrite = overwrite
        try settings.validate()

        let preparationTokenizer = objective == .mlm
            ? try PreparationTokenizer(vocabularyFile: vocab!, lowercase: !cased)
            : try PreparationTokenizer(byteLevelBPE: tokenizer!)
        let unit = objective == .mlm ? "instances" : "sequences"
        let start = Date()
        // A progress line rewritten in place on a terminal; a log gets the summary alone.
        let showsProgress = isatty(STDERR_FILENO) != 0
        let manifest = try Preparer(settings: settings, tokenizer: preparationTokenizer).run { progress in
            guard showsProgress else { return }
            let seconds = Date().timeIntervalSince(start)
            let message = String(
                format: "\r%.1f MB read, %d documents, %d + %d %@, %.2f MB/s",
                Double(progress.bytesRead) / 1e6, progress.documents, progress.trainInstances,
                progress.validationInstances, unit, Double(progress.bytesRead) / 1e6 / max(seconds, 1e-9))
            FileHandle.standardError.write(message.data(using: .utf8)!)
        }
        let seconds = Date().timeIntervalSince(start)
        if showsProgress { FileHandle.standardError.write("\n".data(using: .utf8)!) }
        let speed = String(format: "in %.1f s (%.2f MB/s)", seconds, Double(manifest.corpus.bytes) / 1e6 / max(seconds, 1e-9))
        switch objective {
        case .mlm:
            print(String(
                format: "%@: %d documents, %d sentences, %d tokens (%.1f MB) -> %d train + %d validation instances %@",
                out, manifest.corpus.documents, manifest.corpus.sentences, manifest.corpus.tokens,
                Double(manifest.corpus.bytes) / 1e6, manifest.train.instances, manifest.validation.instances, speed))
        case .causalLM:
            print(String(
                format: "%@: %d documents, %d tokens (%.1f MB) -> %d train + %d validation sequences of %d tokens "
                    + "(%d + %d tokens, <|endoftext|> included) %@",
                out, manifest.corpus.documents, manifest.corpus.tokens, Double(manifest.corpus.bytes) / 1e6,
                manifest.train.instances, manifest.validation.instances, manifest.instances.maxSequenceLength,
                manifest.train.tokens, manifest.validation.tokens, speed))
        }
    }
}
