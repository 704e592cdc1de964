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
            (a list of such lists for several masks). Several texts (arguments, or --input FILE|- with one \
            text per line or JSON lines with a "text" string) are run in batches of similar length and \
            answered in input order: each text's table after the text, or with --json one answer per line.
            """)

    @OptionGroup var model: PretrainedModelOptions

    @OptionGroup var source: TextInputOptions

    @Option(name: .customLong("top-k"), help: "Candidates per [MASK].")
    var topK: Int = 5

    @Option(help: "Texts per forward pass.")
    var batchSize: Int = 16

    @Flag(help: "Print the pipeline's JSON instead of a table.")
    var json = false

    @Argument(help: "Texts with one or more [MASK] tokens (or --input).")
    var texts: [String] = []

    func validate() throws {
        try source.validate(arguments: texts)
        guard topK > 0 else { throw ValidationError("--top-k must be positive, got \(topK)") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive, got \(batchSize)") }
    }

    func run() throws {
        let workerCount = source.applyThreads()
        let loaded = try model.loadTokenizer()
        let tokenizer = loaded.tokenizer
        let vocabulary = tokenizer.vocabulary
        let config = try model.config()
        let inputs = try source.read(arguments: texts)
        let encoded = try source.encode(inputs, tokenizer: tokenizer, maxPositions: config.maxPositionEmbeddings)
        let masks = try encoded.enumerated().map { i, ids in
            let positions = ids.indices.filter { ids[$0] == vocabulary.maskID }
            guard !positions.isEmpty else {
                let origin = inputs.count == 1 && source.input == nil ? "the text" : inputs[i].origin
                throw InputError("\(origin) has no [MASK] token; write [MASK] where a word should be predicted")
            }
            return positions
        }
        let V = config.vocabSize
        guard topK <= V else { throw ValidationError("--top-k \(topK) exceeds the vocabulary of \(V) tokens") }
        guard vocabulary.count <= V else {
            throw ValidationError("vocab.txt has \(vocabulary.count) tokens but config.json has vocab_size \(V)")
        }
        let firstWindow = encoded.prefix(LengthBatches.windowSize)
        let (network, report) = try model.loadModel(
            sequenceCount: min(batchSize, encoded.count), sequenceLength: firstWindow.map(\.count).max()!)
        if let notice = report.notice { FileHandle.standardError.write(Data((notice + "\n").utf8)) }
        let workers = ModelWorkers(network, count: workerCount)
        let decoder = WordPieceDecoder(vocabulary: vocabulary, cleanUpTokenizationSpaces: loaded.cleanUpTokenizationSpaces)
        // One text given as an argument prints exactly the pipeline's answer; several, one answer each.
        let several = source.input != nil || inputs.count > 1
        let progress = Progress(total: encoded.count, verb: "filled")

        for windowStart in stride(from: 0, to: encoded.count, by: LengthBatches.windowSize) {
            let window = windowStart..<min(windowStart + LengthBatches.windowSize, encoded.count)
            var rankings = [[[Candidate]]](repeating: [], count: window.count)
            let batches = LengthBatches.batches(lengths: encoded[window].map(\.count), batchSize: batchSize)
            try rankings.withUnsafeMutableBufferPointer { rankings in
                try workers.forEach(batches.count) { network, k in
                    let batch = batches[k]
                    let (ids, mask, T) = LengthBatches.padded(batch.map { encoded[windowStart + $0] }, padID: vocabulary.padID)
                    network.reserve(sequenceCount: batch.count, sequenceLength: T)
                    _ = try network.hiddenStates(
                        inputIDs: ids, tokenTypeIDs: [Int32](repeating: 0, count: ids.count), attentionMask: mask,
                        sequenceCount: batch.count, sequenceLength: T)
                    var positions: [Int32] = []
                    for (b, i) in batch.enumerated() { positions += masks[windowStart + i].map { Int32(b * T + $0) } }
                    let logits = try network.mlmLogits(at: positions)
                    var row = 0
                    for i in batch {
                        let text = encoded[windowStart + i], textMasks = masks[windowStart + i]
                        rankings[i] = textMasks.map { index in
                            defer { row += 1 }
                            return candidates(
                                logits[(row * V)..<((row + 1) * V)], text: text, at: index, singleMask: textMasks.count == 1,
                                decoder: decoder)
                        }
                    }
                    progress.advance(by: batch.count)
                }
            }
            for (i, textRankings) in rankings.enumerated() {
                print(answer(textRankings, text: several ? inputs[windowStart + i].text : nil))
            }
        }
    }

    /// The top-k candidates of the [MASK] at `index` of `text` ([CLS] ... [SEP]) from its logits.
    private func candidates(
        _ logits: ArraySlice<Float>, text: [Int32], at index: Int, singleMask: Bool, decoder: WordPieceDecoder
    ) -> [Candidate] {
        let probabilities = softmax(logits)
        return topIndices(probabilities).map { id in
            var filled = text
            filled[index] = Int32(id)
            // As the pipeline: padding dropped, special tokens kept when other [MASK]s remain.
            let sequence = decoder.decode(filled.filter { $0 != decoder.vocabulary.padID }, skipSpecialTokens: singleMask)
            return Candidate(
                score: probabilities[id], token: id, tokenString: decoder.decode([Int32(id)], skipSpecialTokens: false),
                sequence: sequence)
        }
    }

    /// The `topK` highest probabilities' indices, highest first; equal probabilities by index, a fixed order.
    private func topIndices(_ probabilities: [Float]) -> [Int] {
        var best: [Int] = []
        func before(_ a: Int, _ b: Int) -> Bool {
            probabilities[a] != probabilities[b] ? probabilities[a] > probabilities[b] : a < b
        }
        for id in probabilities.indices where best.count < topK || before(id, best[best.count - 1]) {
            let slot = best.firstIndex { before(id, $0) } ?? best.count
            best.insert(id, at: slot)
            if best.count > topK { best.removeLast() }
        }
        return best
    }

    /// One text's answer: the pipeline's JSON, or its table (after the text when `text` is given).
    private func answer(_ rankings: [[Candidate]], text: String?) -> String {
        let singleMask = rankings.count == 1
        if json {
            let lists = rankings.map { "[" + $0.map(\.json).joined(separator: ", ") + "]" }
            return singleMask ? lists[0] : "[" + lists.joined(separator: ", ") + "]"
        }
        var lines: [String] = text.map { [$0] } ?? []
        for (number, ranking) in rankings.enumerated() {
            if !singleMask { lines.append("[MASK] \(number + 1):") }
            for candidate in ranking {
                let score = String(format: "%.4f", candidate.score)
                lines.append("\(score)  \(candidate.tokenString.padding(toLength: max(12, candidate.tokenString.count), withPad: " ", startingAt: 0))  \(candidate.sequence)")
            }
        }
        return lines.joined(separator: "\n")
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

/// `--model DIR` for the inference commands: a Hugging Face BERT directory, or a LoRA adapter on one.
struct PretrainedModelOptions: ParsableArguments {
    @Option(help: "Hugging Face BERT model directory (config.json, model.safetensors, vocab.txt or tokenizer.json), or a LoRA adapter directory.")
    var model: String

    @Option(help: ArgumentHelp("The base model of the adapter --model names (default: its adapter_config.json's base_model_name_or_path).", valueName: "dir"))
    var base: String?

    func validate() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--model '\(model)' is not a directory; pass a Hugging Face BERT model directory")
        }
    }

    /// The base, the adapter (if any) and the config with its LoRA settings.
    func source() throws -> (config: BertConfig, base: String, adapter: String?) {
        let source = try PeftAdapter.resolve(model: model, base: base)
        if source.config.prompt != nil {
            throw InputError("\(model) is a prompt-tuning adapter, which only the classifier it was trained with reads; use predict or evaluate")
        }
        return source
    }

    /// The model's config.
    func config() throws -> BertConfig { try source().config }

    /// The tokenizer of the directory (vocab.txt or tokenizer.json, settings of tokenizer_config.json),
    /// or of the adapter's base when the adapter directory has none.
    func loadTokenizer() throws -> (tokenizer: BertTokenizer, cleanUpTokenizationSpaces: Bool) {
        try PretrainedTokenizer.load(directory: tokenizerDirectory(try source()))
    }

    /// The model, for at most `sequenceCount` sequences of `sequenceLength` tokens.
    func loadModel(sequenceCount: Int, sequenceLength: Int) throws -> (BertForPreTraining, PretrainedLoadReport) {
        var source = try source()
        let config = source.config
        guard sequenceLength <= config.textPositions else {
            throw ValidationError(
                "the text is \(sequenceLength) tokens with [CLS] and [SEP]; the model takes at most \(config.textPositions) "
                    + "(max_position_embeddings\(config.keyPrefixLength > 0 ? " less the prefix's positions" : ""))")
        }
        guard let adapter = source.adapter else {
            return try BertForPreTraining.pretrained(
                directory: model, maxSequenceCount: sequenceCount, sequenceLength: sequenceLength, inferenceOnly: true)
        }
        // The encoder and the pre-training heads, whatever head the adapter was trained with.
        source.config.head = .preTraining
        source.config.labels = []
        let heads = ["classifier", "qa_outputs"]
        let loraSaved = source.config.lora?.modulesToSave ?? [], prefixSaved = source.config.prefix?.modulesToSave ?? []
        source.config.lora?.modulesToSave = loraSaved.filter { !heads.contains($0) }
        source.config.prefix?.modulesToSave = prefixSaved.filter { !heads.contains($0) }
        let network = BertForPreTraining(
            config: source.config, maxSequenceCount: sequenceCount, sequenceLength: sequenceLength, inferenceOnly: true)
        let report = try network.loadWeights(from: PretrainedDirectory.weightFiles(in: source.base))
        try network.loadAdapter(
            from: SafetensorsFile(contentsOfFile: (adapter as NSString).appendingPathComponent(PeftAdapter.weightsFile)),
            ignoring: heads.flatMap { ["base_model.model.\($0).", "base_model.\($0)."] })
        return (network, report)
    }
}

/// JSON text for the inference commands' output.
enum JSONText {
    /// A JSON string literal (UTF-8 kept as is, as `json.dumps(..., ensure_ascii=False)`).
    static func quoted(_ value: String) -> String { JSONValue.string(value).compactText() }
}
