import ArgumentParser
import Data
import Foundation
import Kernels
import Training
import Transformer

/// Where the inference commands take their texts from: the arguments, or `--input FILE|-` with one
/// text per line or JSON lines; and how a text longer than the model takes is handled.
struct TextInputOptions: ParsableArguments {
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case lines, jsonl
    }

    @Option(help: ArgumentHelp(
        "Read the texts from FILE ('-' for standard input) instead of the arguments.", valueName: "file"))
    var input: String?

    @Option(help: "How --input holds the texts: lines (one text per line) or jsonl (one JSON object per line with a \"text\" string).")
    var format: Format = .lines

    @Flag(help: "Cut a text longer than the model takes to its first tokens, [SEP] kept at the end (as sentence-transformers does); without it such a text is an error.")
    var truncate = false

    @Option(help: ArgumentHelp(
        "Tokens per text with [CLS] and [SEP] (default: the model's max_position_embeddings).", valueName: "n"))
    var maxLength: Int?

    @Option(help: ArgumentHelp("Threads (default: the cores this process may use).", valueName: "n"))
    var threads: Int?

    @Option(help: ArgumentHelp(
        "Copies of the model (one set of parameters) that run batches side by side, each on threads/workers threads (default: one per thread).",
        valueName: "n"))
    var workers: Int?

    func validate(arguments: [String]) throws {
        if input == nil && arguments.isEmpty { throw ValidationError("give the texts as arguments or with --input FILE (- for standard input)") }
        if input != nil && !arguments.isEmpty { throw ValidationError("give the texts either as arguments or with --input, not both") }
        if let maxLength, maxLength < 3 { throw ValidationError("--max-length must be at least 3 ([CLS], a token, [SEP]), got \(maxLength)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be positive, got \(threads)") }
        if let workers, workers < 1 || workers > (threads ?? CPUFeatures.allowedCoreCount) {
            throw ValidationError("--workers must be in 1...\(threads ?? CPUFeatures.allowedCoreCount) (the threads), got \(workers)")
        }
    }

    /// Sets OpenBLAS's threads and the element-wise workers (the attention heads among them) to each
    /// worker's share of the threads; returns the number of workers. One single-threaded model per
    /// core is the default: on 2 cores it embedded 2,000 verses with all-MiniLM-L6-v2's shape 9-32%
    /// faster than one model on both (paired runs on a busy host), as two ranks of one thread beat
    /// one rank of two in training.
    func applyThreads() -> Int {
        let count = threads ?? CPUFeatures.allowedCoreCount
        let workerCount = workers ?? count
        BLASRuntime.setThreadCount(count / workerCount)
        Parallel.workerCount = count / workerCount
        return workerCount
    }

    /// Every text with where it came from, read and checked whole before any output is written, so a
    /// bad line stops the command with nothing printed.
    func read(arguments: [String]) throws -> [InputText] {
        guard let input else {
            return arguments.enumerated().map { InputText(text: $1, origin: "text argument \($0 + 1)") }
        }
        let name = input == "-" ? "standard input" : input
        let bytes: [UInt8]
        if input == "-" {
            bytes = [UInt8](FileHandle.standardInput.readDataToEndOfFile())
        } else {
            guard let data = FileManager.default.contents(atPath: input) else {
                throw InputError("cannot read --input \(input): no such file, or it is not readable")
            }
            bytes = [UInt8](data)
        }
        guard !bytes.isEmpty else { throw InputError("\(name) is empty; give one text per line") }
        var texts: [InputText] = []
        var lineNumber = 0
        var start = 0
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
            lineNumber += 1
            var line = bytes[start..<end]
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            start = end + 1
            let origin = "\(name) line \(lineNumber)"
            guard let text = String(validating: line, as: UTF8.self) else {
                throw InputError("\(origin): not valid UTF-8; convert the file to UTF-8")
            }
            switch format {
            case .lines:
                texts.append(InputText(text: text, origin: origin))
            case .jsonl:
                texts.append(InputText(text: try Self.jsonText(text, origin: origin), origin: origin))
            }
        }
        return texts
    }

    /// The "text" string of one JSON line.
    static func jsonText(_ line: String, origin: String) throws -> String {
        let value: JSONValue
        do {
            value = try JSONValue.parse(line)
        } catch let error as JSONValue.SyntaxError {
            throw InputError("\(origin): not a JSON object (column \(error.column): \(error.message)); --format jsonl takes one object with a \"text\" string per line")
        }
        guard case let .object(members) = value else {
            throw InputError("\(origin): not a JSON object; --format jsonl takes one object with a \"text\" string per line")
        }
        guard let text = members.first(where: { $0.key == "text" })?.value else {
            throw InputError("\(origin): the object has no \"text\" key")
        }
        guard case let .string(string) = text else {
            throw InputError("\(origin): \"text\" is not a string")
        }
        return string
    }

    /// [CLS] text [SEP] of every text, at most `limit` tokens (the `--max-length`, else the model's
    /// `maxPositions`): longer ones are cut with `--truncate` ([SEP] kept last, as transformers'
    /// `truncation=True`) and an error naming the text without it.
    func encode(_ texts: [InputText], tokenizer: BertTokenizer, maxPositions: Int) throws -> [[Int32]] {
        if let maxLength, maxLength > maxPositions {
            throw InputError("--max-length \(maxLength) exceeds the model's max_position_embeddings (\(maxPositions))")
        }
        let limit = maxLength ?? maxPositions
        let vocabulary = tokenizer.vocabulary
        var encoded = [[Int32]](repeating: [], count: texts.count)
        // Tokenising is independent per text; spread over all the threads it stays a small share of the run.
        let chunks = min(threads ?? CPUFeatures.allowedCoreCount, max(1, texts.count / 64))
        encoded.withUnsafeMutableBufferPointer { encoded in
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                for i in (texts.count * chunk / chunks)..<(texts.count * (chunk + 1) / chunks) {
                    var ids: [Int32] = [vocabulary.classifierID]
                    tokenizer.encode(texts[i].text, into: &ids)
                    ids.append(vocabulary.separatorID)
                    encoded[i] = ids
                }
            }
        }
        for (i, ids) in encoded.enumerated() where ids.count > limit {
            guard truncate else {
                let bound = maxLength == nil ? "\(limit) (max_position_embeddings)" : "\(limit) (--max-length)"
                throw InputError(
                    "\(texts[i].origin): the text is \(ids.count) tokens with [CLS] and [SEP]; the model takes at most "
                        + "\(bound); pass --truncate to cut longer texts")
            }
            encoded[i] = Array(ids.prefix(limit - 1)) + [vocabulary.separatorID]
        }
        return encoded
    }
}

/// One text of the input and where it came from ("FILE line 12", "text argument 2").
struct InputText {
    let text: String
    let origin: String
}

/// Bad input: printed as is (no usage text), exit status 1.
struct InputError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The order in which the inference commands run texts: windows of consecutive texts, each sorted
/// by length (longest first) and cut into batches, so a batch pads only to its own longest text and
/// texts of similar length share batches. Results are written window by window in input order, so
/// at most one window's results are held.
struct LengthBatches {
    /// Texts per window: enough for batches of similar lengths, few enough that a window's vectors
    /// stay small (4,096 x 384 floats = 6 MB for MiniLM).
    static let windowSize = 4096

    /// The batches of `lengths` (one window): indices into it, each batch longest first.
    static func batches(lengths: [Int], batchSize: Int) -> [[Int]] {
        let order = lengths.indices.sorted { lengths[$0] != lengths[$1] ? lengths[$0] > lengths[$1] : $0 < $1 }
        return stride(from: 0, to: order.count, by: batchSize).map { Array(order[$0..<min($0 + batchSize, order.count)]) }
    }

    /// (B, T) ids and attention mask of `sequences`, padded with `padID` to the longest, T.
    static func padded(_ sequences: [[Int32]], padID: Int32) -> (ids: [Int32], mask: [Int32], length: Int) {
        let T = sequences.map(\.count).max() ?? 1
        var ids = [Int32](repeating: padID, count: sequences.count * T)
        var mask = [Int32](repeating: 0, count: sequences.count * T)
        for (b, sequence) in sequences.enumerated() {
            ids.replaceSubrange((b * T)..<(b * T + sequence.count), with: sequence)
            mask.replaceSubrange((b * T)..<(b * T + sequence.count), with: repeatElement(1, count: sequence.count))
        }
        return (ids, mask, T)
    }
}

/// Copies of one model, sharing its parameters, that run batches side by side, one thread each.
final class ModelWorkers {
    let models: [BertForPreTraining]

    init(_ model: BertForPreTraining, count: Int) {
        models = [model] + (1..<max(1, count)).map { _ in
            BertForPreTraining(
                sharingParametersOf: model, maxSequenceCount: model.maxSequenceCount, sequenceLength: model.sequenceLength)
        }
    }

    /// Calls `body(model, index)` for every index in 0..<count, each worker taking the next index when
    /// it is done with one; the first error stops the workers and is rethrown.
    func forEach(_ count: Int, _ body: (BertForPreTraining, Int) throws -> Void) throws {
        let lock = NSLock()
        var next = 0
        var failure: Error?
        DispatchQueue.concurrentPerform(iterations: min(models.count, count)) { worker in
            while true {
                lock.lock()
                let index = failure == nil && next < count ? next : nil
                next += 1
                lock.unlock()
                guard let index else { return }
                do {
                    try body(models[worker], index)
                } catch {
                    lock.lock()
                    if failure == nil { failure = error }
                    lock.unlock()
                }
            }
        }
        if let failure { throw failure }
    }
}

/// "embedded 1,024/100,000 texts (312 texts/s)" on standard error, rewritten in place, when standard
/// error is a terminal and the input is long enough to wait for.
final class Progress {
    let total: Int
    let verb: String
    private let enabled: Bool
    private let start = Date()
    private let lock = NSLock()
    private var done = 0

    init(total: Int, verb: String) {
        self.total = total
        self.verb = verb
        enabled = isatty(STDERR_FILENO) == 1 && total >= 1000
    }

    func advance(by count: Int) {
        lock.lock()
        defer { lock.unlock() }
        done += count
        guard enabled else { return }
        let rate = Double(done) / max(Date().timeIntervalSince(start), 1e-9)
        let line = "\r\(verb) \(done)/\(total) texts (\(Int(rate)) texts/s)" + (done == total ? "\n" : "")
        FileHandle.standardError.write(Data(line.utf8))
    }
}
