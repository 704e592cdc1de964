import Foundation

// Readers of labelled data: CSV and TSV with a header, JSON lines, CoNLL columns, `word/TAG` lines,
// headerless `label<TAB>text` and one-text-per-line files. The defaults are the field names of
// Hugging Face datasets; every malformed input is one `TaskDataError` naming file, line and field.

/// The layout of a labelled data file.
public enum TaskFileFormat: Equatable, Sendable {
    /// Comma-separated with a header row, RFC 4180 quoting (quoted fields, `""`, line breaks inside quotes).
    case csv
    /// Tab-separated with a header row, no quoting.
    case tsv
    /// One JSON object a line (`.jsonl`, and `.json` as `datasets`' `to_json` writes it).
    case jsonLines
    /// `label<TAB>text` a line, no header (20 Newsgroups).
    case labelTabText
    /// One text a line, each labelled `label` (a file per class, as zh-sentiment's pos.txt/neg.txt);
    /// lines of whitespace only are skipped.
    case lines(label: String)
    /// Token in the first column, tag in the last, whitespace-separated; a blank line ends a sentence;
    /// `-DOCSTART-` lines are skipped.
    case conll
    /// One sentence a line of whitespace-separated `word/TAG` tokens, the tag after the last `/`
    /// (People's Daily 1998). `dropsFirstToken` skips a leading id token such as `19980101-01-001-001/m`.
    case wordSlashTag(dropsFirstToken: Bool)

    /// The format of `path` from its extension (`.csv`, `.tsv`, `.jsonl`, `.json`), or nil.
    public static func inferred(fromPath path: String) -> TaskFileFormat? {
        switch URL(fileURLWithPath: path).pathExtension.lowercased() {
        case "csv": return .csv
        case "tsv": return .tsv
        case "jsonl", "json", "ndjson": return .jsonLines
        default: return nil
        }
    }
}

/// Where the texts and labels of sequence-classification data are.
public struct TextTaskOptions: Sendable {
    /// Nil: from the file's extension.
    public var format: TaskFileFormat?
    /// Nil: the first of `text`, `sentence1`+`sentence2`, `question`+`sentence`, `premise`+`hypothesis`
    /// (pairs first) that the file has.
    public var textField: String?
    /// The second text of pairs; used only with `textField` given.
    public var pairField: String?
    public var labelField = "label"
    public var labelKind = LabelKind.singleLabel
    /// Nil: names read from the data (see `LabelResolver`).
    public var labelNames: [String]?
    /// Joins the names of multi-label labels written as one string (`"sports,politics"`).
    public var labelSeparator: Character = ","
    /// False for data to predict on: a missing label field gives a nil label.
    public var requiresLabels = true

    public init(format: TaskFileFormat? = nil, textField: String? = nil, pairField: String? = nil) {
        self.format = format
        self.textField = textField
        self.pairField = pairField
    }
}

/// Where the words and tags of token-classification data are.
public struct TaggedTaskOptions: Sendable {
    public var format: TaskFileFormat?
    public var tokensField = "tokens"
    public var tagsField = "ner_tags"
    public var labelNames: [String]?
    public var requiresLabels = true
    /// Replace People's Daily POS tags by IOB2 entity tags (`peoplesDailyEntityTags`).
    public var peoplesDailyEntities = false

    public init(format: TaskFileFormat? = nil) { self.format = format }
}

/// Where the parts of multiple-choice data are. Nil fields: SWAG's `sent1`, `sent2`, `ending0`...
/// when the file has `sent1`, else `question` and `choices` (an array of strings, or an object with a
/// `text` array as in ARC and CommonsenseQA).
public struct ChoiceTaskOptions: Sendable {
    public var format: TaskFileFormat?
    public var contextField: String?
    public var questionPrefixField: String?
    public var endingFields: [String]?
    public var choicesField: String?
    public var labelField = "label"
    public var requiresLabels = true

    public init(format: TaskFileFormat? = nil) { self.format = format }
}

public enum TaskReader {
    // MARK: - Sequence classification

    public static func readTextExamples(path: String, options: TextTaskOptions = TextTaskOptions()) throws
        -> TaskDataset<TextExample>
    {
        let file = try TaskFile(path: path)
        let format = try resolvedFormat(options.format, path)
        var resolver = LabelResolver(path: path, names: options.labelNames)
        var examples: [TextExample] = []
        var slots: [[Int]] = []
        func addLabel(_ value: JSONValue?, line: Int) throws -> TaskLabel? {
            guard let value, value != .null else {
                if options.requiresLabels {
                    throw TaskDataError(path: path, line: line, field: options.labelField,
                                        "missing label; give every line a label (or name the label field)")
                }
                slots.append([])
                return nil
            }
            let (label, added) = try readLabel(value, kind: options.labelKind, separator: options.labelSeparator,
                                               resolver: &resolver, line: line, field: options.labelField)
            slots.append(added)
            return label
        }
        switch format {
        case .labelTabText:
            for (line, text) in file.lines() where !text.isEmpty {
                guard let tab = text.firstIndex(of: "\t") else {
                    throw TaskDataError(path: path, line: line, "expected 'label<TAB>text', found no tab; "
                                            + "separate the label from the text by a tab")
                }
                let label = try addLabel(.string(String(text[..<tab])), line: line)
                examples.append(TextExample(line: line, text: String(text[text.index(after: tab)...]), label: label))
            }
        case let .lines(label):
            for (line, text) in file.lines() where !text.allSatisfy(\.isWhitespace) {
                examples.append(TextExample(line: line, text: text, label: try addLabel(.string(label), line: line)))
            }
        case .csv, .tsv, .jsonLines:
            let table = try file.records(format)
            let (textField, pairField) = try textFields(options, table)
            for record in table.records {
                let text = try table.string(record, textField)
                let pair = try pairField.map { try table.string(record, $0) }
                let label = try addLabel(record.values[options.labelField], line: record.line)
                examples.append(TextExample(line: record.line, text: text, pair: pair, label: label))
            }
        case .conll, .wordSlashTag:
            throw TaskDataError(path: path, "CoNLL and word/TAG files hold tagged words, not labelled texts; "
                                    + "read them as token-classification data, or give CSV, TSV or JSON lines")
        }
        let (names, indices) = try resolver.resolve()
        for i in examples.indices {
            switch examples[i].label {
            case .classIndex: examples[i].label = .classIndex(indices[slots[i][0]])
            case .classIndices:
                var seen = Set<Int32>()
                examples[i].label = .classIndices(slots[i].map { indices[$0] }.filter { seen.insert($0).inserted })
            case .value, nil: break
            }
        }
        try requireExamples(examples, path)
        return TaskDataset(path: path, examples: examples, labelNames: options.labelKind == .regression ? [] : names)
    }

    /// The label of one example; class labels are added to `resolver` and their slots returned.
    private static func readLabel(
        _ value: JSONValue, kind: LabelKind, separator: Character, resolver: inout LabelResolver,
        line: Int, field: String
    ) throws -> (TaskLabel, [Int]) {
        let path = resolver.path
        func raw(_ value: JSONValue) throws -> RawLabel {
            switch value {
            case let .string(text): return .name(text)
            case let .number(literal):
                guard let index = Int(literal), index >= 0 else {
                    throw TaskDataError(path: path, line: line, field: field,
                                        "label \(literal) is not a class index (a non-negative integer); "
                                            + "write a class index or a label name")
                }
                return .index(index)
            default:
                throw TaskDataError(path: path, line: line, field: field,
                                    "the label is \(value.kindDescription); write a label name or a class index")
            }
        }
        switch kind {
        case .singleLabel:
            if case .array = value {
                throw TaskDataError(path: path, line: line, field: field,
                                    "the label is an array, but the task is single-label; "
                                        + "choose multi-label classification or give one label per line")
            }
            // The index is filled in once every label of the file is known (LabelResolver).
            return (.classIndex(-1), [resolver.add(try raw(value), line: line, field: field)])
        case .multiLabel:
            let items: [RawLabel]
            switch value {
            case let .array(values): items = try values.map(raw)
            case let .string(text):
                items = text.split(separator: separator).map { $0.trimmingCharacters(in: .whitespaces) }
                    .filter { !$0.isEmpty }.map { .name($0) }
            default: items = [try raw(value)]
            }
            return (.classIndices([]), items.map { resolver.add($0, line: line, field: field) })
        case .regression:
            let number: Double?
            switch value {
            case let .number(literal): number = Double(literal)
            case let .string(text): number = Double(text.trimmingCharacters(in: .whitespaces))
            default:
                throw TaskDataError(path: path, line: line, field: field,
                                    "the regression target is \(value.kindDescription); write a number")
            }
            guard let number else {
                throw TaskDataError(path: path, line: line, field: field,
                                    "\(value.displayText) is not a number; write the regression target as a number")
            }
            guard number.isFinite, Float(number).isFinite else {
                throw TaskDataError(path: path, line: line, field: field,
                                    "the regression target \(value.displayText) is not a finite number; "
                                        + "correct or remove the line")
            }
            return (.value(Float(number)), [])
        }
    }

    private static func textFields(_ options: TextTaskOptions, _ table: Table) throws -> (String, String?) {
        if let text = options.textField {
            for field in [text] + (options.pairField.map { [$0] } ?? []) where !table.fields.contains(field) {
                throw table.missing(field, line: table.records.first?.line)
            }
            return (text, options.pairField)
        }
        for (first, second) in [("sentence1", "sentence2"), ("question", "sentence"), ("premise", "hypothesis")]
        where table.fields.contains(first) && table.fields.contains(second) {
            return (first, second)
        }
        if table.fields.contains("text") { return ("text", nil) }
        throw TaskDataError(path: table.path, line: table.records.first?.line,
                            "no text field: expected 'text', 'sentence1'+'sentence2', 'question'+'sentence' or "
                                + "'premise'+'hypothesis', the file has \(table.fieldList); name the text fields")
    }

    // MARK: - Token classification

    public static func readTaggedExamples(path: String, options: TaggedTaskOptions = TaggedTaskOptions()) throws
        -> TaskDataset<TaggedExample>
    {
        let file = try TaskFile(path: path)
        let format = try resolvedFormat(options.format, path)
        var resolver = LabelResolver(path: path, names: options.labelNames)
        var examples: [TaggedExample] = []
        var slots: [[Int]] = []
        /// `tagLines`: the line of each tag, where a sentence spans lines (CoNLL).
        func add(line: Int, words: [String], tags: [RawLabel]?, field: String, tagLines: [Int]? = nil) throws {
            var tags = tags
            if options.peoplesDailyEntities, let raw = tags {
                tags = peoplesDailyEntityTags(raw.map(\.text)).map { .name($0) }
            }
            examples.append(TaggedExample(line: line, words: words, tags: []))
            slots.append(tags?.enumerated().map { resolver.add($1, line: tagLines?[$0] ?? line, field: field) } ?? [])
        }
        switch format {
        case .conll:
            var words: [String] = [], tags: [RawLabel] = [], tagLines: [Int] = []
            for (line, text) in file.lines() {
                let columns = TaskFile.fields(text)
                if columns.isEmpty {
                    if !words.isEmpty { try add(line: tagLines[0], words: words, tags: tags, field: "tag", tagLines: tagLines) }
                    words = []; tags = []; tagLines = []
                    continue
                }
                if columns[0] == "-DOCSTART-" { continue }
                guard columns.count >= 2 else {
                    throw TaskDataError(path: path, line: line, field: "tag",
                                        "'\(text)' has one column; CoNLL lines need the token first and the tag last")
                }
                tagLines.append(line)
                words.append(columns[0])
                tags.append(.name(columns[columns.count - 1]))
            }
            if !words.isEmpty { try add(line: tagLines[0], words: words, tags: tags, field: "tag", tagLines: tagLines) }
        case let .wordSlashTag(dropsFirstToken):
            for (line, text) in file.lines() {
                var tokens = TaskFile.fields(text)[...]
                if dropsFirstToken { tokens = tokens.dropFirst() }
                if tokens.isEmpty { continue }
                var words: [String] = [], tags: [RawLabel] = []
                for token in tokens {
                    guard let slash = token.utf8.lastIndex(of: UInt8(ascii: "/")), slash != token.startIndex,
                          token.utf8.index(after: slash) != token.endIndex else {
                        throw TaskDataError(path: path, line: line, field: "tag",
                                            "'\(token)' is not word/TAG; write each token as word/TAG")
                    }
                    words.append(String(token[..<slash]))
                    tags.append(.name(String(token[token.utf8.index(after: slash)...])))
                }
                try add(line: line, words: words, tags: tags, field: "tag")
            }
        case .jsonLines:
            let table = try file.records(format)
            for record in table.records {
                guard let tokens = record.values[options.tokensField] else {
                    throw table.missing(options.tokensField, line: record.line)
                }
                let words = try table.array(tokens, record, options.tokensField).map { value -> String in
                    guard case let .string(word) = value else {
                        throw TaskDataError(path: path, line: record.line, field: options.tokensField,
                                            "a token is \(value.kindDescription); tokens must be strings")
                    }
                    return word
                }
                var tags: [RawLabel]?
                if let value = record.values[options.tagsField], value != .null {
                    tags = try table.array(value, record, options.tagsField).map { tag in
                        switch tag {
                        case let .string(name): return .name(name)
                        case let .number(literal) where (Int(literal) ?? -1) >= 0: return .index(Int(literal)!)
                        default:
                            throw TaskDataError(path: path, line: record.line, field: options.tagsField,
                                                "tag \(tag.displayText) is neither a name nor a class index; "
                                                    + "write tags as strings or non-negative integers")
                        }
                    }
                    if tags!.count != words.count {
                        throw TaskDataError(path: path, line: record.line, field: options.tagsField,
                                            "\(words.count) tokens but \(tags!.count) tags; give one tag per token")
                    }
                } else if options.requiresLabels {
                    throw table.missing(options.tagsField, line: record.line)
                }
                if options.peoplesDailyEntities, let tags, tags.contains(where: { if case .index = $0 { true } else { false } }) {
                    throw TaskDataError(path: path, line: record.line, field: options.tagsField,
                                        "People's Daily entity tags are made from POS tag names, found class indices; "
                                            + "give the POS tags as strings")
                }
                try add(line: record.line, words: words, tags: tags, field: options.tagsField)
            }
        case .csv, .tsv, .labelTabText, .lines:
            throw TaskDataError(path: path, "token-classification data must be JSON lines ('tokens'/'ner_tags'), "
                                    + "CoNLL columns or word/TAG lines; convert the file to one of these")
        }
        let (names, indices) = try resolver.resolve()
        for i in examples.indices { examples[i].tags = slots[i].map { indices[$0] } }
        try requireExamples(examples, path)
        return TaskDataset(path: path, examples: examples, labelNames: names)
    }

    // MARK: - Multiple choice

    public static func readChoiceExamples(path: String, options: ChoiceTaskOptions = ChoiceTaskOptions()) throws
        -> TaskDataset<ChoiceExample>
    {
        let file = try TaskFile(path: path)
        let format = try resolvedFormat(options.format, path)
        guard format == .csv || format == .tsv || format == .jsonLines else {
            throw TaskDataError(path: path, "multiple-choice data must be CSV, TSV or JSON lines; convert the file")
        }
        let table = try file.records(format)
        let swag = options.choicesField == nil
            && (options.endingFields != nil || options.contextField == "sent1" || table.fields.contains("sent1"))
        let contextField = options.contextField ?? (swag ? "sent1" : "question")
        let prefixField = options.questionPrefixField ?? (swag ? "sent2" : nil)
        let endingFields = options.endingFields
            ?? (swag ? Array((0..<table.fields.count).lazy.map { "ending\($0)" }.prefix { table.fields.contains($0) }) : [])
        let choicesField = options.choicesField ?? "choices"
        if swag && endingFields.isEmpty { throw table.missing("ending0", line: table.records.first?.line) }
        var examples: [ChoiceExample] = []
        for record in table.records {
            let context = try table.string(record, contextField)
            let prefix = try prefixField.map { try table.string(record, $0) } ?? ""
            var endings: [String]
            if swag {
                endings = try endingFields.map { try table.string(record, $0) }
            } else {
                guard var value = record.values[choicesField] else { throw table.missing(choicesField, line: record.line) }
                if case .object = value, let texts = value["text"] { value = texts }
                endings = try table.array(value, record, choicesField).map { choice in
                    guard case let .string(text) = choice else {
                        throw TaskDataError(path: path, line: record.line, field: choicesField,
                                            "a choice is \(choice.displayText); choices must be strings")
                    }
                    return text
                }
            }
            if let first = examples.first, first.endings.count != endings.count {
                throw TaskDataError(path: path, line: record.line, field: swag ? nil : choicesField,
                                    "\(endings.count) choices, line \(first.line) has \(first.endings.count); "
                                        + "every question needs the same number of choices")
            }
            var label: Int32?
            if let value = record.values[options.labelField], value != .null {
                let index: Int?
                switch value {
                case let .number(literal): index = Int(literal)
                case let .string(text): index = RawLabel.name(text).integerValue
                default: index = nil
                }
                guard let index, index >= 0, index < endings.count else {
                    throw TaskDataError(path: path, line: record.line, field: options.labelField,
                                        "label \(value.displayText) is not the index of a choice (0..<\(endings.count)); "
                                            + "write the index of the right choice")
                }
                label = Int32(index)
            } else if options.requiresLabels {
                throw table.missing(options.labelField, line: record.line)
            }
            examples.append(ChoiceExample(line: record.line, context: context, questionPrefix: prefix,
                                          endings: endings, label: label))
        }
        try requireExamples(examples, path)
        return TaskDataset(path: path, examples: examples, labelNames: [])
    }

    private static func requireExamples<Example>(_ examples: [Example], _ path: String) throws {
        if examples.isEmpty {
            throw TaskDataError(path: path, "the file holds no examples (a header or blank lines only); "
                                    + "give a file with at least one example")
        }
    }

    private static func resolvedFormat(_ format: TaskFileFormat?, _ path: String) throws -> TaskFileFormat {
        if let format { return format }
        if let format = TaskFileFormat.inferred(fromPath: path) { return format }
        throw TaskDataError(path: path, "cannot tell the format from the file name; "
                                + "name it .csv, .tsv or .jsonl, or give the format")
    }
}

// MARK: - Files, lines, records

extension JSONValue {
    /// The value as it would be written in a message: strings quoted, others as JSON.
    var displayText: String {
        if case let .string(text) = self { return "'\(text)'" }
        return compactText()
    }
}

/// A record of a table: a JSON object (JSON lines), or the header's names bound to a row's strings.
struct TaskRecord {
    let line: Int
    let values: JSONValue
}

/// The records of a CSV, TSV or JSON-lines file, with the field names it has (header, or the keys
/// of the first object) for messages.
struct Table {
    let path: String
    let fields: [String]
    let records: [TaskRecord]

    /// The header's names, each cut to 40 characters; a longer one means the first line is data.
    var fieldList: String {
        guard !fields.isEmpty else { return "no fields" }
        let names = fields.map { $0.count > 40 ? "'\($0.prefix(40))...'" : "'\($0)'" }.joined(separator: ", ")
        guard fields.contains(where: { $0.count > 40 }) else { return names }
        return names + " (the first line is read as a header: a label<TAB>text file without one is format "
            + "label_tab_text, task.format or --data-format)"
    }

    func missing(_ field: String, line: Int?) -> TaskDataError {
        TaskDataError(path: path, line: line, field: field,
                      "missing (the file has \(fieldList)); add the field or name the field the file uses")
    }

    func string(_ record: TaskRecord, _ field: String) throws -> String {
        guard let value = record.values[field] else { throw missing(field, line: record.line) }
        guard case let .string(text) = value else {
            throw TaskDataError(path: path, line: record.line, field: field,
                                "is \(value.kindDescription), expected a string; write the text as a JSON string")
        }
        return text
    }

    func array(_ value: JSONValue, _ record: TaskRecord, _ field: String) throws -> [JSONValue] {
        guard case let .array(items) = value else {
            throw TaskDataError(path: path, line: record.line, field: field,
                                "is \(value.kindDescription), expected an array; write it as a JSON array")
        }
        return items
    }
}

/// A data file's bytes, checked to be UTF-8 and not empty, without a byte-order mark.
struct TaskFile {
    let path: String
    let bytes: [UInt8]

    init(path: String) throws {
        self.path = path
        var bytes: [UInt8]
        do {
            bytes = [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw TaskDataError(path: path, "cannot read the file (\(error.localizedDescription)); check the path")
        }
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        if String(validating: bytes, as: UTF8.self) == nil {
            var line = 1, start = 0
            for (index, byte) in bytes.enumerated() where byte == 0x0A {
                if String(validating: bytes[start..<index], as: UTF8.self) == nil { break }
                line += 1
                start = index + 1
            }
            throw TaskDataError(path: path, line: line,
                                "invalid UTF-8; convert the file to UTF-8 (e.g. with iconv)")
        }
        if bytes.allSatisfy({ $0 == 0x20 || ($0 >= 0x09 && $0 <= 0x0D) }) {
            throw TaskDataError(path: path, "the file is empty; give a file with at least one example")
        }
        self.bytes = bytes
    }

    /// The lines with their 1-based numbers, without "\n" or "\r\n". Split on bytes: splitting a
    /// String by Character walks grapheme clusters, several times slower on large files.
    func lines() -> [(Int, String)] {
        var result: [(Int, String)] = []
        var start = 0
        func add(_ end: Int) {
            let stop = end > start && bytes[end - 1] == 0x0D ? end - 1 : end
            result.append((result.count + 1, String(decoding: bytes[start..<stop], as: UTF8.self)))
        }
        for (index, byte) in bytes.enumerated() where byte == 0x0A {
            add(index)
            start = index + 1
        }
        if start < bytes.count { add(bytes.count) }
        return result
    }

    /// The space- or tab-separated fields of a line.
    static func fields(_ line: String) -> [String] {
        line.utf8.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 }).map { String(decoding: $0, as: UTF8.self) }
    }

    func records(_ format: TaskFileFormat) throws -> Table {
        if format == .jsonLines {
            var records: [TaskRecord] = []
            for (line, text) in lines() where !text.allSatisfy(\.isWhitespace) {
                let value: JSONValue
                do {
                    value = try JSONValue.parse(text)
                } catch let error as JSONValue.SyntaxError {
                    throw TaskDataError(path: path, line: line, "invalid JSON at column \(error.column): "
                                            + "\(error.message); write one JSON object a line")
                }
                guard case .object = value else {
                    throw TaskDataError(path: path, line: line,
                                        "the line is \(value.kindDescription); write one JSON object a line")
                }
                records.append(TaskRecord(line: line, values: value))
            }
            var fields: [String] = []
            if case let .object(members)? = records.first?.values { fields = members.map(\.key) }
            return Table(path: path, fields: fields, records: records)
        }
        let rows = try delimitedRows(separator: format == .csv ? UInt8(ascii: ",") : UInt8(ascii: "\t"),
                                     quoting: format == .csv)
        let header = rows[0]
        var seen = Set<String>()
        for name in header.fields where !seen.insert(name).inserted {
            throw TaskDataError(path: path, line: header.line, field: name,
                                "appears twice in the header; give every column its own name")
        }
        let records = try rows.dropFirst().map { row -> TaskRecord in
            guard row.fields.count == header.fields.count else {
                throw TaskDataError(path: path, line: row.line,
                                    "\(row.fields.count) fields, the header has \(header.fields.count); "
                                        + (format == .csv ? "quote fields that contain commas"
                                                          : "TSV fields cannot contain tabs or line breaks"))
            }
            return TaskRecord(line: row.line, values: .object(zip(header.fields, row.fields).map {
                (key: $0, value: .string($1))
            }))
        }
        return Table(path: path, fields: header.fields, records: records)
    }

    /// Rows of a delimited file with the line each starts on; blank lines are skipped. With
    /// `quoting`, RFC 4180: a field that starts with `"` ends at the next lone `"`, `""` inside it is
    /// a quote, separators and line breaks inside it are text. A quote inside an unquoted field is
    /// text, as Python's csv module reads it.
    private func delimitedRows(separator: UInt8, quoting: Bool) throws -> [(line: Int, fields: [String])] {
        let quote = UInt8(ascii: "\""), newline = UInt8(0x0A), carriageReturn = UInt8(0x0D)
        var rows: [(line: Int, fields: [String])] = []
        var fields: [String] = []
        var field: [UInt8] = []
        var line = 1, rowLine = 1
        var index = 0
        let count = bytes.count
        var rowQuoted = false
        func endRow() {
            if !(fields.isEmpty && field.isEmpty && !rowQuoted) {
                fields.append(String(decoding: field, as: UTF8.self))
                rows.append((rowLine, fields))
            }
            fields = []
            field = []
            rowQuoted = false
        }
        var atFieldStart = true
        while index < count {
            let byte = bytes[index]
            if quoting && atFieldStart && byte == quote {
                let quoteLine = line
                rowQuoted = true
                index += 1
                while true {
                    guard index < count else {
                        throw TaskDataError(path: path, line: quoteLine, field: "column \(fields.count + 1)",
                                            "unterminated quoted field (no closing quote up to the end of the file); "
                                                + "close the quote, and double quotes inside quoted fields (\"\")")
                    }
                    let inner = bytes[index]
                    index += 1
                    if inner == quote {
                        if index < count && bytes[index] == quote {
                            field.append(quote)
                            index += 1
                        } else {
                            break
                        }
                    } else {
                        if inner == newline { line += 1 }
                        field.append(inner)
                    }
                }
                atFieldStart = false
                if index < count, bytes[index] != separator, bytes[index] != newline,
                   !(bytes[index] == carriageReturn && (index + 1 == count || bytes[index + 1] == newline)) {
                    throw TaskDataError(path: path, line: line, field: "column \(fields.count + 1)",
                                        "text after the closing quote of a quoted field; "
                                            + "double the quotes inside quoted fields (\"\")")
                }
                continue
            }
            index += 1
            atFieldStart = false
            if byte == separator {
                fields.append(String(decoding: field, as: UTF8.self))
                field = []
                atFieldStart = true
            } else if byte == newline {
                if field.last == carriageReturn { field.removeLast() }
                endRow()
                line += 1
                rowLine = line
                atFieldStart = true
            } else {
                field.append(byte)
            }
        }
        if field.last == carriageReturn { field.removeLast() }
        endRow()
        return rows
    }
}
