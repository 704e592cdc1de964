import Data
import Foundation

/// Why a metrics or event file could not be opened, written or read.
public struct MetricsError: Error, LocalizedError, CustomStringConvertible {
    public var path: String
    public var message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
    public var errorDescription: String? { description }
}

/// One line of `metrics.jsonl`: the measurements of one logged step, for training or validation.
/// Fields left nil are omitted from the line; non-finite values are written as `null` (JSON has no NaN).
public struct MetricsRecord: Equatable, Sendable {
    public enum Split: String, Sendable { case train, validation }

    public var step: Int
    public var split: Split
    /// Total loss (MLM + NSP), normalised over the global batch.
    public var loss: Double?
    public var mlmLoss: Double?
    public var nspLoss: Double?
    public var mlmAccuracy: Double?
    public var nspAccuracy: Double?
    public var learningRate: Double?
    /// Global gradient norm before clipping.
    public var gradNorm: Double?
    public var tokensPerSecond: Double?
    /// Seconds per step in forward/backward/optimizer, waiting for the all-reduce, waiting for data.
    public var timeCompute: Double?
    public var timeCommWait: Double?
    public var timeDataWait: Double?
    /// exp(mlm_loss), for validation records.
    public var perplexity: Double?
    /// Training records: bytes of gradients each rank all-reduces per step (0 on one rank), and rank
    /// 0's peak resident memory so far.
    public var allReduceBytes: Double?
    public var peakMemoryBytes: Double?
    /// A fine-tuning task's own fields (`accuracy`, `f1`, ...), after the others.
    public var taskFields: [NamedMetric] = []

    public init(step: Int, split: Split, loss: Double? = nil, mlmLoss: Double? = nil, nspLoss: Double? = nil,
                mlmAccuracy: Double? = nil, nspAccuracy: Double? = nil, learningRate: Double? = nil,
                gradNorm: Double? = nil, tokensPerSecond: Double? = nil, timeCompute: Double? = nil,
                timeCommWait: Double? = nil, timeDataWait: Double? = nil, perplexity: Double? = nil) {
        self.step = step
        self.split = split
        self.loss = loss
        self.mlmLoss = mlmLoss
        self.nspLoss = nspLoss
        self.mlmAccuracy = mlmAccuracy
        self.nspAccuracy = nspAccuracy
        self.learningRate = learningRate
        self.gradNorm = gradNorm
        self.tokensPerSecond = tokensPerSecond
        self.timeCompute = timeCompute
        self.timeCommWait = timeCommWait
        self.timeDataWait = timeDataWait
        self.perplexity = perplexity
    }

    /// The named numeric fields in file order (`step` and `split` excluded), nil ones included.
    public var fields: [(name: String, value: Double?)] {
        [("loss", loss), ("mlm_loss", mlmLoss), ("nsp_loss", nspLoss), ("mlm_accuracy", mlmAccuracy),
         ("nsp_accuracy", nspAccuracy), ("lr", learningRate), ("grad_norm", gradNorm),
         ("tokens_per_second", tokensPerSecond), ("time_compute", timeCompute), ("time_comm_wait", timeCommWait),
         ("time_data_wait", timeDataWait), ("perplexity", perplexity), ("allreduce_bytes", allReduceBytes),
         ("peak_rss_bytes", peakMemoryBytes)] + taskFields.map { ($0.name, $0.value) }
    }

    /// The set fields of a validation record, for the console: "loss 2.1, mlm_accuracy 0.41, ...".
    public var summary: String {
        fields.compactMap { name, value in value.map { String(format: "%@ %.4f", name, $0) } }.joined(separator: ", ")
    }

    /// The record as a JSON object: step, split, then the fields that are set.
    public var json: JSONValue {
        var members: [(key: String, value: JSONValue)] = [("step", .integer(step)), ("split", .string(split.rawValue))]
        for (name, value) in fields {
            if let value { members.append((name, .double(value))) }
        }
        return .object(members)
    }
}

/// Appends `MetricsRecord`s to `metrics.jsonl`, one JSON object per line. Each record is one `write(2)`
/// on a file opened with O_APPEND, so a crash never leaves a partial earlier line and `tail -f` sees
/// every record as soon as it is logged.
public final class MetricsLog {
    public let path: String
    private var descriptor: Int32

    /// Opens (creating if needed) the log for appending. With `keepingStepsThrough`, records of later
    /// steps (left by a run that stopped after its last checkpoint) are dropped first, so a resumed run
    /// does not log those steps twice.
    public init(path: String, keepingStepsThrough lastStep: Int? = nil) throws {
        self.path = path
        if let lastStep, FileManager.default.fileExists(atPath: path) {
            try MetricsLog.truncate(path: path, keepingStepsThrough: lastStep)
        }
        descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if descriptor < 0 {
            throw MetricsError(path: path, message: "cannot open for appending: \(String(cString: strerror(errno)))")
        }
    }

    deinit { close() }

    /// Writes one record as a line.
    public func append(_ record: MetricsRecord) throws {
        try append(line: record.json.compactText())
    }

    /// Writes one JSON object (e.g. a run-start marker) as a line.
    public func append(line text: String) throws {
        precondition(descriptor >= 0, "MetricsLog used after close()")
        var bytes = Array((text + "\n").utf8)
        try bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw MetricsError(path: path, message: "write failed: \(String(cString: strerror(errno)))")
                }
                offset += written
            }
        }
    }

    public func close() {
        if descriptor >= 0 {
            closeDescriptor(descriptor)
            descriptor = -1
        }
    }

    /// Reads every record of a metrics file as JSON objects, in order.
    public static func read(path: String) throws -> [JSONValue] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw MetricsError(path: path, message: "cannot read")
        }
        return try text.split(separator: "\n").enumerated().map { index, line in
            do { return try JSONValue.parse(String(line)) } catch {
                throw MetricsError(path: path, message: "line \(index + 1) is not JSON: \(error)")
            }
        }
    }

    private static func truncate(path: String, keepingStepsThrough lastStep: Int) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw MetricsError(path: path, message: "cannot read to drop records after step \(lastStep)")
        }
        let kept = text.split(separator: "\n").filter { line in
            // Lines that do not parse (a torn last line) or carry no step are dropped with the tail.
            guard let record = try? JSONValue.parse(String(line)), case let .number(step)? = record["step"],
                  let number = Int(step) else { return false }
            return number <= lastStep
        }
        let temporary = path + ".tmp"
        do {
            try Data(kept.map { $0 + "\n" }.joined().utf8).write(to: URL(fileURLWithPath: temporary))
            if rename(temporary, path) != 0 {
                throw MetricsError(path: path, message: "cannot replace: \(String(cString: strerror(errno)))")
            }
        } catch let error as MetricsError {
            throw error
        } catch {
            throw MetricsError(path: temporary, message: "cannot write: \(error.localizedDescription)")
        }
    }
}

/// The C `close`, which `MetricsLog.close()` shadows inside the class.
func closeDescriptor(_ descriptor: Int32) { _ = close(descriptor) }

// MARK: - Console progress

/// The one-line console progress report,
/// `step 120/1000 | loss 7.23 | lr 1.0e-04 | 12,345 tok/s | ETA 3m20s`.
/// On a terminal the line is rewritten in place (carriage return); piped, one line per update.
public struct ProgressLine {
    public var totalSteps: Int
    public let isTerminal: Bool
    private let output: (String) -> Void
    private var start: (time: Double, step: Int)?

    /// - Parameters:
    ///   - isTerminal: rewrite the line in place; by default, whether stdout is a terminal.
    ///   - output: where text goes; by default stdout, flushed at once.
    public init(totalSteps: Int, isTerminal: Bool = isatty(STDOUT_FILENO) != 0,
                output: @escaping (String) -> Void = { text in
                    FileHandle.standardOutput.write(Data(text.utf8))
                }) {
        self.totalSteps = totalSteps
        self.isTerminal = isTerminal
        self.output = output
    }

    /// The text of the line. `eta` in seconds; nil or non-finite values print as "--".
    public static func render(step: Int, totalSteps: Int, loss: Double?, learningRate: Double?,
                              tokensPerSecond: Double?, eta: Double?) -> String {
        var parts = ["step \(step)/\(totalSteps)"]
        parts.append("loss " + (loss.map { $0.isFinite ? String(format: "%.2f", $0) : "\($0)" } ?? "--"))
        parts.append("lr " + (learningRate.map { String(format: "%.1e", $0) } ?? "--"))
        parts.append((tokensPerSecond.flatMap { $0.isFinite ? groupedThousands(Int($0.rounded())) : nil } ?? "--") + " tok/s")
        parts.append("ETA " + (eta.flatMap(durationText) ?? "--"))
        return parts.joined(separator: " | ")
    }

    /// 12345 -> "12,345".
    public static func groupedThousands(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out += "," }
            out.append(c)
        }
        return (value < 0 ? "-" : "") + out
    }

    /// 45 -> "45s", 200 -> "3m20s", 7500 -> "2h05m", 200000 -> "2d07h".
    public static func durationText(_ seconds: Double) -> String? {
        guard seconds.isFinite, seconds >= 0 else { return nil }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        if s < 86400 { return "\(s / 3600)h\(String(format: "%02d", s % 3600 / 60))m" }
        return "\(s / 86400)d\(String(format: "%02d", s % 86400 / 3600))h"
    }

    /// Prints the line for `step`. Without an explicit `eta`, it is estimated from the steps done since
    /// the first update of this object and the time they took.
    public mutating func update(step: Int, loss: Double?, learningRate: Double?, tokensPerSecond: Double?,
                                eta: Double? = nil) {
        let now = ProcessInfo.processInfo.systemUptime
        if start == nil { start = (now, step) }
        var remaining = eta
        if remaining == nil, let start, step > start.step {
            remaining = (now - start.time) / Double(step - start.step) * Double(max(0, totalSteps - step))
        }
        let line = ProgressLine.render(step: step, totalSteps: totalSteps, loss: loss, learningRate: learningRate,
                                       tokensPerSecond: tokensPerSecond, eta: remaining)
        // "\u{1B}[K" clears what a longer previous line left behind.
        output(isTerminal ? "\r" + line + "\u{1B}[K" : line + "\n")
    }

    /// Ends an in-place line with a newline (nothing to do when piped).
    public func finish() {
        if isTerminal { output("\n") }
    }

    /// Prints a message on its own line, moving past an in-place progress line first.
    public func message(_ text: String) {
        output((isTerminal ? "\r\u{1B}[K" : "") + text + "\n")
    }
}
