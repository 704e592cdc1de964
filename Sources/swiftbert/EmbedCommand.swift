import ArgumentParser
import Data
import Foundation
import Transformer

/// `swiftbert embed`: one vector per text from the last hidden state of a BERT model.
struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Embed texts with a BERT model: the last hidden state, pooled, one vector per text.",
        discussion: """
            Each text is encoded as [CLS] text [SEP]. --pooling cls takes the [CLS] vector; mean averages \
            the vectors of all the text's tokens, [CLS] and [SEP] included (padding excluded). Texts are \
            run in batches; padding does not change a text's vector. --json prints one \
            {"text": ..., "embedding": [...]} object per line.
            """)

    enum Pooling: String, ExpressibleByArgument, CaseIterable {
        case cls, mean
    }

    @OptionGroup var model: PretrainedModelOptions

    @Option(help: "How to pool the last hidden state: cls or mean.")
    var pooling: Pooling = .cls

    @Option(help: "Texts per forward pass.")
    var batchSize: Int = 16

    @Flag(help: "Print JSON lines instead of text.")
    var json = false

    @Argument(help: "The texts to embed.")
    var texts: [String]

    func validate() throws {
        guard !texts.isEmpty else { throw ValidationError("give at least one text to embed") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive, got \(batchSize)") }
    }

    func run() throws {
        let tokenizer = try model.loadTokenizer().tokenizer
        let vocabulary = tokenizer.vocabulary
        let encoded = texts.map { [vocabulary.classifierID] + tokenizer.encode($0) + [vocabulary.separatorID] }
        let T = encoded.map(\.count).max()!
        let B = min(batchSize, texts.count)
        // The heads are not used: parameters they lack are irrelevant here, so no notice is printed.
        let (network, _) = try model.loadModel(sequenceCount: B, sequenceLength: T)
        let C = network.config.hiddenSize

        for start in stride(from: 0, to: texts.count, by: B) {
            let batch = Array(encoded[start..<min(start + B, texts.count)])
            var ids = [Int32](repeating: vocabulary.padID, count: batch.count * T)
            var mask = [Int32](repeating: 0, count: batch.count * T)
            for (b, sequence) in batch.enumerated() {
                ids.replaceSubrange((b * T)..<(b * T + sequence.count), with: sequence)
                mask.replaceSubrange((b * T)..<(b * T + sequence.count), with: repeatElement(1, count: sequence.count))
            }
            let hidden = try network.hiddenStates(
                inputIDs: ids, tokenTypeIDs: [Int32](repeating: 0, count: ids.count), attentionMask: mask,
                sequenceCount: batch.count)
            for (b, sequence) in batch.enumerated() {
                let rows = hidden[(b * T * C)..<((b * T + sequence.count) * C)]
                let vector = pool(rows, tokens: sequence.count, channels: C)
                emit(texts[start + b], vector)
            }
        }
    }

    /// rows is (n, C) for the n tokens of one text.
    private func pool(_ rows: ArraySlice<Float>, tokens n: Int, channels C: Int) -> [Float] {
        let base = rows.startIndex
        switch pooling {
        case .cls:
            return Array(rows[base..<(base + C)])
        case .mean:
            // Sum in double so the mean of long texts is as exact as the reference's float32 mean or better.
            var sums = [Double](repeating: 0, count: C)
            for t in 0..<n {
                for c in 0..<C { sums[c] += Double(rows[base + t * C + c]) }
            }
            return sums.map { Float($0 / Double(n)) }
        }
    }

    private func emit(_ text: String, _ vector: [Float]) {
        if json {
            let values = vector.map { "\($0)" }.joined(separator: ", ")
            print("{\"text\": \(JSONText.quoted(text)), \"embedding\": [\(values)]}")
        } else {
            print(text)
            print(vector.map { "\($0)" }.joined(separator: " "))
        }
    }
}
