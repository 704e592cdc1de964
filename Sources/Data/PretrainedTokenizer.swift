// The tokenizer files of a Hugging Face BERT directory: `vocab.txt` (transformers 4 and Google's
// checkpoints), `tokenizer.json` (the `tokenizers` serialisation; transformers 5 saves only this one)
// and `tokenizer_config.json` (the tokenizer class's arguments).
//
// transformers 5's `BertTokenizer` takes the vocabulary from tokenizer.json and rebuilds the
// normaliser from tokenizer_config.json (`do_lower_case`, `strip_accents`, `tokenize_chinese_chars`);
// the `tokenizers` library and other runtimes read tokenizer.json's normaliser. A directory whose two
// files disagree would tokenize differently in each, so that is an error, as is anything in
// tokenizer.json that BERT's tokenizer does not do (another model, normaliser or pre-tokenizer).

import Foundation

/// A tokenizer file that cannot be read, or asks for a tokenization SwiftBERT does not implement.
public enum PretrainedTokenizerError: Error, LocalizedError, CustomStringConvertible, Equatable {
    case noVocabulary(directory: String)
    case unreadable(path: String, reason: String)
    case unsupported(path: String, key: String, found: String, reason: String)
    case disagreement(path: String, key: String, value: String, otherPath: String, otherKey: String, otherValue: String)

    public var description: String {
        switch self {
        case let .noVocabulary(directory):
            return "model directory \(directory) has neither \(PretrainedTokenizer.vocabularyFile) nor "
                + "\(PretrainedTokenizer.tokenizerFile); save the tokenizer beside the weights "
                + "(tokenizer.save_pretrained(DIR) in transformers)"
        case let .unreadable(path, reason):
            return "cannot read tokenizer file \(path): \(reason)"
        case let .unsupported(path, key, found, reason):
            return "\(path): \"\(key)\" is \(found); \(reason)"
        case let .disagreement(path, key, value, otherPath, otherKey, otherValue):
            return "\(path) sets \"\(key)\" to \(value) but \(otherPath) sets \"\(otherKey)\" to \(otherValue); "
                + "transformers and the tokenizers library would tokenize differently: make them agree"
        }
    }

    public var errorDescription: String? { description }
}

/// Reads and writes the tokenizer files of a Hugging Face BERT directory.
public enum PretrainedTokenizer {
    public static let vocabularyFile = "vocab.txt"
    public static let tokenizerFile = "tokenizer.json"
    public static let configFile = "tokenizer_config.json"

    /// The tokenizer of `directory` and whether decoding cleans up spaces before punctuation
    /// (`clean_up_tokenization_spaces`, false when not set, as in transformers 5). The vocabulary is
    /// vocab.txt when present, else tokenizer.json's WordPiece vocabulary.
    public static func load(directory: String) throws -> (tokenizer: BertTokenizer, cleanUpTokenizationSpaces: Bool) {
        let configPath = path(directory, configFile)
        let config = try FileManager.default.fileExists(atPath: configPath)
            ? TokenizerConfig(path: configPath)
            : TokenizerConfig(defaultsAt: configPath)
        let vocabularyPath = path(directory, vocabularyFile)
        let tokenizerPath = path(directory, tokenizerFile)
        let vocabulary: Vocabulary
        let settings: BertTokenizerSettings
        if FileManager.default.fileExists(atPath: vocabularyPath) {
            vocabulary = try Vocabulary(contentsOfFile: vocabularyPath)
            settings = config.settings(maxCharactersPerWord: BertTokenizerSettings().maxCharactersPerWord)
            // transformers 5 reads tokenizer.json when both are there: they must be the same tokenizer.
            if FileManager.default.fileExists(atPath: tokenizerPath) {
                let file = try TokenizerFile(path: tokenizerPath)
                try checkSameTokens(vocabulary.tokens, vocabularyPath, file.tokens, tokenizerPath)
                if !config.readsTokenizerFileVerbatim { try config.checkAgreement(with: file, at: tokenizerPath) }
            }
        } else if FileManager.default.fileExists(atPath: tokenizerPath) {
            let file = try TokenizerFile(path: tokenizerPath)
            do {
                vocabulary = try Vocabulary(tokens: file.tokens)
            } catch let error as VocabularyError {
                throw PretrainedTokenizerError.unsupported(
                    path: tokenizerPath, key: "model.vocab", found: "not a BERT vocabulary", reason: "\(error)")
            }
            if !config.readsTokenizerFileVerbatim { try config.checkAgreement(with: file, at: tokenizerPath) }
            settings = file.settings
        } else {
            throw PretrainedTokenizerError.noVocabulary(directory: directory)
        }
        return (BertTokenizer(vocabulary: vocabulary, settings: settings), config.cleanUpTokenizationSpaces)
    }

    /// Writes vocab.txt, tokenizer.json and tokenizer_config.json for `tokens` (in id order) into
    /// `directory`, so that transformers (4 and 5) and the tokenizers library load the same tokenizer.
    public static func write(
        tokens: [String], settings: BertTokenizerSettings, modelMaxLength: Int, to directory: String
    ) throws {
        let config: JSONValue = .object([
            ("tokenizer_class", .string("BertTokenizer")),
            ("do_lower_case", .bool(settings.lowercase)),
            ("strip_accents", settings.stripAccents.map(JSONValue.bool) ?? .null),
            ("tokenize_chinese_chars", .bool(settings.splitsChineseCharacters)),
            ("model_max_length", .integer(modelMaxLength)),
            ("clean_up_tokenization_spaces", .bool(true)),
            ("pad_token", .string("[PAD]")), ("unk_token", .string("[UNK]")), ("cls_token", .string("[CLS]")),
            ("sep_token", .string("[SEP]")), ("mask_token", .string("[MASK]")),
        ])
        let files = [
            (vocabularyFile, tokens.joined(separator: "\n") + "\n"),
            (tokenizerFile, tokenizerJSON(tokens: tokens, settings: settings).prettyText()),
            (configFile, config.prettyText()),
        ]
        for (file, text) in files {
            do {
                try Foundation.Data(text.utf8).write(to: URL(fileURLWithPath: path(directory, file)), options: .atomic)
            } catch {
                throw PretrainedTokenizerError.unreadable(path: path(directory, file), reason: "cannot write: \(error.localizedDescription)")
            }
        }
    }

    /// tokenizer.json as transformers 5 saves a `BertTokenizer`. When a token occurs twice the later id
    /// wins, as in transformers' `load_vocab`.
    public static func tokenizerJSON(tokens: [String], settings: BertTokenizerSettings) -> JSONValue {
        var lastID: [[UInt8]: Int] = [:]
        for (id, token) in tokens.enumerated() { lastID[Array(token.utf8)] = id }
        let vocabulary = tokens.enumerated().compactMap { id, token -> (key: String, value: JSONValue)? in
            lastID[Array(token.utf8)] == id ? (token, .integer(id)) : nil
        }
        func id(_ token: String) -> Int { lastID[Array(token.utf8)] ?? 0 }
        let specials = Vocabulary.specialTokens.filter { lastID[Array($0.utf8)] != nil }.sorted { id($0) < id($1) }
        let addedTokens: [JSONValue] = specials.map { token in
            .object([
                ("id", .integer(id(token))), ("content", .string(token)), ("single_word", .bool(false)),
                ("lstrip", .bool(false)), ("rstrip", .bool(false)), ("normalized", .bool(false)), ("special", .bool(true)),
            ])
        }
        func special(_ token: String, _ typeID: Int) -> JSONValue {
            .object([("SpecialToken", .object([("id", .string(token)), ("type_id", .integer(typeID))]))])
        }
        func sequence(_ name: String, _ typeID: Int) -> JSONValue {
            .object([("Sequence", .object([("id", .string(name)), ("type_id", .integer(typeID))]))])
        }
        func specialEntry(_ token: String) -> (key: String, value: JSONValue) {
            (token, .object([("id", .string(token)), ("ids", .array([.integer(id(token))])), ("tokens", .array([.string(token)]))]))
        }
        return .object([
            ("version", .string("1.0")),
            ("truncation", .null),
            ("padding", .null),
            ("added_tokens", .array(addedTokens)),
            ("normalizer", .object([
                ("type", .string("BertNormalizer")),
                ("clean_text", .bool(true)),
                ("handle_chinese_chars", .bool(settings.splitsChineseCharacters)),
                ("strip_accents", settings.stripAccents.map(JSONValue.bool) ?? .null),
                ("lowercase", .bool(settings.lowercase)),
            ])),
            ("pre_tokenizer", .object([("type", .string("BertPreTokenizer"))])),
            ("post_processor", .object([
                ("type", .string("TemplateProcessing")),
                ("single", .array([special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0)])),
                ("pair", .array([special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0), sequence("B", 1), special("[SEP]", 1)])),
                ("special_tokens", .object([specialEntry("[CLS]"), specialEntry("[SEP]")])),
            ])),
            ("decoder", .object([("type", .string("WordPiece")), ("prefix", .string("##")), ("cleanup", .bool(true))])),
            ("model", .object([
                ("type", .string("WordPiece")),
                ("unk_token", .string("[UNK]")),
                ("continuing_subword_prefix", .string("##")),
                ("max_input_chars_per_word", .integer(settings.maxCharactersPerWord)),
                ("vocab", .object(vocabulary)),
            ])),
        ])
    }

    static func checkSameTokens(_ tokens: [String], _ path: String, _ others: [String], _ otherPath: String) throws {
        let common = 0..<min(tokens.count, others.count)
        if let id = common.first(where: { Array(tokens[$0].unicodeScalars) != Array(others[$0].unicodeScalars) }) {
            throw PretrainedTokenizerError.unsupported(
                path: otherPath, key: "model.vocab", found: "\"\(others[id])\" at id \(id)",
                reason: "\(path) has \"\(tokens[id])\" there; transformers 5 reads tokenizer.json, SwiftBERT vocab.txt: "
                    + "make them the same vocabulary (or remove the stale file)")
        }
        if tokens.count != others.count {
            throw PretrainedTokenizerError.unsupported(
                path: otherPath, key: "model.vocab", found: "\(others.count) tokens",
                reason: "\(path) has \(tokens.count); make them the same vocabulary (or remove the stale file)")
        }
    }

    static func path(_ directory: String, _ file: String) -> String {
        (directory as NSString).appendingPathComponent(file)
    }

    static func readJSON(_ path: String) throws -> JSONValue {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PretrainedTokenizerError.unreadable(path: path, reason: "the file cannot be opened")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw PretrainedTokenizerError.unreadable(path: path, reason: "not UTF-8 text")
        }
        do {
            return try JSONValue.parse(text)
        } catch {
            throw PretrainedTokenizerError.unreadable(path: path, reason: "not JSON (\(error))")
        }
    }
}

// MARK: - tokenizer.json

/// What SwiftBERT takes from a `tokenizers` serialisation: the WordPiece vocabulary in id order and
/// the settings; everything else must be what BERT's tokenizer does.
public struct TokenizerFile: Equatable, Sendable {
    public var tokens: [String]
    public var settings: BertTokenizerSettings

    public init(path: String) throws {
        let root = try PretrainedTokenizer.readJSON(path)
        func unsupported(_ key: String, _ found: JSONValue?, _ reason: String) -> PretrainedTokenizerError {
            .unsupported(path: path, key: key, found: found.map(Self.shortText) ?? "missing", reason: reason)
        }
        func expect(_ key: String, _ value: JSONValue?, _ wanted: JSONValue, _ reason: String) throws {
            guard value == wanted else { throw unsupported(key, value, reason) }
        }
        func bool(_ key: String, _ value: JSONValue?) throws -> Bool {
            guard case let .bool(flag)? = value else { throw unsupported(key, value, "expected true or false") }
            return flag
        }
        let bertOnly = "SwiftBERT implements BERT's tokenizer only (BertNormalizer, BertPreTokenizer, WordPiece)"

        let model = root["model"]
        try expect("model.type", model?["type"], .string("WordPiece"), bertOnly)
        try expect("model.unk_token", model?["unk_token"], .string("[UNK]"), "SwiftBERT's unknown token is [UNK]")
        try expect(
            "model.continuing_subword_prefix", model?["continuing_subword_prefix"], .string("##"),
            "SwiftBERT's WordPiece continues words with \"##\"")
        guard case let .number(maxText)? = model?["max_input_chars_per_word"], let maxCharacters = Int(maxText),
              maxCharacters > 0
        else {
            throw unsupported("model.max_input_chars_per_word", model?["max_input_chars_per_word"], "expected a positive integer")
        }
        guard case let .object(entries)? = model?["vocab"], !entries.isEmpty else {
            throw unsupported("model.vocab", model?["vocab"], "expected an object of token ids")
        }
        var tokens = [String?](repeating: nil, count: entries.count)
        for (token, value) in entries {
            guard case let .number(text) = value, let id = Int(text), tokens.indices.contains(id), tokens[id] == nil else {
                throw unsupported(
                    "model.vocab", .string(token),
                    "ids must be 0..<\(entries.count), each once; \"\(token)\" has \(Self.shortText(value))")
            }
            tokens[id] = token
        }
        self.tokens = tokens.map { $0! }

        let normalizer = root["normalizer"]
        try expect("normalizer.type", normalizer?["type"], .string("BertNormalizer"), bertOnly)
        try expect(
            "normalizer.clean_text", normalizer?["clean_text"], .bool(true),
            "SwiftBERT always removes control characters and maps whitespace to spaces")
        let lowercase = try bool("normalizer.lowercase", normalizer?["lowercase"])
        let splitsChinese = try bool("normalizer.handle_chinese_chars", normalizer?["handle_chinese_chars"])
        let stripAccents: Bool?
        switch normalizer?["strip_accents"] {
        case .null?, nil: stripAccents = nil
        case let .bool(flag)?: stripAccents = flag
        case let other?: throw unsupported("normalizer.strip_accents", other, "expected true, false or null")
        }
        try expect("pre_tokenizer.type", root["pre_tokenizer"]?["type"], .string("BertPreTokenizer"), bertOnly)
        settings = BertTokenizerSettings(
            lowercase: lowercase, stripAccents: stripAccents, splitsChineseCharacters: splitsChinese,
            maxCharactersPerWord: maxCharacters)

        // Added tokens are split out of the text before normalisation; SwiftBERT does that for
        // BERT's five special tokens, at their vocabulary ids.
        guard case let .array(added) = root["added_tokens"] ?? .array([]) else {
            throw unsupported("added_tokens", root["added_tokens"], "expected an array")
        }
        for token in added {
            guard case let .string(content)? = token["content"], Vocabulary.specialTokens.contains(content),
                  case let .number(idText)? = token["id"], let id = Int(idText),
                  self.tokens.indices.contains(id), self.tokens[id] == content
            else {
                throw unsupported(
                    "added_tokens", token,
                    "SwiftBERT's tokenizer adds only " + Vocabulary.specialTokens.joined(separator: " ")
                        + ", at their ids in model.vocab")
            }
        }
    }

    init(tokens: [String], settings: BertTokenizerSettings) {
        self.tokens = tokens
        self.settings = settings
    }

    /// A value for an error message, cut to a readable length.
    static func shortText(_ value: JSONValue) -> String {
        let text = value.compactText()
        return text.count > 80 ? String(text.prefix(77)) + "..." : text
    }
}

// MARK: - tokenizer_config.json

/// The arguments of tokenizer_config.json that change ids, as transformers reads them.
struct TokenizerConfig {
    let path: String
    /// Whether transformers loads tokenizer.json as it is (a generic tokenizer class) rather than
    /// rebuilding BERT's normaliser from the arguments below.
    var readsTokenizerFileVerbatim = false
    var lowercase: Bool?
    var stripAccents: Bool??
    var splitsChineseCharacters: Bool?
    var cleanUpTokenizationSpaces: Bool

    /// A directory without the file: transformers' `BertTokenizer` defaults.
    init(defaultsAt path: String) {
        self.path = path
        cleanUpTokenizationSpaces = false
    }

    init(path: String) throws {
        self.path = path
        let root = try PretrainedTokenizer.readJSON(path)
        guard case .object = root else {
            throw PretrainedTokenizerError.unreadable(path: path, reason: "expected a JSON object")
        }
        func flag(_ key: String) throws -> Bool? {
            switch root[key] {
            case nil, .null?: return nil
            case let .bool(value)?: return value
            case let other?:
                throw PretrainedTokenizerError.unsupported(
                    path: path, key: key, found: TokenizerFile.shortText(other), reason: "expected true or false")
            }
        }
        if case let .string(name)? = root["tokenizer_class"] {
            readsTokenizerFileVerbatim = ["PreTrainedTokenizerFast", "TokenizersBackend"].contains(name)
        }
        lowercase = try flag("do_lower_case")
        if let value = root["strip_accents"] { stripAccents = value == .null ? .some(nil) : .some(try flag("strip_accents")) }
        splitsChineseCharacters = try flag("tokenize_chinese_chars")
        cleanUpTokenizationSpaces = try flag("clean_up_tokenization_spaces") ?? false
        // Special tokens may be strings or AddedToken objects ({"content": ...}).
        for (key, token) in zip(["pad_token", "unk_token", "cls_token", "sep_token", "mask_token"],
                                ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) {
            guard let value = root[key], value != .null else { continue }
            let content = value["content"] ?? value
            if content != .string(token) {
                throw PretrainedTokenizerError.unsupported(
                    path: path, key: key, found: TokenizerFile.shortText(value),
                    reason: "SwiftBERT's tokenizer uses BERT's special tokens (\(key) \(token))")
            }
        }
    }

    /// The settings transformers' `BertTokenizer` builds from this file: unset arguments take the
    /// class's defaults (uncased, accents as casing, CJK split), whatever tokenizer.json says.
    /// `maxCharactersPerWord` is not an argument and stays as given.
    func settings(maxCharactersPerWord: Int) -> BertTokenizerSettings {
        BertTokenizerSettings(
            lowercase: lowercase ?? true, stripAccents: stripAccents ?? nil,
            splitsChineseCharacters: splitsChineseCharacters ?? true, maxCharactersPerWord: maxCharactersPerWord)
    }

    /// Fails when the settings transformers builds from this file differ from tokenizer.json's normaliser.
    func checkAgreement(with file: TokenizerFile, at tokenizerPath: String) throws {
        func show(_ value: Bool?) -> String { value.map { "\($0)" } ?? "null" }
        let own = settings(maxCharactersPerWord: file.settings.maxCharactersPerWord)
        let pairs: [(String, Bool?, String, Bool?)] = [
            ("do_lower_case", own.lowercase, "normalizer.lowercase", file.settings.lowercase),
            ("strip_accents", own.stripAccents, "normalizer.strip_accents", file.settings.stripAccents),
            ("tokenize_chinese_chars", own.splitsChineseCharacters, "normalizer.handle_chinese_chars",
             file.settings.splitsChineseCharacters),
        ]
        for (key, value, otherKey, otherValue) in pairs where value != otherValue {
            throw PretrainedTokenizerError.disagreement(
                path: path, key: key, value: show(value) + (isSet(key) ? "" : " (not set: transformers' default)"),
                otherPath: tokenizerPath, otherKey: otherKey, otherValue: show(otherValue))
        }
    }

    private func isSet(_ key: String) -> Bool {
        switch key {
        case "do_lower_case": return lowercase != nil
        case "strip_accents": return stripAccents != nil
        default: return splitsChineseCharacters != nil
        }
    }
}
