import ArgumentParser
import Data
import Foundation

/// `swiftbert vocab`: learns a WordPiece vocabulary, or with `--bpe` a GPT-2 byte-level BPE tokenizer,
/// from corpus files.
struct Vocab: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Learn a WordPiece vocabulary (vocab.txt) or a byte-level BPE tokenizer (--bpe) from text files.",
        discussion: """
            WordPiece (the default): --out is a vocab.txt. Ids 0-103 are laid out as in \
            bert-base-uncased: [PAD]=0, [unused0..98]=1-99, [UNK]=100, [CLS]=101, [SEP]=102, \
            [MASK]=103; then every character of the corpus (alone and as a "##" continuation), then \
            learned merges.

            --bpe: GPT-2's byte-level BPE, learned as Hugging Face tokenizers' \
            ByteLevelBPETokenizer.train(files) learns it (same vocabulary and merges): <|endoftext|>=0, \
            the 256 byte tokens, then merges of the most frequent pairs of GPT-2's pre-tokens, counted \
            line by line. --out is a directory that receives tokenizer.json, vocab.json, merges.txt and \
            tokenizer_config.json (transformers loads it with AutoTokenizer.from_pretrained); it is \
            written whole or not at all.

            The same input gives the same files.
            """)

    @Option(name: .long, parsing: .upToNextOption,
            help: "Corpus files or directories (directories: every file inside, recursively, in path order; hidden ones skipped).")
    var input: [String] = []

    @Option(help: "Vocabulary size: with the 104 reserved tokens (WordPiece), or with <|endoftext|> and the 256 byte tokens (--bpe).")
    var size: Int

    @Option(help: "Output: vocab.txt (WordPiece), or a directory (--bpe).")
    var out: String

    @Flag(help: "Learn a GPT-2 byte-level BPE tokenizer instead of a WordPiece vocabulary.")
    var bpe = false

    @Flag(help: "Keep case and accents (WordPiece, for a cased model); the default lowercases and strips accents. Byte-level BPE always keeps the text as it is.")
    var cased = false

    @Option(help: "Never merge a pair seen fewer times than this.")
    var minFrequency: Int = 2

    @Flag(help: "--bpe: replace --out if it exists and is not empty (a WordPiece vocab.txt is always replaced).")
    var overwrite = false

    func validate() throws {
        if input.isEmpty { throw ValidationError("give at least one --input file or directory") }
        if bpe {
            if cased { throw ValidationError("--cased is for WordPiece; byte-level BPE (--bpe) never changes case") }
            let minimum = 1 + 256
            if size <= minimum {
                throw ValidationError("--size must exceed \(minimum) with --bpe (<|endoftext|> and the 256 byte tokens); "
                    + "GPT-2 has 50257")
            }
        } else if size <= VocabularyBuilder.reservedTokens.count {
            throw ValidationError("--size must exceed the \(VocabularyBuilder.reservedTokens.count) reserved tokens "
                + "(BERT's vocabularies have 30522)")
        }
        if minFrequency < 1 { throw ValidationError("--min-frequency must be at least 1") }
    }

    func run() throws {
        if bpe { return try runBPE() }
        var builder = VocabularyBuilder(lowercase: !cased, minimumPairFrequency: minFrequency)
        let files = try Self.files(in: input)
        for file in files { try builder.add(contentsOfFile: file) }
        let vocabulary = try builder.build(size: size)
        try vocabulary.write(toFile: out)
        let note = vocabulary.count < size ? " (no pair left seen \(minFrequency)+ times)" : ""
        print("wrote \(vocabulary.count) tokens\(note) to \(out), learned from \(files.count) "
            + "files, \(builder.distinctWordCount) distinct words; fingerprint \(vocabulary.fingerprint)")
    }

    private func runBPE() throws {
        try ByteLevelBPE.checkOutput(out, overwrite: overwrite)
        let files = try Self.files(in: input)
        var trainer = ByteLevelBPETrainer(minimumPairFrequency: minFrequency)
        let status = StatusLine()
        try trainer.add(contentsOfFiles: files) { bytes, total in
            status.show(String(format: "counted %.0f/%.0f MB", Double(bytes) / 1e6, Double(total) / 1e6))
        }
        status.finish()
        let merges = size - 257
        let model = try trainer.learn(vocabularySize: size) { done in
            if done % 100 == 0 || done == merges { status.show("merged \(done)/\(merges) pairs") }
        }
        status.finish()
        try ByteLevelBPE.write(model, to: out, overwrite: overwrite)
        let note = model.tokens.count < size ? " (no pair left seen \(minFrequency)+ times)" : ""
        print("wrote \(model.tokens.count) tokens and \(model.merges.count) merges\(note) to \(out), learned from "
            + "\(files.count) files, \(trainer.distinctWordCount) distinct words")
    }

    /// The files named, and those under the directories named, each directory's in path order.
    static func files(in paths: [String]) throws -> [String] {
        var files: [String] = []
        let manager = FileManager.default
        for path in paths {
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw VocabularyBuilderError.unreadable(path: path, reason: "no such file or directory")
            }
            if !isDirectory.boolValue {
                files.append(path)
                continue
            }
            guard let enumerator = manager.enumerator(atPath: path) else {
                throw VocabularyBuilderError.unreadable(path: path, reason: "cannot list the directory")
            }
            var found: [String] = []
            while let relative = enumerator.nextObject() as? String {
                let full = (path as NSString).appendingPathComponent(relative)
                var isSubdirectory: ObjCBool = false
                if manager.fileExists(atPath: full, isDirectory: &isSubdirectory), !isSubdirectory.boolValue,
                   !relative.split(separator: "/").contains(where: { $0.hasPrefix(".") }) {
                    found.append(full)
                }
            }
            files += found.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        }
        return files
    }
}

/// One line on standard error, rewritten in place, when standard error is a terminal: progress for a
/// corpus that takes a while.
private final class StatusLine: @unchecked Sendable {
    private let enabled = isatty(STDERR_FILENO) == 1
    private let start = Date()
    private let lock = NSLock()
    private var shown = false
    private var lastWrite = Date.distantPast

    func show(_ text: String) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        // A second in, so a small corpus prints nothing; then at most ten times a second.
        let now = Date()
        guard now.timeIntervalSince(start) > 1, now.timeIntervalSince(lastWrite) > 0.1 else { return }
        lastWrite = now
        shown = true
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + text).utf8))
    }

    /// Ends the line, if one was shown.
    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if shown { FileHandle.standardError.write(Data("\n".utf8)) }
        shown = false
    }
}
