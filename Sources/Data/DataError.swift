import Foundation
import Kernels

/// Errors of the pretraining data pipeline. Every message names the file (and line, where there is
/// one) and says what the user can do about it.
public enum DataError: Error, LocalizedError, CustomStringConvertible, Equatable {
    /// A path given as input does not exist or cannot be read.
    case unreadableInput(path: String, reason: String)
    /// A line of a corpus file is not valid UTF-8.
    case invalidUTF8(path: String, line: Int)
    /// The inputs contain no text at all.
    case emptyCorpus(paths: [String])
    /// Next-sentence prediction needs a second document to draw random segments from.
    case tooFewDocuments(paths: [String], documentCount: Int)
    /// A shard file is shorter than its header says, or not a shard at all.
    case invalidShard(path: String, reason: String)
    /// A shard's content does not match the checksum in its header.
    case checksumMismatch(path: String)
    /// A record of a shard holds a value the reader cannot use (an id outside the vocabulary, an
    /// unknown NSP label, a length that does not fit).
    case invalidRecord(path: String, record: Int, reason: String)
    /// The data directory was prepared with a different vocabulary.
    case vocabularyMismatch(path: String, expected: String, found: String)
    /// `manifest.json` is missing or unreadable.
    case invalidManifest(path: String, reason: String)
    /// A setting is out of range.
    case invalidSetting(name: String, reason: String)
    /// Writing the output failed.
    case writeFailed(path: String, reason: String)

    /// One line: names quoted from a damaged file may hold line breaks, which are shown escaped.
    public var description: String { text.escapingLineBreaks }

    private var text: String {
        switch self {
        case let .unreadableInput(path, reason):
            return "cannot read input '\(path)': \(reason)"
        case let .invalidUTF8(path, line):
            return "\(path):\(line): invalid UTF-8; convert the file to UTF-8 (e.g. with iconv) or remove it"
        case let .emptyCorpus(paths):
            return "the corpus \(paths.map { "'\($0)'" }.joined(separator: ", ")) contains no text; "
                + "give files with at least one non-blank line"
        case let .tooFewDocuments(paths, count):
            return "the corpus \(paths.map { "'\($0)'" }.joined(separator: ", ")) has \(count) document(s); "
                + "next-sentence prediction draws random segments from other documents, so it needs at "
                + "least 2 (separate documents by a blank line, add files, or pass --nsp none)"
        case let .invalidShard(path, reason):
            return "'\(path)' is not a valid SwiftBERT shard: \(reason); run `swiftbert prepare` again"
        case let .checksumMismatch(path):
            return "'\(path)': checksum mismatch, the shard is corrupt (its content is not what was written); "
                + "restore the file from a copy or run `swiftbert prepare` again"
        case let .invalidRecord(path, record, reason):
            return "'\(path)': record \(record): \(reason); the shard is damaged or was not written by "
                + "`swiftbert prepare`: restore the file from a copy or run `swiftbert prepare` again"
        case let .vocabularyMismatch(path, expected, found):
            return "'\(path)' was prepared with vocabulary \(found.prefix(16))..., but the vocabulary in use is "
                + "\(expected.prefix(16))...; prepare the data again with this vocabulary or use the one it was made with"
        case let .invalidManifest(path, reason):
            return "'\(path)': \(reason); is this a directory written by `swiftbert prepare`?"
        case let .invalidSetting(name, reason):
            return "\(name): \(reason)"
        case let .writeFailed(path, reason):
            return "cannot write '\(path)': \(reason)"
        }
    }

    public var errorDescription: String? { description }
}
