import ArgumentParser
import Data
import Foundation
import Training
import Transformer

/// `swiftbert fill-mask`: the tokens a BERT model predicts behind each [MASK], with the fields and
/// text of transformers' fill-mask pipeline (score, token, token_str, sequence).
struct FillMask: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fill-mask",
        abstract: "Predict the tokens behind [MASK] in a text (as transformers' fill-mask pipeline).",
        discussion: """
            With one [MASK], prints the top-k candidates; with several, the top-k of each mask in order. \
            --json prints what the pipeline returns: a list of {"score", "token", "token_str", "sequence"} \
            (a list of such lists for several masks).
            """)

    @OptionGroup var model: PretrainedModelOptions

    @Option(name: .customLong("top-k"), help: "Candidates per [MASK].")
    var topK: Int = 5

    @Flag(help: "Print the pipeline's JSON instead of a table.")
    var json = false

    @Argument(help: "Text with one or more [MASK] tokens.")
    var text: String

    func validate() throws {
        guard topK > 0 else { throw ValidationError("--top-k must be positive, got \(topK)") }
    }

    func run() throws {
        let loaded = try model.loadTokenizer()
        let tokenizer = loaded.tokenizer
        let vocabulary = tokenizer.vocabulary
        let ids = [vocabulary.classifierID] + tokenizer.encode(text) + [vocabulary.separatorID]
        let maskedIndices = ids.indices.filter { ids[$0] == vocabulary.maskID }
        guard !maskedIndices.isEmpty else {
            throw ValidationError("the text has no [MASK] token; write [MASK] where a word should be predicted")
        }
        let (network, report) = try model.loadModel(sequenceCount: 1, sequenceLength: ids.count)
        if let notice = report.notice { FileHandle.standardError.write(Data((notice + "\n").utf8)) }
        let V = network.config.vocabSize
        guard topK <= V else { throw ValidationError("--top-k \(topK) exceeds the vocabulary of \(V) tokens") }
        guard vocabulary.count <= V else {
            throw ValidationError("vocab.txt has \(vocabulary.count) tokens but config.json has vocab_size \(V)")
        }

        _ = try network.hiddenStates(
            inputIDs: ids, tokenTypeIDs: [Int32](repeating: 0, count: ids.count),
            attentionMask: [Int32](repeating: 1, count: ids.count), sequenceCount: 1)
        let logits = try network.mlmLogits(at: maskedIndices.map { Int32($0) })
        let decoder = WordPieceDecoder(vocabulary: vocabulary, cleanUpTokenizationSpaces: loaded.cleanUpTokenizationSpaces)
        let singleMask = maskedIndices.count == 1

        var rankings: [[Candidate]] = []
        for (row, index) in maskedIndices.enumerated() {
            let probabilities = softmax(logits[(row * V)..<((row + 1) * V)])
            // Highest probability first; equal probabilities by token id, a fixed order.
            let best = probabilities.indices.sorted {
                probabilities[$0] != probabilities[$1] ? probabilities[$0] > probabilities[$1] : $0 < $1
            }.prefix(topK)
            rankings.append(best.map { id in
                var filled = ids
                filled[index] = Int32(id)
                // As the pipeline: padding dropped, special tokens kept when other [MASK]s remain.
                let sequence = decoder.decode(filled.filter { $0 != vocabulary.padID }, skipSpecialTokens: singleMask)
                return Candidate(
                    score: probabilities[id], token: id, tokenString: decoder.decode([Int32(id)], skipSpecialTokens: false),
                    sequence: sequence)
            })
        }

        if json {
            let lists = rankings.map { "[" + $0.map(\.json).joined(separator: ", ") + "]" }
            print(singleMask ? lists[0] : "[" + lists.joined(separator: ", ") + "]")
        } else {
            for (number, ranking) in rankings.enumerated() {
                if !singleMask { print("[MASK] \(number + 1):") }
                for candidate in ranking {
                    let score = String(format: "%.4f", candidate.score)
                    print("\(score)  \(candidate.tokenString.padding(toLength: max(12, candidate.tokenString.count), withPad: " ", startingAt: 0))  \(candidate.sequence)")
                }
            }
        }
    }

    struct Candidate {
        let score: Float
        let token: Int
        let tokenString: String
        let sequence: String

        /// The pipeline's dictionary, keys in its order.
        var json: String {
            "{\"score\": \(Double(score)), \"token\": \(token), \"token_str\": \(JSONText.quoted(tokenString)), "
                + "\"sequence\": \(JSONText.quoted(sequence))}"
        }
    }

    /// Softmax in double precision, returned as Float (what torch's float32 softmax rounds to).
    private func softmax(_ logits: ArraySlice<Float>) -> [Float] {
        let maximum = Double(logits.max() ?? 0)
        var sum = 0.0
        var exps = [Double](repeating: 0, count: logits.count)
        for (i, logit) in logits.enumerated() {
            exps[i] = Foundation.exp(Double(logit) - maximum)
            sum += exps[i]
        }
        return exps.map { Float($0 / sum) }
    }
}

/// Turns token ids back into text the way Hugging Face's BERT tokenizer does (transformers 5 with
/// the `tokenizers` WordPiece decoder): special tokens optionally dropped, "##" pieces glued to the
/// previous piece, every other piece after a space, and the decoder's per-piece clean-up (no space
/// before . ? ! ,). With `clean_up_tokenization_spaces` in tokenizer_config.json the whole text then
/// gets transformers' clean-up as well (" ' " -> "'", " n't", " 's", ...).
struct WordPieceDecoder {
    let vocabulary: Vocabulary
    let cleanUpTokenizationSpaces: Bool

    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        let specials: Set<Int32> = [vocabulary.padID, vocabulary.unknownID, vocabulary.classifierID, vocabulary.separatorID, vocabulary.maskID]
        var text = ""
        var first = true
        for id in ids {
            if skipSpecialTokens && specials.contains(id) { continue }
            // Models may pad vocab_size beyond vocab.txt; like `tokenizers`, ids without a token are dropped.
            guard id >= 0 && Int(id) < vocabulary.count else { continue }
            var piece = vocabulary.token(for: id)
            if !first {
                piece = piece.hasPrefix("##") ? String(piece.dropFirst(2)) : " " + piece
            }
            first = false
            text += Self.cleanUp(piece, replacements: Self.decoderReplacements)
        }
        return cleanUpTokenizationSpaces ? Self.cleanUp(text, replacements: Self.transformersReplacements) : text
    }

    /// The `tokenizers` WordPiece decoder's `cleanup`, applied to each piece.
    static let decoderReplacements = [
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
        (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ]

    /// transformers' `clean_up_tokenization`, applied to the whole text.
    static let transformersReplacements = [
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
        (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ]

    static func cleanUp(_ text: String, replacements: [(String, String)]) -> String {
        replacements.reduce(text) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
    }
}

/// `--model DIR` for the inference commands: a Hugging Face BERT directory.
struct PretrainedModelOptions: ParsableArguments {
    @Option(help: "Hugging Face BERT model directory (config.json, model.safetensors, vocab.txt or tokenizer.json).")
    var model: String

    func validate() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--model '\(model)' is not a directory; pass a Hugging Face BERT model directory")
        }
    }

    /// The tokenizer of the directory (vocab.txt or tokenizer.json, settings of tokenizer_config.json).
    func loadTokenizer() throws -> (tokenizer: BertTokenizer, cleanUpTokenizationSpaces: Bool) {
        try PretrainedTokenizer.load(directory: model)
    }

    /// The model, for at most `sequenceCount` sequences of `sequenceLength` tokens.
    func loadModel(sequenceCount: Int, sequenceLength: Int) throws -> (BertForPreTraining, PretrainedLoadReport) {
        let config = try PretrainedDirectory.config(in: model)
        guard sequenceLength <= config.maxPositionEmbeddings else {
            throw ValidationError(
                "the text is \(sequenceLength) tokens with [CLS] and [SEP]; the model takes at most "
                    + "\(config.maxPositionEmbeddings) (max_position_embeddings)")
        }
        return try BertForPreTraining.pretrained(directory: model, maxSequenceCount: sequenceCount, sequenceLength: sequenceLength)
    }
}

/// JSON text for the inference commands' output.
enum JSONText {
    /// A JSON string literal (UTF-8 kept as is, as `json.dumps(..., ensure_ascii=False)`).
    static func quoted(_ value: String) -> String { JSONValue.string(value).compactText() }
}
