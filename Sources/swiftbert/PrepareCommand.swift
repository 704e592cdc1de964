import ArgumentParser
import Data
import Foundation

/// `swiftbert prepare`: corpus files -> pretraining shards (Google's create_pretraining_data.py,
/// streaming, on all cores).
struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn text corpora into pretraining shards (NSP pairs, unmasked; masking happens at load time).",
        discussion: """
            Input formats: 'google' is one sentence a line with a blank line between documents; \
            'documents' is one document a file (running text, split into sentences); 'auto' reads \
            directories as 'documents' and files named directly as 'google'.
            """)

    @Option(name: .long, parsing: .upToNextOption, help: "Corpus files or directories.")
    var input: [String] = []

    @Option(help: "BERT vocab.txt.")
    var vocab: String

    @Option(help: "Output directory (written under a temporary name, renamed at the end).")
    var out: String

    @Option(help: "Input format: auto, google or documents.")
    var format: String = CorpusFormat.auto.rawValue

    @Flag(help: "Keep case (for cased vocabularies); the default lowercases and strips accents.")
    var cased = false

    @Option(help: "Sequence length, [CLS] and [SEP] included.")
    var maxSeqLength: Int = 128

    @Option(help: "Probability of a shorter target length.")
    var shortSeqProb: Double = 0.1

    @Option(help: "Times each document is turned into instances.")
    var dupeFactor: Int = 10

    @Option(help: "Next sentence prediction: binary, three-way or none.")
    var nsp: String = NextSentenceMode.binary.rawValue

    @Option(help: "Share of tokens to predict (applied at load time).")
    var maskedLmProb: Double = 0.15

    @Option(help: "At most this many predictions per sequence.")
    var maxPredictionsPerSeq: Int = 20

    @Flag(help: "Mask all WordPieces of a word together.")
    var wholeWordMasking = false

    @Option(help: "Seed of every random choice.")
    var seed: UInt64 = 12345

    @Option(help: "Share of documents held out for validation.")
    var validationFraction: Double = 0.01

    @Option(help: ArgumentHelp(
        "Memory bound for text, tokens and instances in flight, in MB.",
        discussion: "Text is processed in chunks of about limit / (4 + dupe factor); random-next segments come from the current and the previous chunk."))
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
        if NextSentenceMode(rawValue: nsp) == nil {
            throw ValidationError("--nsp must be one of \(NextSentenceMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        var settings = PrepareSettings(inputs: input, outputDirectory: out)
        settings.format = CorpusFormat(rawValue: format)!
        settings.instances = InstanceSettings(
            maxSequenceLength: maxSeqLength, shortSequenceProbability: shortSeqProb,
            nextSentenceMode: NextSentenceMode(rawValue: nsp)!)
        settings.masking = MaskingSettings(
            maskedLMProbability: maskedLmProb, maxPredictionsPerSequence: maxPredictionsPerSeq,
            wholeWordMasking: wholeWordMasking)
        settings.dupeFactor = dupeFactor
        settings.seed = seed
        settings.validationFraction = validationFraction
        settings.memoryLimitBytes = memoryLimit << 20
        settings.shardBytes = shardSize << 20
        if let threads { settings.workerCount = threads }
        settings.overwrite = overwrite
        try settings.validate()

        let tokenizer = try PreparationTokenizer(vocabularyFile: vocab, lowercase: !cased)
        let start = Date()
        let manifest = try Preparer(settings: settings, tokenizer: tokenizer).run { progress in
            let seconds = Date().timeIntervalSince(start)
            let message = String(
                format: "\r%.1f MB read, %d documents, %d + %d instances, %.2f MB/s",
                Double(progress.bytesRead) / 1e6, progress.documents, progress.trainInstances,
                progress.validationInstances, Double(progress.bytesRead) / 1e6 / max(seconds, 1e-9))
            FileHandle.standardError.write(message.data(using: .utf8)!)
        }
        let seconds = Date().timeIntervalSince(start)
        FileHandle.standardError.write("\n".data(using: .utf8)!)
        print(String(
            format: "%@: %d documents, %d sentences, %d tokens (%.1f MB) -> %d train + %d validation instances in %.1f s (%.2f MB/s)",
            out, manifest.corpus.documents, manifest.corpus.sentences, manifest.corpus.tokens,
            Double(manifest.corpus.bytes) / 1e6, manifest.train.instances, manifest.validation.instances,
            seconds, Double(manifest.corpus.bytes) / 1e6 / max(seconds, 1e-9)))
    }
}
