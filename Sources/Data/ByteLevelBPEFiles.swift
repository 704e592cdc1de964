// The files of a byte-level BPE tokenizer: `tokenizer.json` (the `tokenizers` serialisation, which
// transformers 5 saves) and GPT-2's own `vocab.json` + `merges.txt`. Anything tokenizer.json asks for
// that GPT-2's tokenizer does not do (a normaliser, another pre-tokenizer or model, BPE dropout) is an
// error naming the key, not a silently different tokenization.

import Foundation

extension ByteLevelBPE {
    public static let tokenizerFile = "tokenizer.json"
    public static let vocabularyFile = "vocab.json"
    public static let mergesFile = "merges.txt"

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
