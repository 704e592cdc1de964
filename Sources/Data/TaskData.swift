import Foundation
import Kernels

// Labelled examples for fine-tuning, as the readers in TaskReaders.swift produce them. Every example
// remembers the line of its file it starts on, so that later checks can name it.

/// How a sequence's label is read, named as Hugging Face's `problem_type` names it.
public enum LabelKind: String, Sendable, CaseIterable {
    /// One class per sequence: a label name, or an integer class index.
    case singleLabel = "single_label_classification"
    /// Any number of classes per sequence: a JSON array, or the names joined by a separator.
    case multiLabel = "multi_label_classification"
    /// One number per sequence.
    case regression
}

/// The label of one sequence (or of one multiple-choice question).
public enum TaskLabel: Equatable, Sendable {
    /// Index into the dataset's label names.
    case classIndex(Int32)
    /// Indices into the label names, in the order written, without repeats.
    case classIndices([Int32])
    /// A regression target.
    case value(Float)
}

/// One text, or a pair of texts, with its label (nil when the file has none and none is required).
public struct TextExample: Equatable, Sendable {
    /// 1-based line of the file the example starts on.
    public var line: Int
    public var text: String
    public var pair: String?
    public var label: TaskLabel?

    public init(line: Int, text: String, pair: String? = nil, label: TaskLabel? = nil) {
        self.line = line
        self.text = text
        self.pair = pair
        self.label = label
    }
}

/// A sentence split into words, with one tag index per word (empty when unlabelled).
public struct TaggedExample: Equatable, Sendable {
    public var line: Int
    public var words: [String]
    /// Indices into the dataset's label names, one per word; schemes (IOB1/IOB2/BIOES) as read.
    public var tags: [Int32]

    public init(line: Int, words: [String], tags: [Int32]) {
        self.line = line
        self.words = words
        self.tags = tags
    }
}

/// A multiple-choice question as Hugging Face's run_swag encodes it: each choice is the pair
/// (`context`, `questionPrefix` + " " + ending).
public struct ChoiceExample: Equatable, Sendable {
    public var line: Int
    public var context: String
    /// SWAG's `sent2`, the start of every ending; empty for `question`/`choices` data.
    public var questionPrefix: String
    public var endings: [String]
    /// Index of the right ending, nil when unlabelled.
    public var label: Int32?

    public init(line: Int, context: String, questionPrefix: String, endings: [String], label: Int32?) {
        self.line = line
        self.context = context
        self.questionPrefix = questionPrefix
        self.endings = endings
        self.label = label
    }

    /// The second text of choice `index`: `questionPrefix ending`, or the ending alone.
    public func secondText(_ index: Int) -> String {
        questionPrefix.isEmpty ? endings[index] : questionPrefix + " " + endings[index]
    }
}

/// The examples of one file and the label names their indices refer to.
public struct TaskDataset<Example: Sendable>: Sendable {
    public var path: String
    public var examples: [Example]
    /// The label (or tag) names, index = class id: the caller's list, or the names in order of first
    /// appearance, or "0"..."n" when every label is an integer (see `LabelResolver`).
    public var labelNames: [String]
}

// MARK: - Errors

/// A problem with a labelled data file: one message naming the file, the line and the field, and
/// what to do about it.
public struct TaskDataError: Error, LocalizedError, CustomStringConvertible, Equatable {
    public let path: String
    /// 1-based line, nil for problems of the whole file.
    public let line: Int?
    /// The field, column or key involved, if any.
    public let field: String?
    /// What is wrong and what to do.
    public let message: String

    public init(path: String, line: Int? = nil, field: String? = nil, _ message: String) {
        self.path = path
        self.line = line
        self.field = field
        self.message = message
    }

    public var description: String {
        var text = line.map { "\(path):\($0): " } ?? "\(path): "
        if let field { text += "field '\(field)': " }
        return (text + message).escapingLineBreaks
    }

    public var errorDescription: String? { description }
}

// MARK: - Labels

/// A label as written in a file, before it is turned into a class index.
public enum RawLabel: Equatable, Sendable {
    /// A string: a label name, or (when it spells a non-negative integer) possibly an index.
    case name(String)
    /// A JSON integer: a class index.
    case index(Int)

    /// Whether the label reads as a class index (a JSON integer, or a string of decimal digits).
    var integerValue: Int? {
        switch self {
        case let .index(value): return value
        case let .name(text):
            guard !text.isEmpty, text.count <= 9, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  text == "0" || !text.hasPrefix("0") else { return nil }
            return Int(text)
        }
    }

    var text: String {
        switch self {
        case let .name(text): return text
        case let .index(value): return String(value)
        }
    }
}

/// Turns the labels of a file into class indices, after reading them all:
/// - with a label list from the caller, a label is a name of the list, or else an integer index
///   into it; anything else is an error naming file and line;
/// - without one, when every label is an integer (JSON numbers or digit strings, as in the CSV
///   exports of Hugging Face datasets) the labels are indices and the names are "0"..."max";
/// - otherwise the names are kept in order of first appearance.
public struct LabelResolver {
    public let path: String
    public let givenNames: [String]?
    private var labels: [(raw: RawLabel, line: Int, field: String)] = []

    public init(path: String, names: [String]?) {
        self.path = path
        givenNames = names
    }

    /// Records a label and returns its slot, to be looked up in `resolve()`'s result.
    public mutating func add(_ raw: RawLabel, line: Int, field: String) -> Int {
        labels.append((raw, line, field))
        return labels.count - 1
    }

    /// The names and the class index of every label in the order added.
    public func resolve() throws -> (names: [String], indices: [Int32]) {
        if let names = givenNames {
            var byName: [String: Int32] = [:]
            for (index, name) in names.enumerated() where byName[name] == nil { byName[name] = Int32(index) }
            let indices = try labels.map { label -> Int32 in
                if case let .name(text) = label.raw, let index = byName[text] { return index }
                if let value = label.raw.integerValue, value < names.count { return Int32(value) }
                throw TaskDataError(
                    path: path, line: label.line, field: label.field,
                    "label '\(label.raw.text)' is not in the label list (\(Self.listed(names))); "
                        + "add it to the list or correct the line")
            }
            return (names, indices)
        }
        if !labels.isEmpty, labels.allSatisfy({ $0.raw.integerValue != nil }) {
            let indices = labels.map { Int32($0.raw.integerValue!) }
            let count = Int(indices.max()!) + 1
            return ((0..<count).map(String.init), indices)
        }
        var names: [String] = []
        var byName: [String: Int32] = [:]
        let indices = try labels.map { label -> Int32 in
            if case .index = label.raw {
                throw TaskDataError(
                    path: path, line: label.line, field: label.field,
                    "the label is the number \(label.raw.text), but other labels of the file are names; "
                        + "write every label as a name, or every label as a class index with a label list")
            }
            let name = label.raw.text
            if let index = byName[name] { return index }
            byName[name] = Int32(names.count)
            names.append(name)
            return Int32(names.count - 1)
        }
        return (names, indices)
    }

    private static func listed(_ names: [String]) -> String {
        let shown = names.prefix(20).map { "'\($0)'" }.joined(separator: ", ")
        return names.count > 20 ? shown + ", ... (\(names.count) names)" : shown
    }
}

// MARK: - People's Daily entities

/// Entity tags from the PKU part-of-speech tags of People's Daily 1998: `nr` person, `ns` place,
/// `nt` organisation become IOB2 `B-PER`/`I-PER`, `B-LOC`, `B-ORG`; every other tag becomes `O`.
///
/// Consecutive `nr` tokens form one person (the corpus writes a surname and a given name as two
/// tokens, `江/nr 泽民/nr`, which is one name: `B-PER I-PER`). Places and organisations are single
/// tokens in this corpus, so consecutive `ns` or `nt` tokens are separate entities.
public func peoplesDailyEntityTags(_ posTags: [String]) -> [String] {
    var result: [String] = []
    result.reserveCapacity(posTags.count)
    for (index, tag) in posTags.enumerated() {
        switch tag {
        case "nr": result.append(index > 0 && posTags[index - 1] == "nr" ? "I-PER" : "B-PER")
        case "ns": result.append("B-LOC")
        case "nt": result.append("B-ORG")
        default: result.append("O")
        }
    }
    return result
}
