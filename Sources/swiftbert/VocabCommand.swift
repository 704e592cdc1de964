import ArgumentParser
import Data
import Foundation

/// `swiftbert vocab`: learns a WordPiece vocabulary from corpus files.
struct Vocab: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Learn a WordPiece vocabulary (vocab.txt) from text files.",
        discussion: """
            Ids 0-103 are laid out as in bert-base-uncased: [PAD]=0, [unused0..98]=1-99, [UNK]=100, \
            [CLS]=101, [SEP]=102, [MASK]=103; then every character of the corpus (alone and as a \
            "##" continuation), then learned merges. The same input gives the same file.
            """)

    @Option(name: .long, parsing: .upToNextOption,
            help: "Corpus files or directories (directories: every file inside, recursively, in path order; hidden ones skipped).")
    var input: [String] = []

    @Option(help: "Vocabulary size, the 104 reserved tokens included.")
    var size: Int

    @Option(help: "Output vocab.txt.")
    var out: String

    @Flag(help: "Keep case and accents (for a cased model); the default lowercases and strips accents.")
    var cased = false

    @Option(help: "Never merge a pair seen fewer times than this.")
    var minFrequency: Int = 2

    func validate() throws {
        if input.isEmpty { throw ValidationError("give at least one --input file or directory") }
        if size <= VocabularyBuilder.reservedTokens.count {
            throw ValidationError("--size must exceed the \(VocabularyBuilder.reservedTokens.count) reserved tokens "
                + "(BERT's vocabularies have 30522)")
        }
        if minFrequency < 1 { throw ValidationError("--min-frequency must be at least 1") }
    }

    func run() throws {
        var builder = VocabularyBuilder(lowercase: !cased, minimumPairFrequency: minFrequency)
        let files = try Self.files(in: input)
        for file in files { try builder.add(contentsOfFile: file) }
        let vocabulary = try builder.build(size: size)
        try vocabulary.write(toFile: out)
        let note = vocabulary.count < size ? " (no pair left seen \(minFrequency)+ times)" : ""
        print("wrote \(vocabulary.count) tokens\(note) to \(out), learned from \(files.count) "
            + "files, \(builder.distinctWordCount) distinct words; fingerprint \(vocabulary.fingerprint)")
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
