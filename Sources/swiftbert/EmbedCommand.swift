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
            the vectors of all the text's tokens, [CLS] and [SEP] included (padding excluded). Texts come \
            from the arguments or from --input (a file, or - for standard input: one text per line, or \
            JSON lines with a "text" string with --format jsonl); the input is checked whole before \
            anything is printed. Texts are run in batches of similar length, each padded to its own \
            longest text; padding does not change a text's vector, and vectors are printed in input \
            order as each window of 4,096 texts completes. --json prints one {"text": ..., \
            "embedding": [...]} object per line.
            """)

    enum Pooling: String, ExpressibleByArgument, CaseIterable {
        case cls, mean
    }

    @OptionGroup var model: PretrainedModelOptions

    @OptionGroup var source: TextInputOptions

    @Option(help: "How to pool the last hidden state: cls or mean.")
    var pooling: Pooling = .cls

    @Option(help: "Texts per forward pass.")
    var batchSize: Int = 16

    @Flag(help: "Print JSON lines instead of text.")
    var json = false

    @Argument(help: "The texts to embed (or --input).")
    var texts: [String] = []

    func validate() throws {
        try source.validate(arguments: texts)
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive, got \(batchSize)") }
    }

    func run() throws {
        let workerCount = source.applyThreads()
        let tokenizer = try model.loadTokenizer().tokenizer
        let config = try model.config()
        let inputs = try source.read(arguments: texts)
        let encoded = try source.encode(inputs, tokenizer: tokenizer, maxPositions: config.maxPositionEmbeddings)
        let padID = tokenizer.vocabulary.padID
        // Buffers for the first window's longest batch; `reserve` grows them if a later one is longer.
        let firstWindow = encoded.prefix(LengthBatches.windowSize)
        // The heads are not used: parameters they lack are irrelevant here, so no notice is printed.
        let (network, _) = try model.loadModel(
            sequenceCount: min(batchSize, encoded.count), sequenceLength: firstWindow.map(\.count).max()!)
        let C = network.config.hiddenSize
        let workers = ModelWorkers(network, count: workerCount)
        let progress = Progress(total: encoded.count, verb: "embedded")
        var output = OutputLines()

        for windowStart in stride(from: 0, to: encoded.count, by: LengthBatches.windowSize) {
            let window = Array(encoded[windowStart..<min(windowStart + LengthBatches.windowSize, encoded.count)])
            var vectors = [Float](repeating: 0, count: window.count * C)
            let batches = LengthBatches.batches(lengths: window.map(\.count), batchSize: batchSize)
            try vectors.withUnsafeMutableBufferPointer { vectors in
                let vectors = vectors.baseAddress!
                try workers.forEach(batches.count) { network, k in
                    let batch = batches[k]
                    let (ids, mask, T) = LengthBatches.padded(batch.map { window[$0] }, padID: padID)
                    network.reserve(sequenceCount: batch.count, sequenceLength: T)
                    let hidden = try network.hiddenStates(
                        inputIDs: ids, tokenTypeIDs: [Int32](repeating: 0, count: ids.count), attentionMask: mask,
                        sequenceCount: batch.count, sequenceLength: T)
                    hidden.withUnsafeBufferPointer { hidden in
                        // Each text's row of `vectors` is written by the one worker running its batch.
                        for (b, index) in batch.enumerated() {
                            pool(vectors + index * C, hidden.baseAddress! + b * T * C, tokens: window[index].count, channels: C)
                        }
                    }
                    progress.advance(by: batch.count)
                }
            }
            for i in window.indices {
                emit(inputs[windowStart + i].text, vectors[(i * C)..<((i + 1) * C)], to: &output)
            }
            output.flush()
        }
    }

    /// out is (C), rows is (n, C) for the n tokens of one text.
    private func pool(_ out: UnsafeMutablePointer<Float>, _ rows: UnsafePointer<Float>, tokens n: Int, channels C: Int) {
        switch pooling {
        case .cls:
            out.update(from: rows, count: C)
        case .mean:
            // Sum in double so the mean of long texts is as exact as the reference's float32 mean or better.
            var sums = [Double](repeating: 0, count: C)
            for t in 0..<n {
                for c in 0..<C { sums[c] += Double(rows[t * C + c]) }
            }
            for c in 0..<C { out[c] = Float(sums[c] / Double(n)) }
        }
    }

    private func emit(_ text: String, _ vector: ArraySlice<Float>, to output: inout OutputLines) {
        if json {
            output.append("{\"text\": \(JSONText.quoted(text)), \"embedding\": [")
            output.append(vector.map { "\($0)" }.joined(separator: ", "))
            output.append("]}\n")
        } else {
            output.append(text + "\n")
            output.append(vector.map { "\($0)" }.joined(separator: " ") + "\n")
        }
    }
}

/// Standard output in large writes: one `print` per line costs more than formatting the numbers.
struct OutputLines {
    private var buffer = ""

    mutating func append(_ text: String) {
        buffer += text
        if buffer.utf8.count >= 1 << 20 { flush() }
    }

    mutating func flush() {
        guard !buffer.isEmpty else { return }
        FileHandle.standardOutput.write(Data(buffer.utf8))
        buffer = ""
    }
}
