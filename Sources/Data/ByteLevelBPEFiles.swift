// The files of a byte-level BPE tokenizer: `tokenizer.json` (the `tokenizers` serialisation, which
// transformers 5 saves) and GPT-2's own `vocab.json` + `merges.txt`. Anything tokenizer.json asks for
// that GPT-2's tokenizer does not do (a normaliser, another pre-tokenizer or model, BPE dropout) is an
// error naming the key, not a silently different tokenization.

import Foundation

extension ByteLevelBPE {
    public static let tokenizerFile = "tokenizer.json"
    public static let vocabularyFile = "vocab.json"
    public static let mergesFile = "merges.txt"
    public static let configFile = "tokenizer_config.json"
    /// GPT-2's one special token: end of text, and its beginning, and the unknown token.
    public static let endOfText = "<|endoftext|>"

    /// The tokenizer of a directory: tokenizer.json when present, else vocab.json and merges.txt
    /// (with `<|endoftext|>` as an added token when the vocabulary has it, as GPT-2's tokenizer does).
    public static func load(directory: String) throws -> ByteLevelBPE {
        let files = try files(inDirectory: directory)
        return files.count == 1 ? try load(tokenizerJSON: files[0]) : try load(vocabularyJSON: files[0], merges: files[1])
    }

    /// The files `load(directory:)` reads: [tokenizer.json], or [vocab.json, merges.txt].
    public static func files(inDirectory directory: String) throws -> [String] {
        let json = (directory as NSString).appendingPathComponent(tokenizerFile)
        if FileManager.default.fileExists(atPath: json) { return [json] }
        let vocabulary = (directory as NSString).appendingPathComponent(vocabularyFile)
        let merges = (directory as NSString).appendingPathComponent(mergesFile)
        guard FileManager.default.fileExists(atPath: vocabulary), FileManager.default.fileExists(atPath: merges) else {
            throw ByteLevelBPEError.invalid(
                path: directory, reason: "has neither \(tokenizerFile) nor \(vocabularyFile) and \(mergesFile); save the "
                    + "tokenizer beside the weights (tokenizer.save_pretrained(DIR) in transformers)")
        }
        return [vocabulary, merges]
    }

    /// GPT-2's vocab.json (token -> id) and merges.txt (one merge a line, ranks in line order, after an
    /// optional `#version` line).
    public static func load(vocabularyJSON path: String, merges mergesPath: String) throws -> ByteLevelBPE {
        guard case let .object(members) = try parse(path) else {
            throw ByteLevelBPEError.invalid(path: path, reason: "must be a JSON object of token -> id")
        }
        let vocabulary = try ids(members, path: path)
        let text = try read(mergesPath)
        var merges: [(String, String)] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = line.hasSuffix("\r") ? line.dropLast() : line
            if line.isEmpty || (index == 0 && line.hasPrefix("#version")) { continue }
            merges.append(try mergePair(String(line), path: mergesPath, line: index + 1))
        }
        let endOfText = vocabulary["<|endoftext|>"].map { [(content: "<|endoftext|>", id: $0)] } ?? []
        return try ByteLevelBPE(vocabulary: vocabulary, merges: merges, addedTokens: endOfText, source: path, mergesSource: mergesPath)
    }

    /// A `tokenizers` tokenizer.json of GPT-2's kind: ByteLevel pre-tokenizer (GPT-2's pattern, no prefix
    /// space), BPE model without dropout or unknown token, no normaliser; added tokens matched whole.
    public static func load(tokenizerJSON path: String) throws -> ByteLevelBPE {
        let root = try parse(path)
        func unsupported(_ key: String, _ found: JSONValue, _ reason: String) -> ByteLevelBPEError {
            .invalid(path: path, reason: "\"\(key)\" is \(found.compactText()); \(reason)")
        }
        if let normalizer = root["normalizer"], normalizer != .null {
            throw unsupported("normalizer", normalizer, "GPT-2's byte-level tokenizer has none")
        }
        guard let pre = root["pre_tokenizer"], pre["type"] == .string("ByteLevel") else {
            throw unsupported("pre_tokenizer", root["pre_tokenizer"] ?? .null, "a byte-level BPE tokenizer needs the ByteLevel pre-tokenizer")
        }
        if pre["add_prefix_space"] == .bool(true) {
            throw unsupported("pre_tokenizer.add_prefix_space", .bool(true), "GPT-2 adds no prefix space; SwiftBERT does not implement it")
        }
        if pre["use_regex"] == .bool(false) {
            throw unsupported("pre_tokenizer.use_regex", .bool(false), "GPT-2 splits with its pattern; SwiftBERT does not implement the unsplit form")
        }
        guard let model = root["model"], model["type"] == .string("BPE") else {
            throw unsupported("model.type", root["model"]?["type"] ?? .null, "a byte-level BPE tokenizer has a BPE model")
        }
        if let dropout = model["dropout"], dropout != .null {
            throw unsupported("model.dropout", dropout, "BPE dropout changes tokenization at random; GPT-2 has none")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let value = model[key], value != .null, value != .string("") {
                throw unsupported("model.\(key)", value, "byte-level BPE uses none")
            }
        }
        guard case let .object(vocabularyMembers)? = model["vocab"] else {
            throw ByteLevelBPEError.invalid(path: path, reason: "\"model.vocab\" must be an object of token -> id")
        }
        let vocabulary = try ids(vocabularyMembers, path: path)
        guard case let .array(mergeItems)? = model["merges"] else {
            throw ByteLevelBPEError.invalid(path: path, reason: "\"model.merges\" must be a list")
        }
        // Older files write a merge as "left right", newer ones as ["left", "right"].
        let merges = try mergeItems.enumerated().map { index, item -> (String, String) in
            switch item {
            case let .string(text): return try mergePair(text, path: path, line: nil)
            case let .array(pair) where pair.count == 2:
                if case let .string(left) = pair[0], case let .string(right) = pair[1] { return (left, right) }
            default: break
            }
            throw ByteLevelBPEError.invalid(path: path, reason: "merge \(index + 1) is \(item.compactText()), not two tokens")
        }
        var added: [(content: String, id: Int32)] = []
        if case let .array(items)? = root["added_tokens"] {
            for item in items {
                guard case let .string(content)? = item["content"], case let .number(number)? = item["id"], let id = Int32(number) else {
                    throw ByteLevelBPEError.invalid(path: path, reason: "an added token needs a \"content\" string and an \"id\"")
                }
                added.append((content, id))
            }
        }
        return try ByteLevelBPE(
            vocabulary: vocabulary, merges: merges, addedTokens: added, ignoreMerges: model["ignore_merges"] == .bool(true),
            source: path)
    }

    /// The tokenizer `model` stands for, as it would load from the files `write` makes of it.
    public convenience init(_ model: ByteLevelBPEModel) throws {
        var vocabulary: [String: Int32] = [:]
        for (id, token) in model.tokens.enumerated() where ByteLevelBPE.bytes(ofSpelled: token) != nil && vocabulary[token] == nil {
            vocabulary[token] = Int32(id)
        }
        let added = model.specialTokens.compactMap { token in model.tokens.firstIndex(of: token).map { (content: token, id: Int32($0)) } }
        try self.init(vocabulary: vocabulary, merges: model.merges, addedTokens: added, source: "the learned tokenizer")
    }

    // MARK: - Writing

    /// Writes `model` into `directory` as `tokenizers` saves a `ByteLevelBPETokenizer`: tokenizer.json,
    /// vocab.json and merges.txt (the same bytes the library writes), and tokenizer_config.json, which
    /// makes transformers' `AutoTokenizer` a `GPT2Tokenizer` with `<|endoftext|>` as its bos, eos and
    /// unk token. The files go to a temporary directory beside `directory`, renamed into place at the
    /// end, so an error leaves nothing behind. An existing non-empty `directory` is an error unless
    /// `overwrite`, and is then replaced whole.
    public static func write(_ model: ByteLevelBPEModel, to directory: String, overwrite: Bool = false) throws {
        try checkOutput(directory, overwrite: overwrite)
        let manager = FileManager.default
        let target = URL(fileURLWithPath: directory).standardizedFileURL
        let parent = target.deletingLastPathComponent()
        do {
            try manager.createDirectory(at: parent, withIntermediateDirectories: true)
        } catch {
            throw ByteLevelBPEError.invalid(path: parent.path, reason: "cannot create the directory (\(error.localizedDescription))")
        }
        let temporary = parent.appendingPathComponent(".\(target.lastPathComponent).tmp-\(getpid())")
        try? manager.removeItem(at: temporary)
        var committed = false
        defer { if !committed { try? manager.removeItem(at: temporary) } }
        do {
            try manager.createDirectory(at: temporary, withIntermediateDirectories: false)
            for (name, text) in files(of: model) {
                try Foundation.Data(text.utf8).write(to: temporary.appendingPathComponent(name))
            }
        } catch {
            throw ByteLevelBPEError.invalid(path: temporary.path, reason: "cannot write (\(error.localizedDescription))")
        }
        try moveDirectoryIntoPlace(temporary, at: target) { ByteLevelBPEError.invalid(path: $0, reason: $1) }
        committed = true
    }

    /// Throws unless `write(_:to:overwrite:)` may write `directory`: it does not exist, is an empty
    /// directory, or `overwrite`. Checked before a long run, so a user learns it at once.
    public static func checkOutput(_ directory: String, overwrite: Bool) throws {
        let manager = FileManager.default
        let target = URL(fileURLWithPath: directory).standardizedFileURL
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: target.path, isDirectory: &isDirectory), !overwrite else { return }
        let contents = (try? manager.contentsOfDirectory(atPath: target.path)) ?? ["?"]
        if !(isDirectory.boolValue && contents.isEmpty) {
            throw ByteLevelBPEError.invalid(
                path: target.path, reason: "already exists; remove it, choose another --out, or pass --overwrite")
        }
    }

    /// The files `write` writes, by name, with their text.
    public static func files(of model: ByteLevelBPEModel) -> [(name: String, text: String)] {
        let vocabulary = JSONValue.object(model.tokens.enumerated().map { ($0.element, .integer($0.offset)) })
        let merges = model.merges.map { "\($0.0) \($0.1)\n" }.joined()
        // tokenizers writes tokenizer.json and vocab.json without a final line break.
        return [
            (tokenizerFile, String(tokenizerJSON(of: model).prettyText().dropLast())),
            (vocabularyFile, vocabulary.compactText()),
            (mergesFile, "#version: 0.2\n" + merges),
            (configFile, tokenizerConfig(endOfText: model.specialTokens.contains(endOfText)).prettyText()),
        ]
    }

    /// tokenizer_config.json: what transformers needs beside tokenizer.json to load the tokenizer as
    /// GPT-2's, with `<|endoftext|>` as its beginning, end and unknown token when it has one.
    public static func tokenizerConfig(endOfText hasEndOfText: Bool) -> JSONValue {
        var config: [(key: String, value: JSONValue)] = [
            ("tokenizer_class", .string("GPT2Tokenizer")), ("add_prefix_space", .bool(false)),
        ]
        if hasEndOfText {
            config += [("bos_token", .string(endOfText)), ("eos_token", .string(endOfText)), ("unk_token", .string(endOfText))]
        }
        return .object(config)
    }

    /// tokenizer.json as `tokenizers` serialises a `ByteLevelBPETokenizer`.
    public static func tokenizerJSON(of model: ByteLevelBPEModel) -> JSONValue {
        var firstID: [String: Int] = [:]
        for (id, token) in model.tokens.enumerated() where firstID[token] == nil { firstID[token] = id }
        let added: [JSONValue] = model.specialTokens.compactMap { token in
            firstID[token].map { id in
                .object([
                    ("id", .integer(id)), ("content", .string(token)), ("single_word", .bool(false)), ("lstrip", .bool(false)),
                    ("rstrip", .bool(false)), ("normalized", .bool(false)), ("special", .bool(true)),
                ])
            }
        }
        func byteLevel(addPrefixSpace: Bool, trimOffsets: Bool) -> JSONValue {
            .object([
                ("type", .string("ByteLevel")), ("add_prefix_space", .bool(addPrefixSpace)),
                ("trim_offsets", .bool(trimOffsets)), ("use_regex", .bool(true)),
            ])
        }
        return .object([
            ("version", .string("1.0")), ("truncation", .null), ("padding", .null), ("added_tokens", .array(added)),
            ("normalizer", .null),
            ("pre_tokenizer", byteLevel(addPrefixSpace: false, trimOffsets: true)),
            // The library's defaults for these two, as ByteLevelBPETokenizer sets them.
            ("post_processor", byteLevel(addPrefixSpace: true, trimOffsets: false)),
            ("decoder", byteLevel(addPrefixSpace: true, trimOffsets: true)),
            ("model", .object([
                ("type", .string("BPE")), ("dropout", .null), ("unk_token", .null), ("continuing_subword_prefix", .null),
                ("end_of_word_suffix", .null), ("fuse_unk", .bool(false)), ("byte_fallback", .bool(false)),
                ("ignore_merges", .bool(false)),
                ("vocab", .object(model.tokens.enumerated().map { ($0.element, .integer($0.offset)) })),
                ("merges", .array(model.merges.map { .array([.string($0.0), .string($0.1)]) })),
            ])),
        ])
    }

    private static func read(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ByteLevelBPEError.invalid(path: path, reason: "cannot be read")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ByteLevelBPEError.invalid(path: path, reason: "is not UTF-8")
        }
        return text
    }

    private static func parse(_ path: String) throws -> JSONValue {
        do {
            return try JSONValue.parse(try read(path))
        } catch let error as JSONValue.SyntaxError {
            throw ByteLevelBPEError.invalid(path: path, reason: "is not valid JSON (\(error))")
        }
    }

    private static func ids(_ members: [(key: String, value: JSONValue)], path: String) throws -> [String: Int32] {
        var vocabulary: [String: Int32] = [:]
        for (token, value) in members {
            guard case let .number(text) = value, let id = Int32(text), id >= 0 else {
                throw ByteLevelBPEError.invalid(path: path, reason: "token \(token) has id \(value.compactText()), not an integer >= 0")
            }
            vocabulary[token] = id
        }
        return vocabulary
    }

    private static func mergePair(_ text: String, path: String, line: Int?) throws -> (String, String) {
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw ByteLevelBPEError.invalid(
                path: path, reason: "\(line.map { "line \($0)" } ?? "merge") \"\(text)\" is not two tokens separated by one space")
        }
        return (String(parts[0]), String(parts[1]))
    }
}
